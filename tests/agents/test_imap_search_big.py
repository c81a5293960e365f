"""BODY and TEXT over a 20 MB message run in bounded memory: the message is read in
chunks (part map and text alike) and never held whole (tracemalloc's peak stays a
small fraction of the message's size)."""

from __future__ import annotations

import base64
import tracemalloc
from pathlib import Path

import pytest

from mailagents.agents._imap_search import SearchView, search
from mailagents.imap._search import Not, TextKey
from mailagents.store import MaildirStore, MboxStore, Store

SIZE = 20 * 1024 * 1024
LINE = b"lorem ipsum dolor sit amet, consectetur adipiscing elit sed do eiusmod\r\n"


def make_store(kind: str, path: Path) -> Store:
    if kind == "maildir":
        return MaildirStore(path / "Maildir", fsync=False)
    return MboxStore(path / "mail", fsync=False)


@pytest.mark.parametrize(("kind", "encoding"), [("maildir", "base64"), ("mbox", "7bit")])
def test_body_search_of_20_mb_in_bounded_memory(tmp_path: Path, kind: str, encoding: str) -> None:
    store = make_store(kind, tmp_path)
    with store, store.folder("INBOX") as inbox:
        writer = inbox.append()
        writer.write(
            b"From: big@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: " + encoding.encode() + b"\r\n\r\n"
        )
        block = LINE * 1000
        if encoding == "base64":
            block = base64.encodebytes(block).replace(b"\n", b"\r\n")
        written = 0
        while written < SIZE:
            writer.write(block)
            written += len(block)
        tail = b"the hidden NEEDLE at the very end\r\n"
        if encoding == "base64":
            tail = base64.encodebytes(tail).replace(b"\n", b"\r\n")
        writer.write(tail)
        writer.commit()
        inbox.refresh()
        view = SearchView(messages=inbox.messages(), folder=inbox)
        uid = view.messages[0].uid
        assert view.messages[0].size > SIZE
        tracemalloc.start()
        try:
            found = search((TextKey(name="BODY", value="hidden needle"),), view)
            missing = search(
                (
                    Not(
                        key=TextKey(name="TEXT", value="absent words"),
                    ),
                ),
                view,
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert found == [uid]
        assert missing == [uid]
        assert peak < 4 * 1024 * 1024, peak
