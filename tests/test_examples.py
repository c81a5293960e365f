"""Every script in examples/ runs and does what its docstring says."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_smtp_in_memory(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "smtp_in_memory.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "accepted: ['<b@example.test>']" in out
    assert "refused:  ['<c@elsewhere.example>']" in out
    assert r"Hello.\r\n.dot line\r\n" in out


def test_pop3_in_memory(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "pop3_in_memory.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "+OK maildrop locked and ready, 2 messages" in out
    assert "\r\n..a line that starts with a dot\r\n.\r\n" in out.replace("\n", "\r\n").replace(
        "\r\r\n", "\r\n"
    )
    assert "deleted at QUIT: ['0000000100000001']" in out


def test_imap_client(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "imap_client.py"), run_name="__main__")
    out = capsys.readouterr().out
    # The password holds CR LF: it went out as a literal, never inside the line.
    assert "C: b'A0001 LOGIN fred {10}\\r\\n'" in out
    # COPYUID's UIDs stay ranges.
    assert "source=SequenceSet(ranges=((4380, 4381),)" in out
    assert "closed: True" in out


def test_imap_server(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "imap_server.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "SELECT INBOX: ('OK', [b'1'])" in out
    assert "b'Subject: Hello\\r\\n\\r\\n'" in out
    # The fetch of BODY[...] (not BODY.PEEK) set \Seen in the store.
    assert "flags now: b'1 (FLAGS (\\\\Recent \\\\Seen))'" in out
