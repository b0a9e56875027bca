"""The Ray cluster launcher, for real (issue 17): `ray up cluster/configs/cluster.yaml` over SSH
onto namespace hosts, `sc up --address auto` through `ray exec`, a container on the worker
host subscribed and scaled, and `ray down`.

The hosts (tests/cluster/netns.py): `ops`, the machine the operator launches from (its own
~/.ssh key and Ray token), `head` and `w1`, each running Debian's sshd on its address.
The test runs a copy of the shipped cluster.yaml with only what a user edits changed (the
IPs), plus what sharing one machine needs:

- the project is this checkout with its .venv (the hosts share the filesystem), so its
  path replaces /opt/serverless-containers, the checkout is not rsynced, and the setup
  command checks the venv instead of running `bootstrap.sh setup` (no package is
  installed offline);
- each host's containers get a cgroup parent of their own (SC_CGROUP_PARENT): the hosts
  share one cgroup tree;
- `sc up` keeps its state in the head's /tmp (--state-dir), not in the machine's
  /var/lib/serverless-containers.

Timings: `pytest -s tests/cluster/test_launcher.py | grep timing`.
"""
from __future__ import annotations

import re
import subprocess
import time

import pytest
import yaml

from tests.cluster.netns import REPO, VENV_BIN, Driver, Lab, host_env, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.cgroup, pytest.mark.cluster_long]

SHIPPED = REPO / "cluster" / "configs" / "cluster.yaml"
SHIPPED_ROOT = "/opt/serverless-containers"


def launch_config(lab: Lab) -> dict:
    """The shipped cluster.yaml with the lab's IPs, for this checkout on a shared machine."""
    cfg = yaml.safe_load(SHIPPED.read_text())
    cfg["provider"]["head_ip"] = lab["head"].addr
    cfg["provider"]["worker_ips"] = [lab["w1"].addr]
    assert cfg["file_mounts"].pop(SHIPPED_ROOT) == "."  # the checkout is shared, not copied
    setup = [c for c in cfg["setup_commands"] if "bootstrap.sh setup" not in c]
    assert len(setup) == len(cfg["setup_commands"]) - 1
    cfg["setup_commands"] = [f"test -x {SHIPPED_ROOT}/.venv/bin/sc", *setup]
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        cmds = cfg[key]
        assert sum("SC_HOST=$(hostname -s)" in c for c in cmds) == 1, cmds
        cfg[key] = [c.replace("SC_HOST=$(hostname -s)", f"SC_HOST=$(hostname -s) "
                              f"SC_CGROUP_PARENT=sc-netns-{lab.tag}-$(hostname -s)") for c in cmds]
    text = yaml.safe_dump(cfg, sort_keys=False).replace(SHIPPED_ROOT, str(REPO))
    assert SHIPPED_ROOT not in text
    return yaml.safe_load(text)


@pytest.fixture
def launcher_lab():
    lab = Lab(["ops", "head", "w1"])
    try:
        lab.up()
        ssh = lab["ops"].home / ".ssh"
        ssh.mkdir(mode=0o700)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops", "-f", str(ssh / "id_ed25519")],
                       check=True)
        for host in ("head", "w1"):
            lab.start_sshd(host, (ssh / "id_ed25519.pub").read_text())
        # The operator's Ray token, which file_mounts hands to every host.
        lab.run("ops", [str(VENV_BIN / "ray"), "get-auth-token", "--generate"])
        yield lab
    finally:
        lab.down()


def test_ray_up_deploys_over_ssh_sc_up_scales_a_container_on_the_worker_and_ray_down_stops_it(launcher_lab):
    lab = launcher_lab
    cfg_path = lab["ops"].tmp / "cluster.yaml"
    cfg_path.write_text(yaml.safe_dump(launch_config(lab), sort_keys=False))
    ray = str(VENV_BIN / "ray")
    # Ray 2.60's `ray up` runs the head's autoscaler v2 unless told; v2 has no local
    # provider (ray-project/ray#57153): it never starts a worker_ip. v1 does.
    on_ops = host_env(RAY_UP_enable_autoscaler_v2="0")
    timings = {}

    t0 = time.monotonic()
    up = lab.run("ops", [ray, "up", "-y", "--no-config-cache", "/tmp/cluster.yaml"], env=on_ops, timeout_s=300,
                 check=False)
    timings["ray up"] = time.monotonic() - t0
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
    # Every host got the operator's token through file_mounts.
    token = (lab["ops"].home / ".ray" / "auth_token").read_text()
    assert (lab["head"].home / ".ray" / "auth_token").read_text() == token

    t1 = time.monotonic()
    deploy = lab.run("ops", [ray, "exec", "/tmp/cluster.yaml",
                             f"cd {REPO} && RAY_AUTH_MODE=token .venv/bin/sc up --address auto --state-dir /tmp/sc-state"],
                     env=on_ops, timeout_s=300, check=False)
    timings["ray exec sc up"] = time.monotonic() - t1
    assert deploy.returncode == 0, deploy.stdout[-4000:] + deploy.stderr[-4000:]
    said = re.sub(r"\x1b\[[0-9;]*m", "", deploy.stdout)
    assert "API at http://127.0.0.1:8000" in said and re.search(r"ready: \d host\(s\) head", said), said

    def sc(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The CLI on the head, as a user there runs it: the API is the one `sc up` recorded."""
        return lab.run("head", [str(VENV_BIN / "sc"), *args], check=check)

    # The head's autoscaler sets up and starts the worker over SSH; the Membership registers it.
    def w1_reachable() -> bool:
        import json
        hosts = {h["name"]: h for h in json.loads(sc("host", "list", "--json").stdout)}
        return hosts.get("w1", {}).get("reachable") is True
    wait_for(w1_reachable, 240, interval_s=1, what="w1 started by the autoscaler and registered")
    timings["ray up → w1 registered"] = time.monotonic() - t0
    assert (lab["w1"].home / ".ray" / "auth_token").read_text() == token

    driver = Driver(lab, "head", f"{lab['head'].addr}:6379")
    try:
        nodes = driver("sorted((n['Labels'].get('sc_host'), n['NodeManagerAddress']) for n in ray.nodes() "
                       "if n['Alive'])")
        assert [tuple(n) for n in nodes] == [("head", lab["head"].addr), ("w1", lab["w1"].addr)]
        driver("get(node_of('w1').create_container.remote('web'))")
    finally:
        driver.close()
    sc("container", "subscribe", "web", "--host", "w1", "--cpu", "25,50,200", "--mem", "64,256,512", "--guard")
    assert lab.quota_us("w1", "web") == 50_000
    loop = lab.busy_loop("w1", "web")
    t2 = time.monotonic()
    raised = wait_for(lambda: (q := lab.quota_us("w1", "web")) > 50_000 and q, 60,
                      what="the quota of web on w1 raised")
    timings["loop → quota raised"] = time.monotonic() - t2
    lab.kill(loop)

    t3 = time.monotonic()
    down = lab.run("ops", [ray, "down", "-y", "/tmp/cluster.yaml"], env=on_ops, timeout_s=300, check=False)
    timings["ray down"] = time.monotonic() - t3
    assert down.returncode == 0, down.stdout[-4000:] + down.stderr[-4000:]
    # The head's Ray is stopped (its control plane and API with it).
    wait_for(lambda: not lab.processes("head", "gcs_server") and not lab.processes("head", "raylet"), 30,
             what="the head's Ray to stop")
    assert sc("host", "list", check=False).returncode == 2  # no API
    # The local provider only marks the workers terminated; a worker's raylet exits by
    # itself once it has lost the head for gcs_rpc_server_reconnect_timeout_s (60 s).
    assert lab.processes("w1", "raylet"), "w1's raylet was already gone when ray down returned"
    wait_for(lambda: not lab.processes("w1", "raylet"), 120, interval_s=1, what="w1's raylet to exit")
    timings["ray down → w1's raylet exits by itself"] = time.monotonic() - t3
    print(f"\n[timing] launcher: " + "; ".join(f"{k} {v:.1f} s" for k, v in timings.items())
          + f" (quota 50 000 → {raised} µs)")

