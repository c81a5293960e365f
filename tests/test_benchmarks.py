"""Every script in benchmarks/ still imports what it uses and parses its arguments.

Benchmarks are not run by the tests (they measure, and take minutes); this only keeps a
rename in the package from breaking them unnoticed. Each runs in its own interpreter,
as a user runs it, with ``--help``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))


def test_there_are_benchmarks() -> None:
    assert {"pop3.py", "smtp_core.py", "smtp_server.py", "store.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_starts(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
