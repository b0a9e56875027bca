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

Both are needed: `--minimal` alone still loads the seven modules. Nothing is uninstalled and
other processes on the machine are not touched. A `sitecustomize` found later on sys.path
(e.g. a distribution's own) still runs.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

OPTIONAL_DEPS = "ray.dashboard.optional_deps"
SWITCH = "SC_RAY_MINIMAL_AGENT"


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
_chain()
