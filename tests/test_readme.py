"""The README reads right for a newcomer (issue 14, item 9 and item 8's script table).

A root shell on a fresh Debian image may have no `sudo`, so the commands the README
gives are run as written by root; every heading stands on its own line; the
script table names only scripts the original's HEAD has.
"""
from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _code_lines() -> list[str]:
    lines, inside = [], False
    for line in README.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside:
            lines.append(line)
    return lines


def test_no_command_in_the_readme_needs_sudo():
    assert [line for line in _code_lines() if line.lstrip().startswith("sudo ")] == []
    assert "as root (or with" in README


def test_every_heading_is_on_its_own_line():
    doubled = [line for line in README.splitlines() if re.match(r"^#+ .*#+ ", line)]
    assert doubled == []
    assert README.count("\n## Cluster\n") == 1


def test_the_script_table_names_no_user_subscription_script():
    # The original's HEAD (df2d65e) has no Users/subscribe_user.sh nor desubscribe_user.sh.
    table = [line for line in README.splitlines() if line.startswith("| `")]
    assert not any("subscribe_user.sh" in line for line in table)


def test_the_readme_says_how_to_keep_the_metrics_port_to_the_machine():
    metrics = README[README.index("**Metrics.**"):README.index("**Decision log.**")]
    assert "--metrics-export-port=" in metrics
    assert "! -i lo -j DROP" in metrics


def test_python_commands_use_the_venv_where_the_packages_are():
    # A fresh machine's `python` (if any) has no duckdb, polars or pyarrow.
    bare = [line for line in _code_lines() if re.match(r"^\s*python3? ", line)]
    assert bare == []
    assert "`python -m" not in README


def test_ray_commands_name_the_venvs_ray():
    # `ray` is installed in .venv/bin only: a bare `ray …` is "command not found" on a fresh machine.
    bare = [line for line in _code_lines() if re.match(r"^\s*ray ", line)]
    assert bare == []
    assert "$(ray get-auth-token)" not in README and "with `ray get-auth-token`" not in README


def test_the_readmes_test_command_checks_imports_and_types_before_pytest():
    # `bash cluster/bootstrap.sh test` is the one command the README gives for the tests:
    # under `set -e` it stops on an import-linter contract or a mypy error before pytest starts.
    assert "bash cluster/bootstrap.sh test" in README
    script = (Path(__file__).resolve().parents[1] / "cluster" / "bootstrap.sh").read_text()
    assert "set -euo pipefail" in script
    verb = script[script.index("\n  test)") + len("\n  test)"):]
    verb = verb[:verb.index(";;")]
    commands = [line.split()[0] if not line.startswith("exec ") else line.split()[1]
                for line in (raw.strip() for raw in verb.splitlines()[1:])
                if line and not line.startswith("log ")]
    assert commands == [".venv/bin/lint-imports", ".venv/bin/mypy", ".venv/bin/python"]
