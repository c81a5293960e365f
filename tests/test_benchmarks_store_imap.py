"""benchmarks/store_imap.py runs through on a tiny corpus (our figures only: the
Dovecot side needs Dovecot and root, and is not what this checks) and prints each
figure; the script's own assertions (every cached entry found, every message counted
by STATUS, every window whole) run too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "store_imap.py"


def test_store_imap_benchmark_runs_small() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--no-dovecot",
            "--messages=40",
            "--folders=2",
            "--folder-size=30",
            "--big=200000",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "part-map scan of 40 messages" in out
    assert "STATUS of 2 folders" in out
    assert "BODY[]<0.1024>" in out
    assert out.rstrip().endswith("ratio: not measured (no Dovecot)")
