"""benchmarks/imap_parse.py still runs: a tiny load (40 responses, one run), in its own
interpreter as a user runs it; no figure is asserted (CI machines are loaded)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "imap_parse.py"


def test_benchmark_quick_mode() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--count", "40", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "40 FETCH responses" in lines[0]
    assert lines[-1].startswith("ratio ours/imapclient")
    assert done.stdout.count("ours, results kept (parse_response):") == 2


def test_benchmark_data_parses_the_same_in_both_forms() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import imap_parse
    finally:
        sys.path.remove(str(SCRIPT.parent))
    from mailagents.imap._fetch_data import FetchData
    from mailagents.imap._response_parser import parse_response

    for header in (False, True):
        data = imap_parse.responses(30, header=header)
        frames = imap_parse.as_frames(data)
        parsed = [parse_response(f) for f in frames]
        assert all(isinstance(p, FetchData) and p.envelope and p.bodystructure for p in parsed)
        assert [p.number for p in parsed if isinstance(p, FetchData)] == list(range(1, 31))
        if header:
            assert all(
                isinstance(p, FetchData) and len(p.sections) == 1 and p.sections[0].data
                for p in parsed
            )
        assert len(imap_parse.as_imaplib(data)) == (60 if header else 30)
