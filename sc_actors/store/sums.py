"""Refeeder: application and user `usage` and `current`, summed from the container windows (reference §7.3).

Not an actor: it lives inside the StateDB (its `State`), which already holds everything the sums
need — each container's usage of its last window (pushed by its node through the
Guardian) and its `current` (recorded by the Scaler as it applies). The sums are
made when an application or user is read, so they are as fresh as the newest
windows (at most one window old), with no message and no polling loop of their own.
The original polled OpenTSDB every 10 s for a window 20–30 s in the past, and the
Guardian read the result back through OpenTSDB (reference §3.8: tens of seconds).

A container whose last window is older than `MAX_AGE_WINDOWS` Guardian windows (its
node stopped pushing) has no usage, and neither has its application: a partial sum
would look like underuse and scale the application down.

Each application and user also has an *anchor*: the host of its first container.
The Guardian evaluates an application once per window of its anchor's node, however
many nodes its containers span.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from typing import Optional

from ..model import Container, Document
from ..policy.applications import Sums, application_sums, user_sums
from ..settings import GuardianSettings, RefeederSettings


class Refeeder:
    def __init__(
        self,
        get: Callable[[str, str], Optional[Document]],
        usages: Mapping[str, Mapping[str, float]],
        usage_t: Mapping[str, float],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`get(collection, name)` reads a stored document; `usages`/`usage_t` are the
        StateDB's container usages and their window ends (read, never written)."""
        self._get = get
        self._usages = usages
        self._usage_t = usage_t
        self._clock = clock
        self.settings = RefeederSettings.model_validate({})
        self.window_s = GuardianSettings.model_validate({}).window_s

    def configure(self, settings: RefeederSettings, window_s: float) -> None:
        """The Refeeder's settings and the Guardian's window, as the services' documents hold them now."""
        self.settings = settings
        self.window_s = window_s

    # ------------------------------------------------------------------ sums

    def _fresh_usages(self, names: list[str]) -> dict[str, Optional[Mapping[str, float]]]:
        oldest = self._clock() - self.settings.max_age_windows * self.window_s
        return {n: (self._usages.get(n) if self._usage_t.get(n, 0.0) >= oldest else None) for n in names}

    def _containers(self, app: Document) -> list[Container]:
        out = []
        for name in app.get("containers", []):
            doc = self._get("structures", name)
            if doc is not None and doc.get("subtype") == "container":
                out.append(Container.model_validate(doc))
        return out

    def application(self, app: Document) -> Sums:
        """Σ usage and Σ current of the application's containers; {} when not refeeded."""
        if "application" not in self.settings.structures_refeeded:
            return {}
        names = list(app.get("containers", []))
        containers = self._containers(app)
        if len(containers) != len(names):
            # A listed container that is not subscribed: no honest sum.
            return {res: {"usage": None, "current": None} for res in self.settings.generated_metrics}
        return application_sums(containers, self._fresh_usages(names), self.settings.generated_metrics)

    def user(self, user: Document) -> Sums:
        """Σ over the user's applications that have containers; {} when not refeeded."""
        if "user" not in self.settings.structures_refeeded:
            return {}
        apps = [self._get("structures", a) for a in user.get("clusters", [])]
        sums = [self.application(a) for a in apps if a is not None and a.get("subtype") == "application"]
        return user_sums(sums, self.settings.generated_metrics)

    def enrich(self, doc: Document, collection: str) -> Document:
        """A copy of an application or user document with its sums in `resources.<r>`.

        `current` is set when known; `usage` is set when known and removed when not, so
        nobody reads an old one.
        """
        if collection == "structures" and doc.get("subtype") == "application":
            sums = self.application(doc)
        elif collection == "users":
            sums = self.user(doc)
        else:
            return doc
        doc = copy.deepcopy(doc)
        for res, values in sums.items():
            r = doc.setdefault("resources", {}).get(res)
            if not isinstance(r, dict):
                continue
            if values.get("current") is not None:
                r["current"] = values["current"]
            if values.get("usage") is not None:
                r["usage"] = values["usage"]
            else:
                r.pop("usage", None)
        return doc

    # ------------------------------------------------------------------ anchors

    def anchor(self, doc: Document, collection: str) -> Optional[str]:
        """The host of the first subscribed container of an application (of a user's first application)."""
        if collection == "users":
            for a in doc.get("clusters", []):
                app = self._get("structures", a)
                host = self.anchor(app, "structures") if app is not None else None
                if host:
                    return host
            return None
        for name in doc.get("containers", []):
            c = self._get("structures", name)
            if c is not None and c.get("host"):
                return str(c["host"])
        return None
