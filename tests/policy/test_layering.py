"""The policy sits on the Ray-free ground floor (STYLE §5, §6.1)."""
from __future__ import annotations

import subprocess
import sys

POLICY_MODULES = ["jsonlogic", "limits", "events", "requests", "cores", "planning", "propagation"]
FORBIDDEN = ["ray", "fastapi", "pyarrow", "lxc", "typer", "sc_actors.backends", "sc_actors.store"]


def test_importing_the_policy_pulls_in_no_ray_api_storage_or_host_code():
    imports = "; ".join(f"import sc_actors.policy.{m}" for m in POLICY_MODULES)
    probe = f"import sys; {imports}; print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
