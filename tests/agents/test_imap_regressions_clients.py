"""Regressions found by driving our IMAP server with fetchmail, getmail6 and s-nail
(tests/interop/test_imap_maa_clients.py), each reduced to the store or to imaplib."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from mailagents.store import MaildirStore

from .test_imap_session import login, serve

# --- A Maildir file another program wrote with CRLF line ends --------------------------
# Found with fetchmail in IDLE: a message renamed into new/ by hand, with CRLF line
# ends, was served with CR CR LF (every LF given a CR, even after a CR): its size was
# off by the number of lines, BODY[HEADER] was the whole message and BODY[TEXT] empty.
# Dovecot reads such files as they are (it adds a CR only before a bare LF); so do we,
# for files without a ,W= size and for those whose ,W= is their file size (Dovecot's
# mail_save_crlf). Our own LF files keep their exact round trip.

HEADER = b"From: a@example.test\r\nSubject: written elsewhere\r\n\r\n"


def big_crlf_message() -> bytes:
    """Over 64 KiB (the reader's chunk), a CRLF split by the chunk boundary: its CR
    the last byte of the first chunk, its LF the first of the next."""
    line = b"line %05d of the body\r\n"  # 24 octets
    pad = ((1 << 16) - 1 - len(HEADER) - 24) % 24
    data = HEADER + b"x" * pad + b"\r\n" + b"".join(line % i for i in range(4000))
    assert data[(1 << 16) - 1 : (1 << 16) + 1] == b"\r\n"
    return data


MESSAGES = {
    "small": HEADER + b"one\r\ntwo\r\n",
    "mixed": HEADER + b"crlf line\r\nbare lf line\nlone cr\rend\r\n",
    "big": big_crlf_message(),
}


def put_file(maildir: Path, name: str, data: bytes) -> None:
    """``data`` into ``cur/`` as another program would: written in tmp/, renamed."""
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    os.rename(_write(maildir / "tmp" / name, data), maildir / "cur" / f"{name}:2,")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def served(data: bytes) -> bytes:
    """What a reader of ``data`` gets: a CR before every bare LF."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def names(kind: str, data: bytes) -> str:
    if kind == "plain":
        return "1700000000.M1P1.elsewhere"
    return f"1700000000.M1P1.elsewhere,S={len(data)},W={len(data)}"  # mail_save_crlf


# (A file with bare LFs as well has a ,W= larger than its size: not Dovecot's CRLF.)
@pytest.mark.parametrize(
    ("which", "kind"),
    [
        ("small", "plain"),
        ("mixed", "plain"),
        ("big", "plain"),
        ("small", "dovecot-crlf"),
        ("big", "dovecot-crlf"),
    ],
)
def test_store_reads_a_crlf_file_as_it_is(tmp_path: Path, kind: str, which: str) -> None:
    data = MESSAGES[which]
    put_file(tmp_path / "Maildir", names(kind, data), data)
    expected = served(data)
    with MaildirStore(tmp_path / "Maildir", fsync=False) as store, store.folder("INBOX") as inbox:
        (info,) = inbox.messages()
        assert inbox.read_message(info.uid) == expected
        assert info.size == len(expected)
        for start, length in (
            (0, 10),
            (len(HEADER) - 1, 3),
            ((1 << 16) - 2, 5),
            ((1 << 16) + 7, 100),
            (len(expected) - 4, 10),
        ):
            with inbox.open_message(info.uid, start, length) as stream:
                assert stream.read() == expected[start : start + length], (start, length)


def test_store_still_gives_back_a_cr_before_crlf_in_its_own_files(tmp_path: Path) -> None:
    """What our writer stored (CR LF made LF on disk) reads back exactly, a CR before a
    CRLF included (the ,W= size tells our files)."""
    data = b"Subject: x\r\n\r\nab\rc\r\r\nend\r\n"
    with MaildirStore(tmp_path / "Maildir", fsync=False) as store, store.folder("INBOX") as inbox:
        uid = inbox.append_bytes(data).uid
        assert uid is not None
        inbox.refresh()
        assert inbox.read_message(uid) == data
        with inbox.open_message(uid, 15, 6) as stream:
            assert stream.read() == data[15:21]


def test_imap_fetch_of_a_crlf_file_splits_header_and_text(tmp_path: Path) -> None:
    data = MESSAGES["small"]
    put_file(tmp_path / "Maildir", names("plain", data), data)
    store = MaildirStore(tmp_path / "Maildir", fsync=False)

    def client(port: int) -> list[Any]:
        imap = login(port)
        imap.select("INBOX")
        typ, got = imap.fetch("1", "(RFC822.SIZE BODY.PEEK[HEADER] BODY.PEEK[TEXT])")
        assert typ == "OK"
        typ, whole = imap.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK"
        imap.logout()
        return [got, whole]

    try:
        got, whole = serve(store, client)
    finally:
        store.close()
    parts = [item for item in got if isinstance(item, tuple)]
    assert b"RFC822.SIZE %d" % len(data) in parts[0][0]
    assert parts[0][1] == HEADER
    assert parts[1][1] == b"one\r\ntwo\r\n"
    assert whole[0][1] == data
