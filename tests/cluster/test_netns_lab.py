"""The namespace hosts themselves (tests/cluster/netns.py): isolated, reachable only over the
bridge, and removed whole, also when the run that made them was killed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster.netns import REGISTRY, Lab, _ip, gone, sweep, wait_for

pytestmark = [pytest.mark.cgroup]

CONNECT = ("import socket, sys\n"
           "try:\n"
           "    socket.create_connection((sys.argv[1], 7000), timeout=2).close(); print('reached')\n"
           "except OSError as e:\n"
           "    print('refused' if isinstance(e, ConnectionRefusedError) else 'unreachable')\n")


def leftovers(tag: int) -> dict[str, list[str]]:
    """What of lab `tag` is still on the machine."""
    return {
        "netns": [n for n in _ip("netns", "list").stdout.split() if n.startswith(f"scn{tag}-")],
        "links": [line for line in _ip("-o", "link", "show").stdout.splitlines() if f"scn{tag}" in line],
        "cgroups": [str(p) for c in ("cpu", "memory") for p in Path("/sys/fs/cgroup", c).glob(f"sc-netns-{tag}-*")],
        "files": [str(p) for p in (Path(f"/tmp/scn{tag}"), REGISTRY / str(tag)) if p.exists()],
    }


def test_hosts_are_isolated_reach_each_other_over_the_bridge_and_are_removed_whole():
    lab = Lab(["a", "b"]).up()
    try:
        a, b = lab["a"], lab["b"]
        r = lab.run("a", ["sh", "-c", "hostname; ps -e --no-headers | wc -l; ip -o -4 addr show eth0; echo $HOME"])
        name, nprocs, addr, home = r.stdout.splitlines()
        assert name == "a" and int(nprocs) <= 4, r.stdout  # its init, sh, ps, wc: a process table of its own
        assert f"{a.addr}/24" in addr and home == "/root"
        # A private /tmp and /root: a file written there is in the host's directory only.
        lab.run("a", ["sh", "-c", "echo mine > /tmp/f; mkdir -p /root/.ray; echo t > /root/.ray/auth_token"])
        assert (a.tmp / "f").read_text() == "mine\n" and not (b.tmp / "f").exists()
        assert (a.home / ".ray/auth_token").exists() and not Path("/tmp/f").exists()
        # b listens on its address; a reaches it over the bridge, and not once its link is down.
        server = lab.popen("b", ["python3", "-c", "import socket, time; s = socket.socket(); "
                                 f"s.bind(({b.addr!r}, 7000)); s.listen(); time.sleep(60)"])
        wait_for(lambda: lab.run("a", ["python3", "-c", CONNECT, b.addr]).stdout.strip() == "reached", 10,
                 what="a to reach b")
        lab.link("a", "down")
        assert lab.run("a", ["python3", "-c", CONNECT, b.addr]).stdout.strip() == "unreachable"
        lab.link("a", "up")
        lab.kill(server)
        assert lab.pids("b") and all(Path(f"/proc/{p}").exists() for p in lab.pids("b"))
        pids = lab.pids("a") + lab.pids("b")
    finally:
        lab.down()
    assert leftovers(lab.tag) == {"netns": [], "links": [], "cgroups": [], "files": []}
    assert all(gone(p) for p in pids)


def test_a_sweep_removes_the_lab_of_a_killed_run_and_leaves_a_live_one_alone():
    # A run that is SIGKILLed after its lab is up: no finalizer ran.
    code = ("import sys, time; sys.path.insert(0, %r)\n"
            "from tests.cluster.netns import Lab\n"
            "lab = Lab(['x']).up(); print(lab.tag, lab['x'].init_pid, flush=True); time.sleep(120)\n"
            % str(Path(__file__).resolve().parents[2]))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert p.stdout is not None
    dead_tag, init_pid = map(int, p.stdout.readline().split())
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    assert leftovers(dead_tag)["netns"] and Path(f"/proc/{init_pid}").exists()
    live = Lab(["y"])
    try:
        live.up()  # its up() sweeps first (and may take the number the dead run had)
        assert not any(f"-x" in s for found in leftovers(dead_tag).values() for s in found), leftovers(dead_tag)
        wait_for(lambda: gone(init_pid), 10, what="the killed run's host init to be gone")
        assert sweep() == [] and leftovers(live.tag)["netns"] == [f"scn{live.tag}-y"]
    finally:
        live.down()
