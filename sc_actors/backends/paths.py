"""Container name → directory, checked before any path exists (STYLE §6.9, reference §11.5).

The original joined structure names into cgroup paths unchecked. Every path the
backends build from a name goes through `container_dir`, which refuses names that
are not plain (`check_name`) and directories whose real location is not strictly
inside the base (a symlink planted under the base that points elsewhere).
"""
from __future__ import annotations

from pathlib import Path

from ..model import check_name


def container_dir(base: Path, name: str) -> Path:
    """The real directory of `name` under `base`; ValueError if it would escape.

    The result is resolved (symlinks followed), so later file operations act on
    the path that was checked. `base` need not exist yet.
    """
    check_name(name)
    # NOTE: `check_name` uses re.match with `$`, which also accepts one trailing
    # newline; a path component must not carry one.
    if name != name.strip():
        raise ValueError(f"invalid name {name!r}: surrounding whitespace")
    real_base = Path(base).resolve()
    real = (real_base / name).resolve()
    if real == real_base or not real.is_relative_to(real_base):
        raise ValueError(f"container {name!r} resolves to {real}, outside {real_base}")
    return real
