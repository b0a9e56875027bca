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

With `SC_RAY_LAZY_IMPORTS=1` a node process imports some of what `import ray` and a Ray worker
load at start only when it uses them (nothing is turned off, the code that runs is Ray's):

- Ray's Arrow serializers (Ray Data's, `ray._private.arrow_serialization.
  _register_custom_datasets_serializers`) are registered when pyarrow is first imported in the
  process, not at worker start: Ray imports pyarrow in every worker only to register them (about
  10 MB of private memory, ~90 modules, in the ContainerScaler, which never uses Arrow). A worker
  that imports pyarrow (a Ray Data task placed on the node, or an Arrow table it receives) gets
  the same serializers, registered right after pyarrow's own import, before any table of its exists;
- `requests`, `jsonschema` and `yaml` (DEFERRED), which `import ray` imports at the top of
  modules that use them only inside functions (TPU detection, the state API, runtime-env plugin
  schemas, label files, conda specs): `import requests` gives the module with its code not yet
  run, and the first attribute it lacks (`requests.get`, a submodule, `from requests import …`)
  runs it, once, under a lock; about 7 MB of private memory in each of the node's three Python
  processes (~190 modules). A failure in a deferred module's code surfaces at that first use
  instead of at import (they are installed and import cleanly with Ray's pinned versions).
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import threading
from types import ModuleType
from typing import Any, Callable, Optional, Sequence

OPTIONAL_DEPS = "ray.dashboard.optional_deps"
AGENT_MODULES = "ray.dashboard.modules"
AGENT_SCRIPT = os.path.join("dashboard", "agent.py")
SWITCH = "SC_RAY_MINIMAL_AGENT"
ARROW_SERIALIZATION = "ray._private.arrow_serialization"
ARROW_REGISTER = "_register_custom_datasets_serializers"
LAZY_IMPORTS_SWITCH = "SC_RAY_LAZY_IMPORTS"
DEFERRED = ("requests", "jsonschema", "yaml")
"""Top-level packages whose code runs at their first use in a node process (LAZY_IMPORTS_SWITCH)."""


class _NoModuleDiscovery(importlib.abc.MetaPathFinder):
    """Finds `ray.dashboard.modules` as usual, then leaves it without a path to walk."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Optional[ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != AGENT_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _AfterExec(spec.loader, _empty_path)
        return spec


def _empty_path(package: ModuleType) -> None:
    package.__path__ = []


class _AfterExec(importlib.abc.Loader):
    """A module's own loader, then `then(module)` once the module has run."""

    def __init__(self, real: importlib.abc.Loader, then: Callable[[ModuleType], None]) -> None:
        self.real = real
        self.then = then

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[ModuleType]:
        return self.real.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.real.exec_module(module)
        self.then(module)


class _LazyArrowSerializers(importlib.abc.MetaPathFinder):
    """Ray's Arrow serializers registered at pyarrow's first import in this process, not at worker start.

    Ray calls `_register_custom_datasets_serializers(context)` for each serialization context it
    makes (one per worker, at connect), and that imports pyarrow. Here the call keeps the context
    (or registers at once when pyarrow is already imported); the contexts kept are given to Ray's
    own function right after pyarrow's module has run.
    """

    def __init__(self) -> None:
        self.real: Optional[Callable[[Any], None]] = None
        self.waiting: list[Any] = []

    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Optional[ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        then: Callable[[ModuleType], None]
        if fullname == ARROW_SERIALIZATION:
            then = self._wrap
        elif fullname == "pyarrow" and self.waiting:
            then = self._register_waiting
        else:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _AfterExec(spec.loader, then)
        return spec

    def _wrap(self, module: ModuleType) -> None:
        self.real = getattr(module, ARROW_REGISTER, None)
        if self.real is not None:
            setattr(module, ARROW_REGISTER, self.register)

    def register(self, serialization_context: Any) -> None:
        assert self.real is not None
        if "pyarrow" in sys.modules:
            self.real(serialization_context)
        else:
            self.waiting.append(serialization_context)

    def _register_waiting(self, pyarrow: ModuleType) -> None:
        waiting, self.waiting = self.waiting, []
        assert self.real is not None
        for context in waiting:
            self.real(context)


_pending: dict[str, "_Deferred"] = {}
"""Deferred modules whose code has not run yet, by name."""


class _DeferredModule(ModuleType):
    """A module imported but not yet run: the first attribute it lacks runs its code."""

    def __getattr__(self, name: str) -> Any:
        loader = _pending.get(self.__name__)
        if loader is None or not loader.run(self):
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        return getattr(self, name)


class _Deferred(importlib.abc.Loader):
    """Imports a module without running it (`_DeferredModule`); `run` runs its own loader later.

    A package's `__path__` is held back until then, so importing one of its submodules runs the
    package first, as a plain import does.
    """

    def __init__(self, real: importlib.abc.Loader) -> None:
        self.real = real
        self.lock = threading.RLock()
        self.path: Optional[list[str]] = None
        self.running = False

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[ModuleType]:
        return self.real.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.path = module.__dict__.pop("__path__", None)
        _pending[module.__name__] = self
        module.__class__ = _DeferredModule

    def run(self, module: ModuleType) -> bool:
        """Run the module's code unless done; False from inside that run (a module partly run)."""
        with self.lock:
            if self.running:
                return False
            if _pending.get(module.__name__) is not self:
                return True  # run meanwhile by another thread
            self.running = True
            try:
                if self.path is not None:
                    module.__path__ = self.path
                module.__loader__ = self.real
                if module.__spec__ is not None:
                    module.__spec__.loader = self.real
                self.real.exec_module(module)
            except BaseException:
                sys.modules.pop(module.__name__, None)  # as a failed import leaves it
                raise
            finally:
                self.running = False
                del _pending[module.__name__]
                module.__class__ = ModuleType
        return True


class _DeferImports(importlib.abc.MetaPathFinder):
    """Finds these modules (DEFERRED) as usual, with a `_Deferred` loader."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Optional[ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Deferred(spec.loader)
        return spec


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
if os.environ.get(LAZY_IMPORTS_SWITCH) == "1":
    sys.meta_path[:0] = [_LazyArrowSerializers(), _DeferImports(DEFERRED)]
_chain()
