"""The store-backed IMAP session (mailagents/agents/_imap_session.py and
_imap_mailbox.py) on Maildir and mbox, driven by imaplib and by our IMAPClient on
127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import imaplib
import re
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailagents import sasl
from mailagents.agents._imap_session import StoreIMAPHandler, imap_config
from mailagents.aio import IMAPClient, ListenerLimits
from mailagents.aio.imap import IMAPServer
from mailagents.store import Limits, MaildirStore, MboxStore, Store

T = TypeVar("T")
TIMEOUT = 30.0
QUICK = ListenerLimits(auth_failure_delay=0.01, max_auth_failure_delay=0.01)


def message(n: int, subject: str = "") -> bytes:
    return (
        f"From: a{n}@example.test\r\nTo: b@example.test\r\n"
        f"Subject: {subject or f'message {n}'}\r\n\r\nBody {n}\r\n"
    ).encode()


SECRETS = sasl.scram_secrets("secret")


class Users:
    async def answer_async(self, request: sasl.NeedCredentials) -> sasl.CredentialsAnswer:
        if request.authcid == "user":
            if request.password is None:
                return SECRETS
            return sasl.PasswordVerdict(valid=request.password == "secret")
        return sasl.NoSuchUser()


def make_store(kind: str, tmp_path: Path) -> Iterator[Store]:
    """A Maildir or mbox store whose INBOX holds three messages, the first seen."""
    made: Store
    if kind == "maildir":
        made = MaildirStore(tmp_path / "Maildir", fsync=False)
    else:
        made = MboxStore(tmp_path / "mail", inbox=tmp_path / "inbox", fsync=False)
    with made.folder("INBOX") as inbox:
        for n in (1, 2, 3):
            inbox.append_bytes(message(n), flags=("\\Seen",) if n == 1 else ())
    yield made
    made.close()


@pytest.fixture(params=["maildir", "mbox"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from make_store(request.param, tmp_path)


def serve(store: Store, client: Callable[[int], T], **config: Any) -> T:
    async def main() -> T:
        async def stores(identity: str) -> Store:
            return store

        handler = StoreIMAPHandler(Users(), stores)
        config.setdefault("allow_plaintext_login", True)
        async with IMAPServer(handler, imap_config(**config), limits=QUICK) as server:
            return await asyncio.to_thread(client, server.port)

    return asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def run_async(store: Store, client: Callable[[int], Coroutine[Any, Any, T]]) -> T:
    async def main() -> T:
        async def stores(identity: str) -> Store:
            return store

        handler = StoreIMAPHandler(Users(), stores)
        config = imap_config(allow_plaintext_login=True)
        async with IMAPServer(handler, config, limits=QUICK) as server:
            return await client(server.port)

    return asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def login(port: int) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    assert imap.login("user", "secret")[0] == "OK"
    return imap


def untagged(imap: imaplib.IMAP4, name: str) -> list[Any]:
    return imap.untagged_responses.get(name, [])


def test_select_reports_the_mailbox(store: Store) -> None:
    def client(port: int) -> dict[str, Any]:
        imap = login(port)
        typ, data = imap.select("INBOX")
        assert typ == "OK" and data == [b"3"]
        out = {
            "flags": untagged(imap, "FLAGS"),
            "recent": untagged(imap, "RECENT"),
            "ok": untagged(imap, "OK"),
            "code": untagged(imap, "READ-WRITE"),
        }
        imap.logout()
        return out

    got = serve(store, client)
    assert b"\\Seen" in got["flags"][0]
    assert got["recent"] == [b"3"]  # rev1: every message new to this first session
    ok = b" ".join(got["ok"])
    for code in (b"UIDVALIDITY", b"UIDNEXT 4", b"PERMANENTFLAGS", b"\\*", b"HIGHESTMODSEQ"):
        assert code in ok
    assert b"UNSEEN 2" in ok


def test_examine_is_read_only_and_claims_no_recent(store: Store) -> None:
    def client(port: int) -> tuple[Any, Any]:
        imap = login(port)
        assert imap.select("INBOX", readonly=True)[0] == "OK"
        examine = untagged(imap, "RECENT")
        imap.close()
        imap.select("INBOX")
        select = untagged(imap, "RECENT")
        assert imap.store("1", "+FLAGS", "\\Flagged")[0] == "OK"
        imap.logout()
        return examine, select

    examine, select = serve(store, client)
    assert examine == [b"0"] and select == [b"3"]


def test_store_flags_fetch_flags_and_search(store: Store) -> None:
    def client(port: int) -> None:
        imap = login(port)
        imap.select("INBOX")
        typ, data = imap.store("2:3", "+FLAGS", "(\\Flagged)")
        assert typ == "OK" and len(data) == 2
        assert b"\\Flagged" in data[0]
        assert imap.store("3", "-FLAGS.SILENT", "(\\Flagged)") == ("OK", [None])
        assert imap.search(None, "FLAGGED") == ("OK", [b"2"])
        assert imap.search(None, "UNSEEN") == ("OK", [b"2 3"])
        assert imap.uid("SEARCH", "SUBJECT", "message 3") == ("OK", [b"3"])
        typ, data = imap.search("KOI8-R", "ALL")
        assert typ == "NO"
        imap.logout()

    serve(store, client)


def test_expunge_and_uid_expunge(store: Store) -> None:
    def client(port: int) -> None:
        imap = login(port)
        imap.select("INBOX")
        imap.store("1:3", "+FLAGS.SILENT", "(\\Deleted)")
        typ, data = imap.uid("EXPUNGE", "2")
        assert typ == "OK"
        assert untagged(imap, "EXPUNGE") == [b"2"]
        typ, data = imap.expunge()
        assert typ == "OK" and data == [b"2", b"1", b"1"]
        imap.logout()

    serve(store, client)
    with store.folder("INBOX") as inbox:
        assert inbox.messages() == []


def test_copy_and_move_with_copyuid(store: Store) -> None:
    store.create_folder("Archive")

    def client(port: int) -> tuple[Any, Any]:
        imap = login(port)
        imap.select("INBOX")
        typ, data = imap.copy("1", "Nowhere")
        assert typ == "NO" and b"[TRYCREATE]" in data[0]
        typ, data = imap.copy("1:2", "Archive")
        assert typ == "OK"
        copied = data
        typ, data = imap.uid("MOVE", "3", "Archive")
        assert typ == "OK"
        moved = untagged(imap, "EXPUNGE")
        imap.logout()
        return copied, moved

    copied, moved = serve(store, client)
    assert b"COPYUID" in copied[0]
    assert moved == [b"3"]
    with store.folder("Archive") as archive:
        assert len(archive.messages()) == 3


def test_mailbox_commands_list_status_namespace(store: Store) -> None:
    def client(port: int) -> None:
        imap = login(port)
        assert imap.create("Work")[0] == "OK"
        assert imap.create("Work/Old")[0] == "OK"
        assert imap.create("Work")[0] == "NO"
        assert imap.create("../etc")[0] == "NO"
        assert imap.create("a/cur/b")[0] == "NO"
        assert imap.subscribe("Work")[0] == "OK"
        typ, data = imap.list('""', "*")
        assert typ == "OK"
        names = {line.rsplit(b" ", 1)[1].strip(b'"') for line in data if isinstance(line, bytes)}
        assert {b"INBOX", b"Work", b"Work/Old"} <= names
        work = [line for line in data if isinstance(line, bytes) and line.endswith(b" Work")]
        assert work and b"\\HasChildren" in work[0]
        typ, data = imap.list('""', "%")
        assert typ == "OK" and not any(isinstance(d, bytes) and d.endswith(b"Old") for d in data)
        typ, data = imap.lsub('""', "*")
        assert typ == "OK" and data[0] is not None and data[0].endswith(b"Work")
        typ, data = imap.status("INBOX", "(MESSAGES UIDNEXT UNSEEN RECENT)")
        assert typ == "OK"
        assert re.search(rb"MESSAGES 3 UIDNEXT 4 UNSEEN 2 RECENT 3", data[0] or b"")
        assert imap.rename("Work", "Play")[0] == "OK"
        assert imap.rename("Nope", "Other")[0] == "NO"
        assert imap.delete("Play/Old")[0] == "OK"
        assert imap.delete("INBOX")[0] == "NO"
        assert imap.unsubscribe("Work")[0] == "OK"
        typ, data = imap.namespace()
        assert typ == "OK" and data[0] == b'(("" "/")) NIL NIL'
        imap.logout()

    serve(store, client)


def test_rename_inbox_moves_its_messages(store: Store) -> None:
    def client(port: int) -> None:
        imap = login(port)
        assert imap.rename("INBOX", "Old")[0] == "OK"
        typ, data = imap.status("Old", "(MESSAGES)")
        assert b"MESSAGES 3" in (data[0] or b"")
        typ, data = imap.status("INBOX", "(MESSAGES)")
        assert b"MESSAGES 0" in (data[0] or b"")
        imap.logout()

    serve(store, client)


def test_append_with_flags_date_and_appenduid(store: Store) -> None:
    body = message(9, "appended") + b"x" * 200_000 + b"\r\n"

    def client(port: int) -> tuple[Any, Any, Any]:
        imap = login(port)
        imap.select("INBOX")
        typ, data = imap.append("INBOX", "(\\Flagged $Work)", '"01-Jan-2024 10:00:00 +0100"', body)
        assert typ == "OK"
        exists = untagged(imap, "EXISTS")
        typ2, missing = imap.append("Nowhere", None, None, b"Subject: x\r\n\r\ny\r\n")
        assert typ2 == "NO"
        imap.logout()
        return data, exists, missing

    data, exists, missing = serve(store, client)
    assert re.match(rb"\[APPENDUID \d+ 4\]", data[0])
    assert exists[-1] == b"4"
    assert b"TRYCREATE" in missing[0]
    with store.folder("INBOX") as inbox:
        info = inbox.info(4)
        assert "\\Flagged" in info.flags and "$Work" in info.flags
        assert info.internaldate.utcoffset() is not None
        assert inbox.read_message(4) == body


def test_append_over_the_limit_is_toobig(store: Store) -> None:
    store.set_limits(Limits(append_limit=100))

    def client(port: int) -> Any:
        imap = login(port)
        typ, data = imap.append("INBOX", None, None, message(1) + b"x" * 200)
        imap.logout()
        return typ, data

    typ, data = serve(store, client)
    assert typ == "NO" and b"TOOBIG" in data[0]


def test_idle_and_changes_from_another_session(store: Store) -> None:
    async def client(port: int) -> list[Any]:
        watcher = IMAPClient.connect("127.0.0.1", port, starttls=False)
        async with watcher as one:
            await one.login("user", "secret", allow_plaintext=True)
            await one.select("INBOX")
            seen = []
            async with one.idle() as updates:
                await asyncio.to_thread(_append_elsewhere, store)
                async for response in updates:
                    seen.append(response)
                    break
            await one.logout()
            return seen

    seen = run_async(store, client)
    assert "Exists" in type(seen[0]).__name__ and seen[0].count == 4


def _append_elsewhere(store: Store) -> None:
    with store.folder("INBOX") as inbox:
        inbox.append_bytes(message(4))


def test_condstore_select_store_unchangedsince(store: Store) -> None:
    def client(port: int) -> tuple[Any, Any]:
        imap = login(port)
        imap._simple_command("ENABLE", "CONDSTORE")
        imap.select("INBOX")
        ok = b" ".join(untagged(imap, "OK"))
        highest = int(re.search(rb"HIGHESTMODSEQ (\d+)", ok).group(1))  # type: ignore[union-attr]
        typ, data = imap._simple_command(
            "STORE", "1:2", f"(UNCHANGEDSINCE {highest})", "+FLAGS", "(\\Answered)"
        )
        fetched = untagged(imap, "FETCH")
        typ, data = imap._simple_command("STORE", "1", "(UNCHANGEDSINCE 1)", "+FLAGS", "(\\Draft)")
        imap.logout()
        return fetched, data

    fetched, data = serve(store, client)
    assert all(b"MODSEQ" in f for f in fetched)
    assert b"MODIFIED 1" in data[0]


def test_qresync_select_vanished_earlier(store: Store) -> None:
    with store.folder("INBOX") as inbox:
        status = inbox.status()
        inbox.set_flags([2], ["\\Deleted"], "add")
        inbox.expunge()
        inbox.set_flags([3], ["\\Flagged"], "add")

    async def client(port: int) -> list[Any]:
        async with IMAPClient.connect("127.0.0.1", port, starttls=False) as one:
            await one.login("user", "secret", allow_plaintext=True)
            await one.enable("QRESYNC")
            done = await one.execute(
                f"SELECT INBOX (QRESYNC ({status.uidvalidity} {status.highestmodseq} 1:3))"
            )
            got = list(done.data)
            await one.logout()
            return got

    responses = run_async(store, client)
    names = [type(r).__name__ for r in responses]
    vanished = [r for r in responses if type(r).__name__ == "VanishedData"]
    assert vanished and vanished[0].earlier and str(vanished[0].uids) == "2", names
    fetches = [r for r in responses if type(r).__name__ == "FetchData"]
    assert [f.uid for f in fetches] == [3] and "\\Flagged" in (fetches[0].flags or ())


def test_esearch_and_searchres(store: Store) -> None:
    def client(port: int) -> tuple[Any, Any]:
        imap = login(port)
        imap.select("INBOX")
        typ, data = imap.uid("SEARCH", "RETURN", "(MIN MAX COUNT)", "UNSEEN")
        esearch = untagged(imap, "ESEARCH") or data
        imap.uid("SEARCH", "RETURN", "(SAVE)", "SEEN")
        typ, saved = imap.uid("SEARCH", "UID", "$")
        imap.logout()
        return esearch, saved

    esearch, saved = serve(store, client)
    assert b"UID MIN 2 MAX 3 COUNT 2" in esearch[0]
    assert saved == [b"1"]


def test_close_expunges_unselect_does_not(store: Store) -> None:
    def client(port: int) -> None:
        imap = login(port)
        imap.select("INBOX")
        imap.store("1", "+FLAGS.SILENT", "(\\Deleted)")
        assert imap._simple_command("UNSELECT")[0] == "OK"
        assert imap.status("INBOX", "(MESSAGES)")[1][0].endswith(b"3)")  # type: ignore[union-attr]
        imap.select("INBOX")
        assert imap.close()[0] == "OK"
        assert imap.status("INBOX", "(MESSAGES)")[1][0].endswith(b"2)")  # type: ignore[union-attr]
        imap.logout()

    serve(store, client)
