"""Rules (reference §6 "Rules"): read, activate, and edit amount, policy, events required."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Response, status

from sc_actors.errors import Invalid
from sc_actors.model import Document, Rule

from ..deps import StateDBApi, get_statedb, require_token
from ..schemas import EventsRequired, IntValue, PathName, PolicyValue
from ..values import check_rule_amount, set_events_required
from .health import rule_warnings, with_warnings
from .reads import add_reads

router = APIRouter(prefix="/rule", tags=["rules"])
add_reads(router, "rules", "rule")

SUPPORTED_POLICIES = {"up": ("amount", "proportional"), "down": ("amount", "proportional", "fit_to_usage")}
"""Policies the Scaler implements per rescale type; the original also listed
`modelling` and `fixed-ratio`, which nothing at its HEAD implements."""


@router.put("/{name}", summary="Create or replace a rule (JSON-logic checked before it is stored)",
            dependencies=[Depends(require_token)], status_code=status.HTTP_200_OK,
            responses={201: {"description": "created"}})
async def put_rule(name: PathName, rule: Rule, response: Response, db: StateDBApi = Depends(get_statedb)) -> Document:
    if rule.name != name:
        raise Invalid(f"name mismatch: {rule.name!r} in the body, {name!r} in the URL")
    doc = rule.model_dump(mode="json", exclude_none=True)
    try:
        check_rule_amount(doc)
    except ValueError as e:
        raise Invalid(str(e)) from None
    existed = await db.exists("rules", name)
    stored = await db.put("rules", doc)
    if not existed:
        response.status_code = status.HTTP_201_CREATED
    return with_warnings(stored, await _warnings(db, stored))


@router.put("/{name}/activate", summary="Activate a rule", dependencies=[Depends(require_token)])
async def activate_rule(name: PathName, db: StateDBApi = Depends(get_statedb)) -> Document:
    stored = await db.patch("rules", name, {"active": True})
    return with_warnings(stored, await _warnings(db, stored))


@router.put("/{name}/deactivate", summary="Deactivate a rule", dependencies=[Depends(require_token)])
async def deactivate_rule(name: PathName, db: StateDBApi = Depends(get_statedb)) -> Document:
    stored = await db.patch("rules", name, {"active": False})
    return with_warnings(stored, await _warnings(db, stored))


@router.put("/{name}/amount", summary="Amount of a scale-up request rule", dependencies=[Depends(require_token)])
async def set_amount(name: PathName, body: IntValue, db: StateDBApi = Depends(get_statedb)) -> Document:
    rule = await db.get("rules", name)
    if rule.get("generates") != "requests" or rule.get("rescale_type") != "up":
        raise Invalid(f"rule {name!r} can't have its amount changed: only scale-up request rules have one")
    try:
        check_rule_amount({**rule, "amount": body.value})
    except ValueError as e:
        raise Invalid(str(e)) from None
    # Only if nobody changed the rule's type since we read it (else 409).
    return await db.patch("rules", name, {"amount": body.value}, {"rescale_type": rule["rescale_type"]})


@router.put("/{name}/policy", summary="Rescale policy of a request rule", dependencies=[Depends(require_token)])
async def set_policy(name: PathName, body: PolicyValue, db: StateDBApi = Depends(get_statedb)) -> Document:
    rule = await db.get("rules", name)
    if rule.get("generates") != "requests":
        raise Invalid(f"rule {name!r} can't have its policy changed: it is not a request rule")
    allowed = SUPPORTED_POLICIES.get(rule.get("rescale_type", ""), ())
    if body.value not in allowed:
        raise Invalid(f"policy {body.value!r} is not valid for a rescale {rule.get('rescale_type')} rule "
                      f"(valid: {', '.join(allowed)})")
    return await db.patch("rules", name, {"rescale_policy": body.value})


@router.put("/{name}/events_required", summary="Events of one type a request rule needs",
            dependencies=[Depends(require_token)])
async def set_events(name: PathName, body: EventsRequired, db: StateDBApi = Depends(get_statedb)) -> Document:
    rule = await db.get("rules", name)
    try:
        changes = set_events_required(rule, body.event_type, body.value)
    except ValueError as e:
        raise Invalid(str(e)) from None
    # Only if nobody rewrote the rule since we read it (else 409).
    stored = await db.patch("rules", name, changes, {"rule": rule["rule"]})
    return with_warnings(stored, await _warnings(db, stored))


async def _warnings(db: StateDBApi, changed: Document) -> list[str]:
    """Request rules of the changed rule's resource that can never fire now (issue 14 item 3).

    An event rule counts too: deactivating the only one making down events leaves
    the scale-down rules of its resource without events.
    """
    rules = await db.list("rules")
    same = {r["name"] for r in rules if r.get("resource") == changed.get("resource")
            and (r.get("generates") == "requests")}
    return await rule_warnings(db, same | {changed["name"]})
