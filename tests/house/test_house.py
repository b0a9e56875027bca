"""The house stays in order (issue 15, "One house"): a thin StateDB, few untyped dicts.

The StateDB actor is a thin shell over the store (`sc_actors/store`) and the views:
its class stays short. `dict[str, Any]` is counted the way the issue counts it
(`grep -rho "dict\\[str, Any\\]" sc_actors serve`): a stored document is
`model.Document`, free-form JSON is `model.JsonObject`, a message has its own type.
"""
from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

STATEDB_MAX_LINES = 300
DICT_STR_ANY_MAX = 60
_DICT_STR_ANY = re.compile(r"dict\[str, Any\]")


def _class_lengths(path: Path) -> dict[str, int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return {node.name: node.end_lineno - node.lineno + 1 for node in tree.body
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None}


def test_the_statedb_class_is_at_most_300_lines():
    lengths = _class_lengths(ROOT / "sc_actors" / "statedb.py")
    assert "StateDB" in lengths, "sc_actors/statedb.py defines no class StateDB at its top level"
    assert lengths["StateDB"] <= STATEDB_MAX_LINES, (
        f"class StateDB in sc_actors/statedb.py is {lengths['StateDB']} lines (at most {STATEDB_MAX_LINES}): "
        f"move what is not the actor's shell into sc_actors/store or the views")


def dict_str_any_counts(*packages: str) -> Counter[str]:
    """Occurrences of `dict[str, Any]` per file, as `grep -rho` counts them (every match)."""
    counts: Counter[str] = Counter()
    for package in packages:
        for path in sorted((ROOT / package).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            data = path.read_bytes()
            if b"\0" in data:
                continue  # a binary file: grep prints no match of it
            found = len(_DICT_STR_ANY.findall(data.decode(errors="replace")))
            if found:
                counts[str(path.relative_to(ROOT))] = found
    return counts


def test_the_counter_counts_every_occurrence():
    # Two on one line count twice, as `grep -o` prints each match.
    assert len(_DICT_STR_ANY.findall("a: dict[str, Any] = {}  # b: dict[str, Any]\nc: Dict[str, Any]")) == 2


def test_at_most_60_dict_str_any_in_sc_actors_and_serve():
    counts = dict_str_any_counts("sc_actors", "serve")
    total = sum(counts.values())
    worst = ", ".join(f"{path} {n}" for path, n in counts.most_common(8))
    assert total <= DICT_STR_ANY_MAX, (
        f"{total} dict[str, Any] in sc_actors and serve (at most {DICT_STR_ANY_MAX}); the most in: {worst}. "
        f"A stored document is model.Document, free-form JSON model.JsonObject, a message a TypedDict or dataclass")
