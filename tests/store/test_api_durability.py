"""Through the HTTP API, on the session's Ray: the state across a StateDB taken down and
started again on its state dir (what `sc down`/`sc up` does to it), a full disk answered
507, and a damaged journal that stops the StateDB naming the damage.

The API is a second deployment of the same app at /durable, talking to its own StateDB
(own namespace, state dir on a 2 MiB tmpfs this test mounts), as tests/api/test_fuzz.py
does: nothing here touches the control plane other tests use. It has no Scaler, so the
subscriptions made through it are an application's and a user's; a container's document
is put on the StateDB directly, as the ContainerScaler does once it has subscribed one.
"""
from __future__ import annotations

import dataclasses
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from tests.api.live import api  # noqa: F401  (the session's API: its port and token)
from tests.builders import container, limits
from tests.store.test_full_disk import _fill

pytestmark = pytest.mark.ray

PREFIX = "/durable"


@dataclasses.dataclass
class Private:
    url: str
    token: str
    namespace: str
    state_dir: Path
    fs: Path
    db: Any = None

    def start(self) -> Any:
        from sc_actors.settings import STATEDB_NAME
        from sc_actors.statedb import StateDB

        self.db = ray.remote(StateDB).options(name=STATEDB_NAME, namespace=self.namespace, num_cpus=0).remote(
            str(self.state_dir), True)
        return self.db

    def down(self) -> None:
        ray.kill(self.db, no_restart=True)

    def up(self, http: httpx.Client) -> None:
        """`sc up`: a new StateDB on the same state dir, and the API's handle to it renewed.

        NOTE: the API replica keeps the dead actor's handle until one call fails on it
        (that call answers 503); `sc down` undeploys the API too, so there it never shows.
        """
        from cluster.deploy import wait_for

        ray.get(self.start().ping.remote())
        wait_for(lambda: http.get("/rule/").status_code == 200, 30, interval_s=0.1, what="the API on the new StateDB")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)


@pytest.fixture
def private(api, stack, tmp_path):
    from cluster.serve_deploy import deploy_api, undeploy_api

    fs = tmp_path / "fs"
    fs.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(fs)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (root needed): {done.stderr.strip()}")
    p = Private("", api.token, f"sc_durable_{uuid.uuid4().hex[:6]}", fs / "state", fs)
    try:
        ray.get(p.start().ping.remote())
        p.url = deploy_api(port=api.port, token=api.token, namespace=p.namespace, app_name="orchestrator-durable",
                           route_prefix=PREFIX)  # the URL ends with the prefix
        yield p
    finally:
        undeploy_api("orchestrator-durable", shutdown=False)
        try:
            p.down()
        except Exception:  # noqa: BLE001  (already dead: the damaged-journal test)
            pass
        subprocess.run(["umount", "-l", str(fs)], check=False)


def _everything(http: httpx.Client) -> dict[str, Any]:
    out = {}
    for path in ("/structure/", "/rule/", "/service/", "/user/"):
        r = http.get(path)
        assert r.status_code == 200, r.text
        docs = r.json()
        for d in docs:
            for volatile in ("heartbeat", "heartbeat_human"):
                d.pop(volatile, None)
        out[path] = sorted(docs, key=lambda d: d["name"])
    for name in ("app0", "c0"):
        out[f"limits {name}"] = http.get(f"/structure/{name}/limits").json()
    return out


def test_the_original_operations_through_the_api_survive_down_and_up(private):
    ray.get(private.db.create_with_limits.remote(container("c0").model_dump(mode="json"),
                                                 limits("c0", cpu=(10, "percentage_of_max")).model_dump(mode="json")))
    app = {"app": {"name": "app0", "guard": False, "subtype": "application",
                   "resources": {"cpu": {"max": 400, "min": 20, "guard": False},
                                 "mem": {"max": 2048, "min": 128, "guard": False}}},
           "limits": {"resources": {"cpu": {"boundary": 5, "boundary_type": "percentage_of_max"}}}}
    user = {"user": {"name": "u0", "subtype": "user", "resources": {"cpu": {"max": 2000, "min": 100},
                                                                    "mem": {"max": 8192, "min": 1024}}}}
    with private.client() as http:
        for method, path, body, want in [
            ("PUT", "/structure/apps/app0", app, 201),
            ("PUT", "/structure/container/c0/app0", None, 200),
            ("PUT", "/user/u0", user, 201),
            ("PUT", "/user/clusters/u0/app0", None, 200),
            ("PUT", "/structure/app0/guard", None, 200),
            ("PUT", "/structure/c0/unguard", None, 200),
            ("PUT", "/structure/c0/resources/mem/unguard", None, 200),
            ("PUT", "/structure/c0/limits/cpu/boundary", {"value": 25}, 200),
            ("PUT", "/rule/CpuRescaleUp/amount", {"value": 75}, 200),
            ("PUT", "/rule/MemRescaleDown/deactivate", None, 200),
            ("PUT", "/service/guardian/WINDOW_TIMELAPSE", {"value": 2}, 200),
            ("PUT", "/service/scaler", {"POLLING_FREQUENCY": 3}, 200),
        ]:
            r = http.request(method, path, json=body)
            assert r.status_code == want, (path, r.status_code, r.text)
        before = _everything(http)
        seq = ray.get(private.db.seq.remote())

        private.down()  # `sc down`: the actor is gone for good
        private.up(http)
        assert ray.get(private.db.seq.remote()) == seq
        assert _everything(http) == before
        assert before["/rule/"][[r["name"] for r in before["/rule/"]].index("CpuRescaleUp")]["amount"] == 75


def test_a_full_disk_is_answered_507_and_nothing_refused_comes_back(private):
    with private.client() as http:
        assert http.put("/rule/CpuRescaleUp/amount", json={"value": 60}).status_code == 200
        filler = _fill(private.fs)
        answers = [http.put("/service/guardian", json={f"K{i}": "v" * 6000}) for i in range(20)]
        refused = [r for r in answers if r.status_code != 200]
        assert refused and all(r.status_code == 507 for r in refused), [r.text for r in answers]
        message = refused[0].json()["message"]
        assert "no space left" in message and str(private.state_dir) in message
        acked = 60
        for amount in range(61, 120):  # small records may still fit the journal's last page
            r = http.put("/rule/CpuRescaleUp/amount", json={"value": amount})
            if r.status_code == 507:
                break
            assert r.status_code == 200, r.text
            acked = amount
        assert r.status_code == 507
        assert http.get("/rule/CpuRescaleUp").json()["amount"] == acked  # the refused one not applied in memory

        filler.unlink()
        assert http.put("/rule/CpuRescaleUp/amount", json={"value": 200}).status_code == 200
        config = http.get("/service/guardian").json()["config"]
        accepted = {f"K{i}" for i, a in enumerate(answers) if a.status_code == 200}
        private.down()
        private.up(http)
        assert http.get("/rule/CpuRescaleUp").json()["amount"] == 200
        after = http.get("/service/guardian").json()["config"]
        assert after == config and {k for k in after if k.startswith("K")} == accepted


def test_a_damaged_journal_stops_the_statedb_naming_the_damage(private):
    with private.client() as http:
        assert http.put("/rule/CpuRescaleUp/amount", json={"value": 70}).status_code == 200
    private.down()
    j = private.state_dir / "journal.wal"
    data = bytearray(j.read_bytes())
    data[-5] ^= 0xFF  # in the last record (the defaults are record 0): acknowledged, so loud
    j.write_bytes(bytes(data))
    with pytest.raises(ray.exceptions.RayActorError) as e:
        ray.get(private.start().ping.remote(), timeout=60)
    said = [line for line in str(e.value).splitlines() if "Corrupt: " in line]  # as cluster/deploy.py reads it
    assert said and str(j) in said[-1] and "the last good record is seq 0" in said[-1]
