"""The Refeeder's sums from the pushed container windows, and the anchors (reference §7.3), without Ray."""
from __future__ import annotations

from sc_actors.settings import RefeederSettings
from sc_actors.store.sums import Refeeder
from tests.builders import application, container


def _store(*docs):
    by = {("users" if d.get("type") == "user" else "structures", d["name"]): d for d in docs}
    return lambda collection, name: by.get((collection, name))


def _doc(model):
    return model.model_dump(mode="json", exclude_none=True)


def _refeeder(now=100.0, usage_t=99.8):
    c0 = _doc(container("c0", cpu=(25, 120, 400), host="h0"))
    c1 = _doc(container("c1", cpu=(25, 80, 400), host="h1"))
    app = _doc(application("app1", cpu=(20, 100, 1600), containers=["c0", "c1"]))
    user = {"type": "user", "subtype": "user", "name": "u0", "clusters": ["app1"],
            "resources": {"cpu": {"min": 10, "max": 4000}}}
    usages = {"c0": {"cpu": 90.0, "mem": 100.0}, "c1": {"cpu": 10.5, "mem": 50.0}}
    refeeder = Refeeder(_store(c0, c1, app, user), usages, {"c0": usage_t, "c1": 99.9}, clock=lambda: now)
    refeeder.configure(RefeederSettings.model_validate({}), 0.5)
    return refeeder, app, user


def test_an_application_reads_with_the_sums_of_its_containers():
    refeeder, app, _ = _refeeder()
    doc = refeeder.enrich(app, "structures")
    assert doc["resources"]["cpu"]["usage"] == 100.5  # 90 + 10.5
    assert doc["resources"]["cpu"]["current"] == 200  # 120 + 80
    assert "usage" not in app["resources"]["cpu"]  # the stored document is untouched


def test_a_user_reads_with_the_sums_of_its_applications():
    refeeder, _, user = _refeeder()
    doc = refeeder.enrich(user, "users")
    assert doc["resources"]["cpu"] == {"min": 10, "max": 4000, "usage": 100.5, "current": 200}


def test_a_stale_container_window_leaves_the_application_without_usage():
    # c0's last window ended 2 s ago: more than 3 windows of 0.5 s, so its node stopped pushing.
    refeeder, app, _ = _refeeder(now=101.8, usage_t=99.8)
    doc = refeeder.enrich({**app, "resources": {"cpu": {**app["resources"]["cpu"], "usage": 7}}}, "structures")
    assert "usage" not in doc["resources"]["cpu"]  # no partial sum, and no old value either
    assert doc["resources"]["cpu"]["current"] == 200


def test_an_application_is_anchored_at_the_host_of_its_first_container():
    refeeder, app, user = _refeeder()
    assert refeeder.anchor(app, "structures") == "h0"
    assert refeeder.anchor(user, "users") == "h0"
    assert refeeder.anchor({"name": "empty", "containers": []}, "structures") is None


def test_structures_not_refeeded_keep_their_documents():
    refeeder, app, _ = _refeeder()
    refeeder.configure(RefeederSettings.model_validate({"STRUCTURES_REFEEDED": ["user"]}), 0.5)
    assert "usage" not in refeeder.enrich(app, "structures")["resources"]["cpu"]
