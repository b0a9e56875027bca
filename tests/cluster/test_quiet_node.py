"""A controlled host's Ray settings (issue 16, idle cost): one list, in cluster/local.py and
in `ray-start.sh worker`, which the user can override one by one or all at once.

`ray-start.sh` is run for real with a stand-in `ray` binary that records its arguments
and environment, so what a host gets is read, not assumed. No Ray starts.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cluster.local import (LAZY_IMPORTS_ENV, MINIMAL_AGENT_ENV, NODE_SITE_DIR, QUIET_NODE_ARGS, QUIET_NODE_ENV,
                           quiet_node_env, worker_command)

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "cluster" / "configs" / "ray-start.sh"


@pytest.fixture
def fake_ray(tmp_path):
    """A `ray` that writes its argv and environment to a file (RAY= for ray-start.sh)."""
    out = tmp_path / "called.json"
    exe = tmp_path / "ray"
    exe.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                   f"json.dump({{'argv': sys.argv[1:], 'env': dict(os.environ)}}, open({str(out)!r}, 'w'))\n")
    exe.chmod(0o755)
    return exe, out


def _run(fake_ray, role_args, **env):
    exe, out = fake_ray
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SC_", "REPORTER_", "PYTHONPATH"))}
    # A token in the environment: the worker role refuses to start without one.
    proc = subprocess.run(["bash", str(SCRIPT), *role_args], env={**base, "RAY": str(exe), "RAY_AUTH_TOKEN": "t",
                                                                  "SC_HOST": "h1", **env},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def test_a_worker_host_starts_with_every_quiet_setting_and_no_log_monitor(fake_ray):
    called = _run(fake_ray, ["worker", "10.0.0.1"])
    assert {k: called["env"].get(k) for k in QUIET_NODE_ENV} == QUIET_NODE_ENV
    assert called["argv"][:2] == ["start", "--address=10.0.0.1:6379"]
    for arg in QUIET_NODE_ARGS:
        assert arg in called["argv"]


def test_a_setting_the_user_gives_wins_over_ours(fake_ray):
    called = _run(fake_ray, ["worker", "10.0.0.1"], REPORTER_UPDATE_INTERVAL_MS="5000")
    assert called["env"]["REPORTER_UPDATE_INTERVAL_MS"] == "5000"
    assert called["env"]["RAY_memory_monitor_refresh_ms"] == QUIET_NODE_ENV["RAY_memory_monitor_refresh_ms"]


def test_sc_ray_defaults_starts_a_worker_with_rays_own_defaults(fake_ray):
    called = _run(fake_ray, ["worker", "10.0.0.1"], SC_RAY_DEFAULTS="1")
    assert not set(QUIET_NODE_ENV) & set(called["env"])
    assert not set(QUIET_NODE_ARGS) & set(called["argv"])


def test_the_head_keeps_rays_defaults_it_serves_the_dashboard_and_metrics(fake_ray):
    exe, _ = fake_ray
    called = _run(fake_ray, ["head"])
    assert called["argv"][0] == "start" and "--head" in called["argv"]
    assert not set(QUIET_NODE_ENV) & set(called["env"])


def test_quiet_node_env_leaves_out_what_the_environment_sets_and_all_with_sc_ray_defaults():
    assert quiet_node_env({}) == {**QUIET_NODE_ENV, "PYTHONPATH": str(NODE_SITE_DIR)}
    mine = quiet_node_env({"RAY_enable_metrics_collection": "1"})
    assert "RAY_enable_metrics_collection" not in mine
    assert set(mine) == set(QUIET_NODE_ENV) - {"RAY_enable_metrics_collection"} | {"PYTHONPATH"}
    assert quiet_node_env({"SC_RAY_DEFAULTS": "1"}) == {}


def test_the_node_site_dir_comes_first_on_the_pythonpath_and_the_users_entries_stay():
    assert quiet_node_env({"PYTHONPATH": "/a:/b"})["PYTHONPATH"] == f"{NODE_SITE_DIR}:/a:/b"


def test_ray_start_sh_puts_the_same_node_site_dir_first_on_the_pythonpath(fake_ray):
    called = _run(fake_ray, ["worker", "10.0.0.1"], PYTHONPATH="/mine")
    assert called["env"]["PYTHONPATH"] == f"{NODE_SITE_DIR}:/mine"
    assert "PYTHONPATH" not in _run(fake_ray, ["worker", "10.0.0.1"], SC_RAY_DEFAULTS="1")["env"]


def _dashboard_deps_check(env: dict[str, str]) -> str:
    """What Ray's own check says in a fresh Python started with `env` added."""
    code = ("import ray._private.utils as u; e = u.get_dashboard_dependency_error(); "
            "print('missing' if e else 'present')")
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", MINIMAL_AGENT_ENV)}
    proc = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_a_node_process_sees_the_dashboard_extras_missing_only_with_the_switch_on():
    """What makes `ray start` pass `--minimal` to the agent and the agent load no module: Ray's
    check, run in a process with the node's PYTHONPATH, with the switch on and off."""
    on = quiet_node_env({})
    assert on[MINIMAL_AGENT_ENV] == "1"
    assert _dashboard_deps_check(on) == "missing"
    assert _dashboard_deps_check({**on, MINIMAL_AGENT_ENV: "0"}) == "present"
    assert _dashboard_deps_check({}) == "present"  # a process without the node's settings: untouched


def test_the_node_sitecustomize_still_runs_a_sitecustomize_it_shadows(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import builtins\nbuiltins.SC_OTHER_SITE = 1\n")
    proc = subprocess.run([sys.executable, "-c", "import builtins; print(getattr(builtins, 'SC_OTHER_SITE', 0))"],
                          env={**os.environ, "PYTHONPATH": f"{NODE_SITE_DIR}:{tmp_path}"}, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"


def test_worker_command_joins_with_the_host_label_and_the_quiet_flags_unless_asked_not_to():
    cmd = worker_command("10.0.0.1:6390", "h2", ray_bin="/x/ray")
    assert cmd[:3] == ["/x/ray", "start", "--address=10.0.0.1:6390"]
    assert cmd[cmd.index("--labels") + 1] == "sc_host=h2"
    assert set(QUIET_NODE_ARGS) <= set(cmd)
    assert not set(QUIET_NODE_ARGS) & set(worker_command("10.0.0.1:6390", "h2", quiet=False, ray_bin="/x/ray"))


AGENT_LIKE = """import logging, sys
logging.disable(logging.CRITICAL)
import ray.dashboard.modules, ray.dashboard.utils as du
print(len(list(ray.dashboard.modules.__path__)), len(du.get_all_modules(du.DashboardAgentModule)))
"""


def _agent_like(script: Path, switch: str) -> tuple[int, int]:
    """(entries of `ray.dashboard.modules.__path__`, agent modules Ray finds) in a process run as `script`."""
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(AGENT_LIKE)
    env = {**os.environ, "PYTHONPATH": str(NODE_SITE_DIR), MINIMAL_AGENT_ENV: switch}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    paths, found = proc.stdout.split()
    return int(paths), int(found)


def test_the_minimal_agent_process_walks_no_dashboard_module_other_processes_keep_theirs(tmp_path):
    """Ray's agent script is `…/dashboard/agent.py`: there, with the switch on, the modules package
    has nothing to walk (Ray would import ~500 modules only to run none); elsewhere it is whole."""
    assert _agent_like(tmp_path / "dashboard" / "agent.py", "1") == (0, 0)
    paths, _ = _agent_like(tmp_path / "worker" / "main.py", "1")
    assert paths == 1
    paths, found = _agent_like(tmp_path / "dashboard" / "agent.py", "0")
    assert paths == 1 and found > 0  # the full agent: its modules, as Ray finds them


# ---------------------------------------------------------------------------- lazy imports (SC_RAY_LAZY_IMPORTS)


def _in_node_process(code: str, **env: str) -> list[str]:
    """Run `code` in a fresh Python with the node's PYTHONPATH and `env`; its printed lines."""
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", MINIMAL_AGENT_ENV, LAZY_IMPORTS_ENV)}
    proc = subprocess.run([sys.executable, "-c", code], env={**base, "PYTHONPATH": str(NODE_SITE_DIR), **env},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("\n")[:-1]


DEFERRED_USE = """import sys, ray
print(sorted(n for n in ('requests', 'jsonschema', 'yaml') if type(sys.modules[n]).__name__ == '_DeferredModule'))
import requests, yaml, jsonschema
from requests.adapters import HTTPAdapter
print(yaml.safe_load('a: 1'), jsonschema.Draft7Validator({'type': 'object'}).is_valid({}), HTTPAdapter.__name__)
print(sorted(type(sys.modules[n]).__name__ for n in ('requests', 'jsonschema', 'yaml')))
"""


def test_import_ray_leaves_requests_jsonschema_and_yaml_unrun_until_their_first_use():
    assert QUIET_NODE_ENV[LAZY_IMPORTS_ENV] == "1"
    not_run, used, kinds = _in_node_process(DEFERRED_USE, **{LAZY_IMPORTS_ENV: "1"})
    assert not_run == "['jsonschema', 'requests', 'yaml']"
    assert used == "{'a': 1} True HTTPAdapter"
    assert kinds == "['module', 'module', 'module']"  # plain modules once run
    not_run, used, kinds = _in_node_process(DEFERRED_USE, **{LAZY_IMPORTS_ENV: "0"})
    assert not_run == "[]" and used == "{'a': 1} True HTTPAdapter"


ARROW_REGISTERED = """import sys
from ray.util import serialization_addons
registered = []
class Context:  # what Ray's SerializationContext offers the add-ons
    def _register_cloudpickle_reducer(self, cls, reducer):
        registered.append(cls.__name__)
    def _register_cloudpickle_serializer(self, cls, custom_serializer=None, custom_deserializer=None):
        registered.append(cls.__name__)
serialization_addons.apply(Context())
print('pyarrow' in sys.modules, sorted(registered))
import pyarrow
print(sorted(registered))
"""


def test_a_node_worker_registers_rays_arrow_serializers_at_its_first_pyarrow_import_not_at_start():
    """What a worker's serialization context runs at connect (`serialization_addons.apply`)."""
    started, used = _in_node_process(ARROW_REGISTERED, **{LAZY_IMPORTS_ENV: "1"})
    assert started == "False ['ModelField', 'State']"
    rays_own, same = _in_node_process(ARROW_REGISTERED, **{LAZY_IMPORTS_ENV: "0"})
    assert rays_own.startswith("True ") and {"Table", "Schema"} <= set(eval(rays_own[len("True "):]))
    assert used == same == rays_own[len("True "):]


def _node_site() -> Any:
    """The node's sitecustomize as a module of its own name (nothing switched on: no env)."""
    spec = importlib.util.spec_from_file_location("sc_node_site_under_test", NODE_SITE_DIR / "sitecustomize.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def deferring(tmp_path, monkeypatch):
    """A package `scdeferpkg` (a submodule, a counter of runs) found through the node's deferring finder."""
    pkg = tmp_path / "scdeferpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import builtins, time\nbuiltins.SC_DEFER_RUNS = getattr(builtins, "
                                     "'SC_DEFER_RUNS', 0) + 1\ntime.sleep(0.2)\nVALUE = 42\n")
    (pkg / "sub.py").write_text("from . import VALUE\nDOUBLE = 2 * VALUE\n")
    (tmp_path / "scdeferbroken.py").write_text("raise RuntimeError('broken at run')\n")
    finder = _node_site()._DeferImports(["scdeferpkg", "scdeferbroken"])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    import builtins
    monkeypatch.setattr(builtins, "SC_DEFER_RUNS", 0, raising=False)
    yield builtins
    for name in ("scdeferpkg", "scdeferpkg.sub", "scdeferbroken"):
        sys.modules.pop(name, None)


def test_a_deferred_package_runs_once_at_its_first_attribute_also_from_threads_at_once(deferring):
    import scdeferpkg  # type: ignore[import-not-found]

    assert deferring.SC_DEFER_RUNS == 0
    assert hasattr(scdeferpkg, "__path__")  # held back until run: asking for it runs the package
    assert deferring.SC_DEFER_RUNS == 1
    sys.modules.pop("scdeferpkg")
    deferring.SC_DEFER_RUNS = 0
    import scdeferpkg as again  # type: ignore[import-not-found]

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda _: again.VALUE, range(8))) == [42] * 8
    assert deferring.SC_DEFER_RUNS == 1 and type(again) is types.ModuleType


def test_a_submodule_of_a_deferred_package_runs_the_package_first(deferring):
    from scdeferpkg.sub import DOUBLE  # type: ignore[import-not-found]

    assert DOUBLE == 84 and deferring.SC_DEFER_RUNS == 1


def test_a_deferred_module_that_fails_fails_at_its_first_use_and_is_not_left_imported(deferring):
    import scdeferbroken  # type: ignore[import-not-found]

    with pytest.raises(RuntimeError, match="broken at run"):
        scdeferbroken.anything
    assert "scdeferbroken" not in sys.modules


def test_the_container_scaler_imports_neither_numpy_nor_pyarrow_until_a_window_has_containers():
    out = _in_node_process("import sys, sc_actors.container_scaler\n"
                           "print(sorted(m for m in ('numpy', 'pyarrow', 'pandas') if m in sys.modules))")
    assert out == ["[]"]
