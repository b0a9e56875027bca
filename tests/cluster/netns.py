"""Test hosts as Linux namespaces: bring-up and teardown, nothing else (issue 17).

A *lab* is a few hosts on one Linux bridge. Each host is

- a network namespace `scn<tag>-<host>` with one veth link (`eth0` inside) into the bridge
  `scn<tag>br` and the address `10.213.<tag>.<n>/24`. The bridge sits in the root namespace
  without an address of its own, so traffic goes only between the lab's hosts;
- a PID, mount and UTS namespace around it, entered with `nsenter`: its own process table
  (so `ray stop` on a host, as `ray up`/`ray down` run it, stops that host's Ray only), its
  own hostname (so `hostname -s` names the host, as `cluster.yaml` uses it), and its own
  `/tmp` and `/root` (Ray's sessions and `ray_current_cluster`, the Ray token, `~/.ssh`,
  `sc up`'s record), bind-mounted from `/tmp/scn<tag>/<host>/`;
- its own cgroup parent `sc-netns-<tag>-<host>` (the hosts share the machine's cgroup tree).

NOTE: `ip netns exec` remounts /sys for the namespace, which hides /sys/fs/cgroup; the
hosts are entered with `nsenter` instead, which keeps the machine's /sys.

Every process of a host descends from its *init* (PID 1 of its PID namespace): killing
it kills them all, so teardown needs no process names and never touches another
cluster's Ray. A lab registers itself in /run/sc-netns/<tag> with its owner's pid;
`sweep()` removes the labs whose owner is gone (a killed earlier run), never a live one.

`python -m tests.cluster.netns driver ADDRESS` is a Ray driver run inside a host (Ray
wants a driver on a node of its cluster): it evaluates one Python expression per line
of stdin and answers one JSON line; `Driver` is its test-side end.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import psutil

from cluster.deploy import wait_for  # noqa: F401  (the tests of this package wait with it)

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
REGISTRY = Path("/run/sc-netns")
"""One directory per live lab: its tag, the owner's pid, its host names."""
SUBNET = "10.213"
"""The labs' addresses: 10.213.<tag>.0/24 (checked unused by this machine's routes)."""
CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory")
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# PID 1 of a host: binds the host's /root (carrying the machine's /root/<dir> of $3 into
# it) and /tmp (last: the lab dir is under /tmp), names the host, then reaps orphans
# (daemons that `ray start` leaves behind) until it is killed.
_INIT = r"""
set -e
for d in $3; do mkdir -p "$1/home/$d"; mount --bind "/root/$d" "$1/home/$d"; done
mount --rbind "$1/home" /root
mount --bind "$1/tmp" /tmp
hostname "$2"
exec /usr/bin/python3 -c '
import os, time
open("/tmp/.sc-init-ready", "w").close()
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.5)
'
"""


def _carried_root_dirs() -> list[str]:
    """The machine's /root/<dir>s a host keeps in its own /root: where the venv's Python lives.

    NOTE: a pyenv Python lives in /root/.pyenv; a host's private /root must still run it.
    """
    base = Path(os.path.realpath(sys.base_prefix))
    return [base.relative_to("/root").parts[0]] if base.is_relative_to("/root") else []


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@dataclass
class Host:
    """One test host: names, address and the pid (in the root namespace) of its init."""

    name: str
    addr: str
    netns: str
    veth: str
    dir: Path
    """/tmp/scn<tag>/<host>: its tmp/ and home/ (its /tmp and /root inside)."""
    cgroup_parent: str
    init_pid: int = 0

    @property
    def home(self) -> Path:
        """The host's /root, seen from the root namespace."""
        return self.dir / "home"

    @property
    def tmp(self) -> Path:
        """The host's /tmp, seen from the root namespace."""
        return self.dir / "tmp"

    def cgroup_dir(self, controller: str, container: str | None = None) -> Path:
        d = Path("/sys/fs/cgroup") / controller / self.cgroup_parent
        return d / container if container else d


def host_env(**extra: str) -> dict[str, str]:
    """A clean environment for a host's processes: what a root login there would have.

    NOTE: nothing of the test process's environment leaks in (its RAY_AUTH_MODE,
    RAY_ADDRESS or TMPDIR belong to the session's own cluster).
    """
    env = {"PATH": f"{VENV_BIN}:{HOST_PATH}", "HOME": "/root", "LANG": "C.UTF-8", "USER": "root",
           "RAY_USAGE_STATS_ENABLED": "0"}
    env.update(extra)
    return env


@dataclass
class Lab:
    """Hosts in namespaces on one bridge; `up()` makes them, `down()` removes everything."""

    names: Sequence[str]
    tag: int = 0
    hosts: dict[str, Host] = field(default_factory=dict)
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"scn{self.tag}br"

    @property
    def dir(self) -> Path:
        return Path(f"/tmp/scn{self.tag}")

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    # ------------------------------------------------------------------ bring-up

    def up(self) -> "Lab":
        sweep()
        self.tag = _claim_tag(self.names)
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("link", "set", self.bridge, "up")
            for i, name in enumerate(self.names):
                self.hosts[name] = self._add_host(name, f"{SUBNET}.{self.tag}.{10 + i}")
        except BaseException:
            self.down()
            raise
        return self

    def _add_host(self, name: str, addr: str) -> Host:
        h = Host(name=name, addr=addr, netns=f"scn{self.tag}-{name}", veth=f"scn{self.tag}-{name}",
                 dir=self.dir / name, cgroup_parent=f"sc-netns-{self.tag}-{name}")
        for d in (h.tmp, h.home):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(h.tmp, 0o1777)
        os.chmod(h.home, 0o700)
        _ip("netns", "add", h.netns)
        _ip("link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.netns)
        _ip("link", "set", h.veth, "master", self.bridge)
        _ip("link", "set", h.veth, "up")
        _ip("-n", h.netns, "addr", "add", f"{addr}/24", "dev", "eth0")
        _ip("-n", h.netns, "link", "set", "eth0", "up")
        _ip("-n", h.netns, "link", "set", "lo", "up")
        # A default route, as a host has: Ray finds its own address by the route to the
        # outside. Nothing answers there (the bridge forwards nowhere else).
        _ip("-n", h.netns, "route", "add", "default", "dev", "eth0")
        # A root's home as Debian makes it (Ray's SSH commands source ~/.bashrc).
        for f in (".bashrc", ".profile"):
            if Path("/etc/skel", f).exists():
                shutil.copy(Path("/etc/skel", f), h.home / f)
        p = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{h.netns}", "unshare", "--pid", "--fork", "--mount", "--uts",
             "--mount-proc", "--propagation", "private", "sh", "-c", _INIT, "init", str(h.dir), name,
             " ".join(_carried_root_dirs())],
            stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        # The init is unshare's only child; it is ready once its mounts are in place.
        wait_for(lambda: p.poll() is not None or (h.tmp / ".sc-init-ready").exists(), 10,
                 what=f"the init of {name}")
        if p.poll() is not None:
            raise RuntimeError(f"the init of host {name} exited with {p.returncode}")
        h.init_pid = psutil.Process(p.pid).children()[0].pid
        for c in CONTROLLERS:
            h.cgroup_dir(c).mkdir(exist_ok=True)
        return h

    # ------------------------------------------------------------------ inside a host

    def enter(self, name: str) -> list[str]:
        """The command prefix that runs a program inside host `name`."""
        return ["nsenter", "-t", str(self.hosts[name].init_pid), "-n", "-m", "-p", "-u", f"--wd={REPO}", "--"]

    def run(self, name: str, cmd: Sequence[str], env: dict[str, str] | None = None, timeout_s: float = 120,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([*self.enter(name), *cmd], env=env or host_env(), capture_output=True, text=True,
                           timeout=timeout_s)
        if check and r.returncode != 0:
            raise AssertionError(f"on {name}: {' '.join(cmd)} exited {r.returncode}\n"
                                 f"stdout: {r.stdout[-3000:]}\nstderr: {r.stderr[-3000:]}")
        return r

    def popen(self, name: str, cmd: Sequence[str], env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[Any]:
        """A program started inside host `name`, in a process group of its own (see `kill`)."""
        p = subprocess.Popen([*self.enter(name), *cmd], env=env or host_env(), start_new_session=True, **kw)
        self.procs.append(p)
        return p

    @staticmethod
    def kill(p: subprocess.Popen[Any]) -> None:
        """SIGKILL a `popen` program: its group, since nsenter forks it into the host's PID namespace."""
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=10)

    def pids(self, name: str) -> list[int]:
        """Every process of host `name` (root-namespace pids), its init included."""
        r = _ip("netns", "pids", self.hosts[name].netns, check=False)
        return [int(p) for p in r.stdout.split()]

    def processes(self, name: str, needle: str) -> list[int]:
        """The host's processes whose command line contains `needle`."""
        out = []
        for pid in self.pids(name):
            try:
                if needle in " ".join(psutil.Process(pid).cmdline()):
                    out.append(pid)
            except psutil.NoSuchProcess:
                pass
        return out

    def link(self, name: str, state: str) -> None:
        """`ip link set eth0 up|down` inside host `name`: its only way to the others."""
        _ip("-n", self.hosts[name].netns, "link", "set", "eth0", state)

    # ------------------------------------------------------------------ containers of a host

    def quota_us(self, name: str, container: str) -> int:
        """The CFS quota of a plain-cgroup container of host `name`, read from its file."""
        return int((self.hosts[name].cgroup_dir("cpu", container) / "cpu.cfs_quota_us").read_text())

    def busy_loop(self, name: str, container: str) -> subprocess.Popen[Any]:
        """A CPU loop inside `container` of host `name`: started on that host, in the container's cgroups.

        NOTE: the shell writes its own pid, which the kernel reads in the writer's PID namespace.
        """
        dirs = " ".join(str(self.hosts[name].cgroup_dir(c, container)) for c in CONTROLLERS)
        return self.popen(name, ["sh", "-c", f'for d in {dirs}; do echo $$ > "$d/cgroup.procs"; done; '
                                             "exec python3 -c 'while True: pass'"])

    # ------------------------------------------------------------------ SSH into a host

    def start_sshd(self, name: str, authorized_keys: str) -> None:
        """Debian's sshd inside host `name`, on its address, port 22; root logs in with a key of
        `authorized_keys` only.

        Its files are in the host's /tmp/sshd (a host sees its own /tmp, not the lab dir);
        StrictModes is off because that /tmp is world-writable.
        """
        h = self.hosts[name]
        d = h.tmp / "sshd"
        d.mkdir(exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"host {name}", "-f",
                        str(d / "host_ed25519_key")], check=True, capture_output=True)
        (d / "authorized_keys").write_text(authorized_keys)
        (d / "sshd_config").write_text(
            f"ListenAddress {h.addr}\nPort 22\nHostKey /tmp/sshd/host_ed25519_key\nPidFile /tmp/sshd/sshd.pid\n"
            "AuthorizedKeysFile /tmp/sshd/authorized_keys\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "Subsystem sftp /usr/lib/openssh/sftp-server\n")
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation dir (made by its service)
        with open(d / "sshd.log", "w") as log:
            self.popen(name, ["/usr/sbin/sshd", "-D", "-e", "-f", "/tmp/sshd/sshd_config"],
                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        probe = f"import socket; socket.create_connection(({h.addr!r}, 22), timeout=1).close()"
        wait_for(lambda: self.run(name, ["python3", "-c", probe], check=False).returncode == 0, 15,
                 interval_s=0.2, what=f"sshd on {name}")

    # ------------------------------------------------------------------ Ray on a host

    def ray_start(self, name: str, role: str, *args: str, head: str | None = None,
                  env: dict[str, str] | None = None, timeout_s: float = 90) -> float:
        """`cluster/configs/ray-start.sh head|worker` on host `name`; returns its seconds.

        The host's label sc_host is its name, its cgroup parent its own; a worker gets
        the head's Ray token first, as the README's `scp` does.
        """
        h = self.hosts[name]
        if role == "worker":
            assert head is not None
            (h.home / ".ray").mkdir(exist_ok=True)
            shutil.copy(self.hosts[head].home / ".ray" / "auth_token", h.home / ".ray" / "auth_token")
        cmd = ["bash", "cluster/configs/ray-start.sh", role]
        if role == "worker":
            cmd.append(self.hosts[head].addr)  # type: ignore[index]
        cmd += ["--node-ip-address", h.addr, *args]
        e = host_env(SC_HOST=name, SC_CGROUP_PARENT=h.cgroup_parent, SC_OBJECT_STORE_MB="100", **(env or {}))
        t0 = time.monotonic()
        self.run(name, cmd, env=e, timeout_s=timeout_s)
        return time.monotonic() - t0

    # ------------------------------------------------------------------ teardown

    def down(self) -> None:
        """Remove everything of the lab, whatever state it is in."""
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        _remove_lab(self.tag)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        # A PID namespace's init exits last, once the kernel has killed the rest of it.
        inits = [h.init_pid for h in self.hosts.values() if h.init_pid]
        try:
            wait_for(lambda: all(gone(pid) for pid in inits), 15, what="the hosts' inits to exit")
        except TimeoutError:
            pass


def gone(pid: int) -> bool:
    """The process has exited (a zombie has: only its parent's wait is missing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _claim_tag(names: Sequence[str]) -> int:
    """The first free lab number (1..99): its registry dir made atomically, owned by us."""
    REGISTRY.mkdir(parents=True, exist_ok=True)
    routes = _ip("route", "show", "table", "all", check=False).stdout
    for tag in range(1, 100):
        if f"{SUBNET}.{tag}." in routes:
            continue  # somebody else's network
        try:
            (REGISTRY / str(tag)).mkdir()
        except FileExistsError:
            continue
        (REGISTRY / str(tag) / "owner").write_text(f"{os.getpid()} {psutil.Process().create_time()}")
        (REGISTRY / str(tag) / "hosts").write_text(" ".join(names))
        return tag
    raise RuntimeError(f"no free lab number in {REGISTRY}")


def _owner_alive(tag_dir: Path) -> bool:
    try:
        pid, created = (tag_dir / "owner").read_text().split()
        return abs(psutil.Process(int(pid)).create_time() - float(created)) < 1
    except (FileNotFoundError, ValueError, psutil.NoSuchProcess):
        return False


def sweep() -> list[int]:
    """Remove the labs left by runs that died (their owner is gone); returns their tags."""
    removed = []
    if REGISTRY.is_dir():
        for d in REGISTRY.iterdir():
            if d.name.isdigit() and not _owner_alive(d):
                _remove_lab(int(d.name))
                removed.append(int(d.name))
    return removed


def _remove_lab(tag: int) -> None:
    """Kill every process of the lab's namespaces, then remove namespaces, links, cgroups, files."""
    if tag == 0:
        return
    prefix = f"scn{tag}-"
    namespaces = [line.split()[0] for line in _ip("netns", "list", check=False).stdout.splitlines()
                  if line.startswith(prefix)]
    for ns in namespaces:
        # Killing a host's init kills its PID namespace; anything that entered only the
        # network namespace is killed by name of that namespace.
        for pid in _ip("netns", "pids", ns, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    for ns in namespaces:
        try:
            wait_for(lambda: not _ip("netns", "pids", ns, check=False).stdout.split(), 15,
                     what=f"the processes of {ns} to exit")
        except TimeoutError:
            pass
        _ip("netns", "del", ns, check=False)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        dev = line.split(":")[1].strip().split("@")[0]
        if dev.startswith(prefix) or dev == f"scn{tag}br":
            _ip("link", "del", dev, check=False)
    for c in CONTROLLERS:
        for parent in Path("/sys/fs/cgroup", c).glob(f"sc-netns-{tag}-*"):
            _remove_cgroup_tree(parent)
    lab_dir = Path(f"/tmp/scn{tag}")
    if lab_dir.is_dir():
        # NOTE: the hosts' bind mounts live in their own mount namespaces; were one
        # visible here, rmtree would delete through it (the carried /root/.pyenv!).
        subprocess.run(["umount", "-R", "-l", str(lab_dir)], capture_output=True)
        mounted = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                   if line.split()[4].startswith(f"{lab_dir}/")]
        if mounted:
            raise RuntimeError(f"not removing {lab_dir}: still mounted there: {mounted}")
        shutil.rmtree(lab_dir, ignore_errors=True)
    shutil.rmtree(REGISTRY / str(tag), ignore_errors=True)


def _remove_cgroup_tree(d: Path) -> None:
    """rmdir a cgroup and its children, deepest first (a cgroup dir holds only kernel files)."""
    for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        d.rmdir()
    except OSError:
        pass


# ---------------------------------------------------------------------- a Ray cluster on a lab


class NetnsCluster:
    """A lab whose first host is the Ray head and the others workers, with `sc up` deployed.

    `timings` holds what the bring-up measured (seconds); `driver` answers from the head;
    `sc(...)` runs the CLI on the head against the API on the head's address.
    """

    API_PORT = 8000
    GCS_PORT = 6379

    def __init__(self, names: Sequence[str]) -> None:
        self.lab = Lab(names)
        self.head, *self.workers = names
        self.timings: dict[str, float] = {}
        self.driver: Driver | None = None

    @property
    def address(self) -> str:
        return f"{self.lab[self.head].addr}:{self.GCS_PORT}"

    @property
    def url(self) -> str:
        return f"http://{self.lab[self.head].addr}:{self.API_PORT}"

    def up(self) -> "NetnsCluster":
        from concurrent.futures import ThreadPoolExecutor

        t0 = time.monotonic()
        self.lab.up()
        self.timings["namespaces"] = time.monotonic() - t0
        self.timings["ray start head"] = self.lab.ray_start(self.head, "head")
        with ThreadPoolExecutor(len(self.workers)) as ex:
            for w, s in zip(self.workers, ex.map(lambda w: self.lab.ray_start(w, "worker", head=self.head),
                                                  self.workers)):
                self.timings[f"ray start {w}"] = s
        t1 = time.monotonic()
        r = self.lab.run(self.head, [str(VENV_BIN / "sc"), "up", "--address", self.address, "--state-dir",
                                     "/tmp/sc-state", "--api-host", self.lab[self.head].addr,
                                     "--api-port", str(self.API_PORT)],
                         env=host_env(RAY_AUTH_MODE="token"), timeout_s=180)
        self.timings["sc up"] = time.monotonic() - t1
        self.sc_up_output = r.stdout
        self.driver = Driver(self.lab, self.head, self.address)
        return self

    def sc(self, *args: str, check: bool = True, host: str | None = None) -> subprocess.CompletedProcess[str]:
        """The `sc` CLI on a host of the lab (the head unless told), against the API."""
        return self.lab.run(host or self.head, [str(VENV_BIN / "sc"), "--url", self.url, *args], check=check,
                            timeout_s=60)

    def sc_json(self, *args: str) -> Any:
        return json.loads(self.sc(*args, "--json").stdout)

    def down(self) -> None:
        if self.driver is not None:
            self.driver.close()
        self.lab.down()


# ---------------------------------------------------------------------- the driver


_ANSWER = "@sc-driver@ "


class Driver:
    """A Ray driver inside a host of the lab; `driver("expr")` evaluates there, returns JSON.

    The expression sees `ray`, `statedb`, `scaler`, `membership`, `node_of(host)` and `time`.
    """

    def __init__(self, lab: Lab, host: str, address: str) -> None:
        self.proc = lab.popen(host, [str(VENV_BIN / "python"), "-u", "-m", "tests.cluster.netns", "driver", address],
                              env=host_env(RAY_AUTH_MODE="token"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
        self("ray.is_initialized()", timeout_s=60)

    def __call__(self, expr: str, timeout_s: float = 30) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"expr": expr, "timeout_s": timeout_s}) + "\n")
        self.proc.stdin.flush()
        # NOTE: Ray may print to the driver's stdout too (a node's death, say): answers carry a mark.
        line = ""
        while not line.startswith(_ANSWER):
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the driver exited ({self.proc.poll()}) on {expr!r}")
        out = json.loads(line[len(_ANSWER):])
        if "error" in out:
            raise RuntimeError(f"{expr}: {out['error']}")
        return out["value"]

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _driver_main(address: str) -> None:
    import ray

    from sc_actors.membership import MEMBERSHIP_NAME
    from sc_actors.settings import NAMESPACE, SCALER_NAME, STATEDB_NAME, container_scaler_name

    ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR")

    def get(name: str) -> Any:
        return ray.get_actor(name, namespace=NAMESPACE)

    scope: dict[str, Any] = {
        "ray": ray, "time": time,
        "statedb": lambda: get(STATEDB_NAME), "scaler": lambda: get(SCALER_NAME),
        "membership": lambda: get(MEMBERSHIP_NAME), "node_of": lambda h: get(container_scaler_name(h)),
    }
    scope["get"] = lambda ref, timeout_s=10: ray.get(ref, timeout=timeout_s)
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            value = eval(msg["expr"], scope)  # a test's own expression, in a test-only process
            print(_ANSWER + json.dumps({"value": value}, default=str), flush=True)
        except Exception as e:  # the test sees it, with its type
            print(_ANSWER + json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["driver"]:
        _driver_main(sys.argv[2])
    elif sys.argv[1:2] == ["sweep"]:
        print("removed labs:", sweep())
