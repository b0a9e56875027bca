"""Run by every Python process of a controlled host's Ray node (this directory is first on the
PYTHONPATH `ray-start.sh worker` and `cluster.local.quiet_node_env` give `ray start`, whose raylet
passes its environment on to the dashboard agent, the runtime env agent and the workers).

With `SC_RAY_MINIMAL_AGENT=1` it makes `import ray.dashboard.optional_deps` fail in this process,
which is how Ray tells a minimal install (`pip install ray`) from `ray[default]`
(`ray._private.utils.get_dashboard_dependency_error`). Two checks read it on a node:

- `ray start` (services.start_raylet) then starts the node's dashboard agent with `--minimal`:
  no gRPC and no HTTP server;
- the agent itself (dashboard.utils.get_all_modules) then loads none of its modules
  (reporter, log, event, job, healthz, aggregator), so it only watches its raylet.

Both are needed: `--minimal` alone still loads the seven modules. In the agent process it also
empties `ray.dashboard.modules.__path__` once that package is imported: a minimal agent loads no
module, yet Ray's module discovery (pkgutil.walk_packages) imports every one of the package's
~500 modules that import without the extras, about 27 MB of the agent's 65 MB PSS, to find
none to run. Nothing is uninstalled and other processes on the machine are not touched. A
`sitecustomize` found later on sys.path (e.g. a distribution's own) still runs.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import Optional, Sequence

OPTIONAL_DEPS = "ray.dashboard.optional_deps"
AGENT_MODULES = "ray.dashboard.modules"
AGENT_SCRIPT = os.path.join("dashboard", "agent.py")
SWITCH = "SC_RAY_MINIMAL_AGENT"


class _NoModuleDiscovery(importlib.abc.MetaPathFinder):
    """Finds `ray.dashboard.modules` as usual, then leaves it without a path to walk."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Optional[ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != AGENT_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _EmptiedPackage(spec.loader)
        return spec


class _EmptiedPackage(importlib.abc.Loader):
    def __init__(self, real: importlib.abc.Loader) -> None:
        self.real = real

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[ModuleType]:
        return self.real.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.real.exec_module(module)
        module.__path__ = []


def _chain() -> None:
    """Run the next `sitecustomize` on sys.path, the one this file shadows, if any."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


if os.environ.get(SWITCH) == "1":
    # A None entry makes the import raise ImportError (ModuleNotFoundError), as a missing package does.
    sys.modules.setdefault(OPTIONAL_DEPS, None)  # type: ignore[arg-type]
    if (sys.argv[0] if sys.argv else "").endswith(AGENT_SCRIPT):
        sys.meta_path.insert(0, _NoModuleDiscovery())
_chain()
