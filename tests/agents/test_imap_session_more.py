"""The store-backed IMAP session, continued: FETCH through the fetch helper (streamed
bodies, \\Seen, EXPUNGEISSUED), an IMAP4rev2 session, LIST-EXTENDED and LIST-STATUS,
PERMANENTFLAGS, APPEND with LITERAL+ to a missing mailbox."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailagents.agents._imap_session import imap_config, store_imap_server
from mailagents.aio import IMAPClient
from mailagents.aio.tls import make_self_signed
from mailagents.store import Store
from tests.agents.test_imap_session import Users, login, make_store, message, serve, untagged

BIG = b"Subject: big\r\n\r\n" + b"0123456789abcdef" * 40_000 + b"\r\n"  # 640 KB


@pytest.fixture(params=["maildir", "mbox"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from make_store(request.param, tmp_path)


def _add_big(store: Store) -> None:
    with store.folder("INBOX") as inbox:
        inbox.append_bytes(BIG)


def test_fetch_items_bodies_and_seen(store: Store) -> None:
    _add_big(store)

    def client(port: int) -> tuple[Any, ...]:
        imap = login(port)
        imap.select("INBOX")
        typ, flags = imap.fetch("1:3", "(UID FLAGS RFC822.SIZE)")
        assert typ == "OK" and len(flags) == 3
        typ, peek = imap.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        typ, seen = imap.fetch("2", "(FLAGS)")
        typ, body = imap.fetch("2", "(BODY[TEXT])")
        typ, after = imap.fetch("2", "(FLAGS)")
        typ, big = imap.uid("FETCH", "4", "(BODY.PEEK[])")
        typ, part = imap.fetch("4", "(BODY.PEEK[]<0.10>)")
        typ, structure = imap.fetch("1", "(BODYSTRUCTURE ENVELOPE)")
        imap.logout()
        return flags, peek, seen, body, after, big, part, structure

    flags, peek, seen, body, after, big, part, structure = serve(store, client)
    assert re.match(rb"1 \(UID 1 FLAGS \(.*\\Seen.*\) RFC822.SIZE \d+\)", flags[0])
    assert peek[0][1].strip() == b"Subject: message 2"
    assert b"\\Seen" not in seen[0]
    assert body[0][1] == b"Body 2\r\n"
    assert b"\\Seen" in after[0]
    assert big[0][1] == BIG and b"UID 4" in big[0][0]
    assert part[0][1] == BIG[:10]
    assert b"BODYSTRUCTURE" in structure[0] and b"ENVELOPE" in structure[0]


def test_modseq_of_a_fetch_that_sets_seen_is_the_new_one(store: Store) -> None:
    # Regression: BODY[] set \Seen but the FETCH response carried the MODSEQ read
    # before that change, so a CONDSTORE client missed it (RFC 7162).
    def client(port: int) -> Any:
        imap = login(port)
        imap.select("INBOX")
        typ, data = imap.fetch("2", "(MODSEQ BODY[TEXT])")
        typ, later = imap.fetch("2", "(MODSEQ)")
        imap.logout()
        return data, later

    data, later = serve(store, client)
    seen = re.search(rb"MODSEQ \((\d+)\)", data[0][0])
    now = re.search(rb"MODSEQ \((\d+)\)", later[0])
    assert seen is not None and now is not None
    assert seen.group(1) == now.group(1)


def test_examine_fetch_sets_no_seen(store: Store) -> None:
    def client(port: int) -> Any:
        imap = login(port)
        imap.select("INBOX", readonly=True)
        imap.fetch("2", "(BODY[])")
        imap.logout()

    serve(store, client)
    with store.folder("INBOX") as inbox:
        assert "\\Seen" not in inbox.info(2).flags


def test_fetch_of_a_message_expunged_elsewhere_is_expungeissued(store: Store) -> None:
    def client(port: int) -> tuple[Any, Any, Any]:
        imap = login(port)
        imap.select("INBOX")
        with store.folder("INBOX") as other:
            other.set_flags([2], ["\\Deleted"], "add")
            other.expunge([2])
        typ, data = imap.fetch("2", "(BODY[])")
        expunges_during_fetch = untagged(imap, "EXPUNGE")
        imap.noop()
        later = untagged(imap, "EXPUNGE")
        imap.logout()
        return (typ, data), expunges_during_fetch, later

    (typ, data), during, later = serve(store, client)
    assert typ == "NO" and b"EXPUNGEISSUED" in data[0]
    assert during == [] and later == [b"2"]


def test_imap4rev2_session_gets_esearch_and_no_recent(store: Store) -> None:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rwb")
            f.readline()
            f.write(
                b"a LOGIN user secret\r\nb ENABLE IMAP4rev2\r\nc SELECT INBOX\r\n"
                b"d SEARCH UNSEEN\r\ne STATUS INBOX (MESSAGES RECENT)\r\nf LOGOUT\r\n"
            )
            f.flush()
            return f.read()

    out = serve(store, client)
    assert b"* ENABLED IMAP4rev2" in out
    assert b"RECENT" not in out.split(b"c OK")[0].split(b"b OK")[1]
    assert b'* ESEARCH (TAG "d") ALL 2:3' in out
    assert re.search(rb'\* LIST \([^)]*\) "/" INBOX\r\n', out.split(b"c OK")[0])
    assert re.search(rb"\* STATUS INBOX \(MESSAGES 3\)", out)


def test_list_extended_status_special_use_and_nonexistent(store: Store) -> None:
    store.create_folder("Sent", special_use="\\Sent")
    store.create_folder("Gone")
    store.subscribe("Gone")
    store.subscribe("INBOX")
    store.delete_folder("Gone")

    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rwb")
            f.readline()
            f.write(
                b'a LOGIN user secret\r\nb LIST (SUBSCRIBED) "" "*"\r\n'
                b'c LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT) SUBSCRIBED)\r\n'
                b'd LIST (SPECIAL-USE) "" "*"\r\ne LIST "" ""\r\nf LOGOUT\r\n'
            )
            f.flush()
            return f.read()

    out = serve(store, client)
    b = out.split(b"b OK")[0]
    assert re.search(rb'\* LIST \([^)]*\\NonExistent[^)]*\) "/" Gone', b)
    assert re.search(rb'\* LIST \([^)]*\\Subscribed[^)]*\) "/" INBOX', b)
    assert b'"/" Sent' not in b
    c = out.split(b"b OK")[1].split(b"c OK")[0]
    assert re.search(rb"\* STATUS INBOX \(MESSAGES 3 UIDNEXT 4\)", c)
    assert re.search(rb'\* LIST \([^)]*\\Sent[^)]*\) "/" Sent', c)
    d = out.split(b"c OK")[1].split(b"d OK")[0]
    assert b'"/" Sent' in d and b"INBOX" not in d
    assert b'* LIST (\\Noselect) "/" ""' in out


def test_append_literal_plus_to_a_missing_mailbox_is_trycreate(store: Store) -> None:
    body = message(5)

    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rwb")
            f.readline()
            f.write(b"a LOGIN user secret\r\n")
            f.write(b"b APPEND Nowhere {%d+}\r\n" % len(body) + body + b"\r\n")
            f.write(b"c APPEND INBOX (\\Seen) {%d+}\r\n" % len(body) + body + b"\r\n")
            f.write(b"d LOGOUT\r\n")
            f.flush()
            return f.read()

    out = serve(store, client)
    assert b"b NO [TRYCREATE]" in out
    assert re.search(rb"c OK \[APPENDUID \d+ 4\]", out)


def test_status_of_deleted_size_highestmodseq_appendlimit(store: Store) -> None:
    def client(port: int) -> Any:
        imap = login(port)
        imap.select("INBOX")
        imap.store("1", "+FLAGS.SILENT", "(\\Deleted)")
        typ, data = imap.status("INBOX", "(DELETED SIZE HIGHESTMODSEQ APPENDLIMIT)")
        imap.logout()
        return data

    data = serve(store, client)
    # APPENDLIMIT: the announced APPENDLIMIT=67108864 (RFC 7889), not NIL ("no limit").
    assert re.search(rb"DELETED 1 SIZE \d+ HIGHESTMODSEQ \d+ APPENDLIMIT 67108864\)", data[0])


def test_store_imap_server_over_implicit_tls_with_our_client(store: Store) -> None:
    cert = make_self_signed(["localhost"])

    async def main() -> tuple[int, list[str]]:
        async def stores(identity: str) -> Store:
            return store

        server = store_imap_server(
            Users(), stores, ssl_context=cert.server_context(), implicit_tls=True
        )
        async with server:
            client = IMAPClient.connect(
                "localhost", server.port, implicit_tls=True, ssl_context=cert.client_context()
            )
            async with client as one:
                await one.login("user", "secret")
                box = await one.select("INBOX")
                listed = [e.mailbox for e in await one.list("", "*") if hasattr(e, "flags")]
                await one.logout()
                return box.exists, listed

    exists, listed = asyncio.run(asyncio.wait_for(main(), 30))
    assert exists == 3 and "INBOX" in listed


def test_permanentflags_drop_the_wildcard_once_keywords_are_full(tmp_path: Path) -> None:
    made = next(make_store("maildir", tmp_path))
    with made.folder("INBOX") as inbox:
        inbox.set_flags([1], [f"$k{i}" for i in range(26)], "add")
        assert not inbox.can_create_keywords()

    def client(port: int) -> bytes:
        imap = login(port)
        imap.select("INBOX")
        ok = b" ".join(untagged(imap, "OK"))
        imap.logout()
        return ok

    ok = serve(made, client)
    permanent = re.search(rb"\[PERMANENTFLAGS \(([^)]*)\)\]", ok)
    assert permanent is not None and b"$k25" in permanent.group(1)
    assert b"\\*" not in permanent.group(1)
    made.close()


def test_saved_result_in_fetch_and_modified_utf7_names(store: Store) -> None:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rwb")
            f.readline()
            f.write(
                b"a LOGIN user secret\r\nb CREATE &AOk-t&AOk-\r\nc SELECT INBOX\r\n"
                b"d SEARCH RETURN (SAVE) UNSEEN\r\ne FETCH $ (UID)\r\n"
                b'f LIST "" "*"\r\ng LOGOUT\r\n'
            )
            f.flush()
            return f.read()

    out = serve(store, client)
    assert b"b OK" in out
    assert b"* 2 FETCH (UID 2)" in out and b"* 3 FETCH (UID 3)" in out
    assert b"* 1 FETCH" not in out
    assert b'"/" &AOk-t&AOk-' in out
    assert "été" in [info.name for info in store.folders()]


def test_idle_tells_what_changed_unwatched_since_the_last_command(store: Store) -> None:
    async def main() -> bytes:
        async def stores(identity: str) -> Store:
            return store

        server = store_imap_server(
            Users(), stores, config=imap_config(allow_plaintext_login=True), watch=False
        )
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            await reader.readline()
            writer.write(b"a LOGIN user secret\r\nb SELECT INBOX\r\n")
            while not (await reader.readline()).startswith(b"b OK"):
                pass
            await asyncio.to_thread(_append_one, store)
            writer.write(b"c IDLE\r\n")
            lines = [await reader.readline(), await reader.readline()]
            writer.write(b"DONE\r\nd LOGOUT\r\n")
            await reader.read()
            writer.close()
            return b"".join(lines)

    out = asyncio.run(asyncio.wait_for(main(), 30))
    assert b"* 4 EXISTS" in out


def test_noop_polls_the_store_without_a_watch(store: Store) -> None:
    # Regression: the core answered NOOP itself, so with no folder watch (or a change
    # the poll had not yet seen) a client polling with NOOP never heard of new mail.
    async def main() -> bytes:
        async def stores(identity: str) -> Store:
            return store

        server = store_imap_server(
            Users(), stores, config=imap_config(allow_plaintext_login=True), watch=False
        )
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            await reader.readline()
            writer.write(b"a LOGIN user secret\r\nb SELECT INBOX\r\n")
            while not (await reader.readline()).startswith(b"b OK"):
                pass
            await asyncio.to_thread(_append_one, store)
            writer.write(b"c NOOP\r\n")
            lines = []
            while not (line := await reader.readline()).startswith(b"c "):
                lines.append(line)
            lines.append(line)
            writer.write(b"d LOGOUT\r\n")
            await reader.read()
            writer.close()
            return b"".join(lines)

    out = asyncio.run(asyncio.wait_for(main(), 30))
    assert b"* 4 EXISTS" in out
    assert b"c OK" in out


def _append_one(store: Store) -> None:
    with store.folder("INBOX") as inbox:
        inbox.append_bytes(message(4))


def test_compress_then_a_streamed_body_with_our_client(store: Store) -> None:
    _add_big(store)

    async def main() -> bytes:
        async def stores(identity: str) -> Store:
            return store

        server = store_imap_server(Users(), stores, config=imap_config(allow_plaintext_login=True))
        async with server:
            client = IMAPClient.connect("127.0.0.1", server.port, starttls=False)
            async with client as one:
                await one.login("user", "secret", allow_plaintext=True)
                await one.compress()
                await one.select("INBOX")
                chunks: list[bytes] = []
                kept = await one.fetch_message(4, chunks.append)
                await one.logout()
                inline = [s.data for f in kept for s in f.sections if isinstance(s.data, bytes)]
                return b"".join(chunks) + b"".join(inline)

    assert asyncio.run(asyncio.wait_for(main(), 30)) == BIG


def test_a_spool_failure_refuses_the_append(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    class Full:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            pass

    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", Full)

    def client(port: int) -> Any:
        imap = login(port)
        answer = imap.append("INBOX", None, None, message(8))
        imap.logout()
        return answer

    typ, _ = serve(store, client)
    assert typ == "NO"
    with store.folder("INBOX") as inbox:
        assert len(inbox.messages()) == 3


def test_rev1_session_gets_recent_with_new_messages(store: Store) -> None:
    def client(port: int) -> tuple[Any, Any]:
        imap = login(port)
        imap.select("INBOX")
        _append_one(store)
        imap.noop()
        time.sleep(0.1)  # the folder watch's wake-up may come after the NOOP's answer
        imap.noop()
        recent, exists = untagged(imap, "RECENT"), untagged(imap, "EXISTS")
        imap.logout()
        return recent, exists

    recent, exists = serve(store, client)
    assert recent[-1] == b"4" and exists[-1] == b"4"
