"""The documentation builds without a single warning, and the conformance ledger is
well formed."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_sphinx_build_has_no_warnings(tmp_path: Path) -> None:
    if importlib.util.find_spec("sphinx") is None:
        pytest.skip("Sphinx is not installed (pip install -e '.[docs]')")
    if importlib.util.find_spec("furo") is None:
        pytest.skip("the furo theme is not installed (pip install -e '.[docs]')")
    # -W: warnings are errors; --keep-going: report them all; -n: nitpicky, every
    # cross-reference must resolve (stdlib gaps are listed in docs/conf.py).
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-n",
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(tmp_path / "html"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "html" / "index.html").exists()


def _ledger_rows() -> list[list[str]]:
    """The rows of every list-table in docs/conformance.rst, header rows excluded."""
    rows: list[list[str]] = []
    current: list[str] | None = None
    for line in (DOCS / "conformance.rst").read_text(encoding="utf-8").splitlines():
        if line.startswith("   * - "):
            current = [line[len("   * - ") :].strip()]
            rows.append(current)
        elif line.startswith("     - ") and current is not None:
            current.append(line[len("     - ") :].strip())
        elif line.startswith("       ") and current is not None:
            current[-1] += " " + line.strip()
        elif not line.strip().startswith(":") and line.strip():
            current = None
    return [row for row in rows if row[0] != "RFC"]


def _split_ledger() -> tuple[list[list[str]], list[list[str]]]:
    """(RFC rows, convention rows): the stores follow conventions, not RFCs, and have a
    table of their own whose header starts with "Convention"."""
    rfc_rows: list[list[str]] = []
    convention_rows: list[list[str]] = []
    target = rfc_rows
    for row in _ledger_rows():
        if row[0] == "Convention":
            target = convention_rows
            continue
        if row[0].startswith(":rfc:") or row[0].startswith("``draft-"):
            target = rfc_rows
        target.append(row)
    return rfc_rows, convention_rows


def test_conformance_conventions_are_well_formed() -> None:
    _, conventions = _split_ledger()
    assert conventions, "the stores' conventions table is missing"
    for row in conventions:
        assert len(row) == 3, f"a convention row needs convention, piece, status: {row}"
        assert re.match(r"(full|partial|planned)\b", row[2]), row


def test_conformance_ledger_is_well_formed() -> None:
    rows, _ = _split_ledger()
    assert len(rows) > 20
    seen: set[str] = set()
    for row in rows:
        assert len(row) == 4, f"a ledger row needs RFC, title, piece, status: {row}"
        number, title, piece, status = row
        assert re.fullmatch(r":rfc:`\d+`|``draft-[a-z0-9-]+``", number), row
        assert number not in seen, f"{number} is listed twice"
        seen.add(number)
        assert title and piece, row
        assert re.match(r"(full|partial|planned)\b", status), (
            f"status must start with full, partial or planned: {row}"
        )
    for core_rfc in ("5321", "4954", "4422", "4616", "9051", "1939"):
        assert f":rfc:`{core_rfc}`" in seen
