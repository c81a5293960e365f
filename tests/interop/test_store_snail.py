"""s-nail (a mailx) lists the same messages and subjects as we stored, in our Maildir
and our mbox, read headless."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from .peers import require_binary

pytestmark = pytest.mark.interop

SUBJECTS = ["plain", "From a line start", "ünïcode =?utf-8?q?x?=", "last one"]


def message(subject: str, i: int) -> bytes:
    return (f"From: sender{i}@example.test\r\nTo: b@example.test\r\nSubject: {subject}\r\n"
            f"\r\nFrom here on, body {i}\r\n>From quoted\r\n.\r\n").encode()


def snail_list(path: Path, home: Path) -> list[str]:
    snail = require_binary("s-nail")
    env = {**os.environ, "HOME": str(home), "MAILRC": "/dev/null", "LC_ALL": "C.UTF-8"}
    out = subprocess.run(
        [snail, "-n", "-N", "-H", "-S", "nosave", "-S", "smtp-auth=none", "-f", str(path)],
        capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=30, check=True,
    ).stdout.decode("utf-8", "replace")
    return [line for line in out.splitlines() if re.match(r"^.?.?[A-Z ]*\s*\d+ ", line)]


@pytest.mark.parametrize("kind", ["maildir", "mbox"])
def test_snail_lists_our_messages(kind: str, tmp_path: Path) -> None:
    if kind == "maildir":
        from mailagents.store.maildir import MaildirStore

        store = MaildirStore(tmp_path / "Maildir")
        path = tmp_path / "Maildir"
    else:
        from mailagents.store.mbox import MboxStore

        store = MboxStore(tmp_path / "mail", inbox=tmp_path / "inbox.mbox")
        path = tmp_path / "inbox.mbox"
    with store, store.folder("INBOX") as inbox:
        for i, subject in enumerate(SUBJECTS):
            inbox.append_bytes(message(subject, i))
    lines = snail_list(path, tmp_path)
    assert len(lines) == len(SUBJECTS), lines
    for line, subject in zip(lines, SUBJECTS, strict=True):
        assert subject.split()[0] in line, (line, subject)
