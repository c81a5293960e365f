"""The README's example runs as written (a stranger copies it first)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_exactly_two_quick_start_commands() -> None:
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)```", quick, flags=re.S)
    lines = [line for block in commands for line in block.splitlines() if line.strip()]
    assert lines == ["scripts/demo", "scripts/test"]
    root = README.parent
    for script in ("scripts/demo", "scripts/test"):
        assert (root / script).stat().st_mode & 0o111, f"{script} is not executable"


@pytest.mark.parametrize("source", python_blocks())
def test_readme_python_example_runs(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(source, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "Subject: hi" in out
