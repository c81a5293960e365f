"""The store-backed IMAP session driven by imapclient (a real client library), over
Maildir and mbox: the commands of issue 16 as imapclient sends them."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailagents.store import Store
from tests.agents.test_imap_session import make_store, message, serve

imapclient = pytest.importorskip("imapclient")


@pytest.fixture(params=["maildir", "mbox"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from make_store(request.param, tmp_path)


def test_imapclient_session(store: Store) -> None:
    def client(port: int) -> None:
        c = imapclient.IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10)
        c.login("user", "secret")
        assert c.namespace().personal == (("", "/"),)
        assert b"CONDSTORE" in c.enable("CONDSTORE")
        c.create_folder("Work")
        c.subscribe_folder("Work")
        names = [name for _, _, name in c.list_folders()]
        assert "INBOX" in names and "Work" in names
        assert [name for _, _, name in c.list_sub_folders()] == ["Work"]
        status = c.folder_status("INBOX", ["MESSAGES", "UIDNEXT", "UNSEEN", "HIGHESTMODSEQ"])
        assert status[b"MESSAGES"] == 3 and status[b"UNSEEN"] == 2
        selected = c.select_folder("INBOX")
        assert selected[b"EXISTS"] == 3 and selected[b"UIDNEXT"] == 4
        assert b"HIGHESTMODSEQ" in selected
        assert c.search(["UNSEEN"]) == [2, 3]
        assert c.search(["FROM", "a3@example.test"]) == [3]
        fetched = c.fetch([1, 2], ["FLAGS", "RFC822.SIZE", "ENVELOPE", "BODY.PEEK[]"])
        assert fetched[2][b"BODY[]"] == message(2)
        assert fetched[1][b"ENVELOPE"].subject == b"message 1"
        c.add_flags([2], ["\\Flagged", "$Label"])
        assert set(c.get_flags([2])[2]) >= {b"\\Flagged", b"$Label"}
        c.remove_flags([2], ["$Label"])
        assert b"$Label" not in c.get_flags([2])[2]
        c.copy([1], "Work")
        c.move([3], "Work")
        date = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
        answer = c.append("Work", message(7), flags=["\\Seen"], msg_time=date)
        assert b"APPENDUID" in answer
        c.add_flags([1], ["\\Deleted"])
        c.uid_expunge([1])
        assert c.search(["ALL"]) == [2]
        c.idle()
        c.idle_done()
        c.unselect_folder()
        c.rename_folder("Work", "Play")
        work = c.select_folder("Play", readonly=True)
        assert work[b"EXISTS"] == 3 and work[b"READ-ONLY"] == [b""]
        c.close_folder()
        c.delete_folder("Play")
        assert "Play" not in [name for _, _, name in c.list_folders()]
        c.logout()

    serve(store, client)
    with store.folder("INBOX") as inbox:
        assert [m.uid for m in inbox.messages()] == [2]
