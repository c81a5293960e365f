"""The store-backed IMAP server's remaining rules (mailagents/agents/_imap_session.py,
_imap_folders.py, _imap_append.py; mailagents/aio/_imap_server.py): a selected
mailbox that disappears ends the session with ``* BYE``; OLDNAME; UTF8=ACCEPT.

Every test talks to the server over 127.0.0.1 (port 0) with a small line client, so
that it sees the exact octets (a BYE, a tagged reply that must not come, the end of
the connection)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from mailagents.agents._imap_session import StoreIMAPHandler, imap_config
from mailagents.aio.imap import IMAPServer
from mailagents.store import MaildirStore, MboxStore, Store
from tests.agents.test_imap_session import QUICK, Users, make_store, serve

DEADLINE = 15.0


class Wire:
    """A line client for the tests: ``command`` sends one tagged command and returns
    every line up to its tagged reply (or the end of the connection)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.buf = b""
        self.n = 0
        self.greeting = self.line()

    def line(self) -> bytes:
        """One line (with its CRLF), or b"" at the end of the connection."""
        end = time.monotonic() + DEADLINE
        while b"\r\n" not in self.buf:
            if time.monotonic() > end:
                raise TimeoutError(self.buf)
            data = self.sock.recv(65536)
            if not data:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += data
        head, _, self.buf = self.buf.partition(b"\r\n")
        return head + b"\r\n"

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, text: str | bytes) -> list[bytes]:
        self.n += 1
        tag = f"t{self.n}".encode()
        raw = text.encode() if isinstance(text, str) else text
        self.send(tag + b" " + raw + b"\r\n")
        return self.until(tag)

    def until(self, tag: bytes) -> list[bytes]:
        """Lines up to the one tagged ``tag``, or to the end of the connection."""
        lines = []
        while True:
            line = self.line()
            if not line:
                return lines
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def closed(self) -> bool:
        """The server closed the connection (nothing more comes)."""
        return self.line() == b""

    def login(self) -> None:
        assert self.command("LOGIN user secret")[-1].startswith(b"t1 OK")

    def close(self) -> None:
        self.sock.close()


def tagged(lines: list[bytes]) -> bytes:
    return lines[-1] if lines else b""


def _store(kind: str, tmp_path: Path) -> Any:
    gen = make_store(kind, tmp_path)
    made = next(gen)
    made.create_folder("Work")
    with made.folder("Work") as work:
        work.append_bytes(b"Subject: w\r\n\r\nwork\r\n")
    return gen, made


@pytest.fixture(params=["maildir", "mbox"])
def work_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    gen, made = _store(request.param, tmp_path)
    yield made
    for _ in gen:
        pass


def _remove_by_hand(store: Store) -> None:
    """What another program does: rm -rf the Maildir folder, or remove the mbox file."""
    if isinstance(store, MaildirStore):
        shutil.rmtree(Path(store.root) / ".Work")
    else:
        assert isinstance(store, MboxStore)
        os.unlink(Path(store.root) / "Work")


# --- 3. the selected mailbox goes away ------------------------------------------------


def test_selected_folder_removed_by_hand_ends_the_session_with_bye(work_store: Store) -> None:
    def client(port: int) -> tuple[list[bytes], bool]:
        wire = Wire(port)
        wire.login()
        assert tagged(wire.command("SELECT Work")).startswith(b"t2 OK")
        _remove_by_hand(work_store)
        lines = wire.command("FETCH 1 (FLAGS)")
        gone = wire.closed()
        wire.close()
        return lines, gone

    lines, gone = serve(work_store, client)
    assert any(line.startswith(b"* BYE ") for line in lines), lines
    # No tagged answer (in particular no NO [SERVERBUG]) and the connection is closed.
    assert not any(line.startswith(b"t3 ") for line in lines), lines
    assert gone


@pytest.mark.parametrize("how", ["DELETE Work", "RENAME Work Elsewhere"])
def test_selected_folder_deleted_or_renamed_by_another_session_is_bye(
    work_store: Store, how: str
) -> None:
    def client(port: int) -> tuple[list[bytes], list[bytes], bool]:
        one, two = Wire(port), Wire(port)
        one.login()
        two.login()
        assert tagged(one.command("SELECT Work")).startswith(b"t2 OK")
        done = two.command(how)
        lines = one.command("NOOP")
        gone = one.closed()
        assert tagged(two.command('LIST "" *')).startswith(b"t3 OK")  # two goes on
        one.close()
        two.close()
        return done, lines, gone

    done, lines, gone = serve(work_store, client)
    assert tagged(done).startswith(b"t2 OK"), done
    assert any(line.startswith(b"* BYE ") for line in lines), lines
    assert not any(line.startswith(b"t3 ") for line in lines), lines
    assert gone


def test_selected_folder_deleted_while_idle_is_bye(work_store: Store) -> None:
    """IDLE: the watch wakes the session, which says BYE without waiting for a
    command (Maildir: the directory watch; mbox: the file's poll)."""

    def client(port: int) -> tuple[bytes, bool]:
        one, two = Wire(port), Wire(port)
        one.login()
        two.login()
        assert tagged(one.command("SELECT Work")).startswith(b"t2 OK")
        one.send(b"t3 IDLE\r\n")
        assert one.line().startswith(b"+ ")
        assert tagged(two.command("DELETE Work")).startswith(b"t2 OK")
        line = one.line()
        while line and not line.startswith(b"* BYE"):
            line = one.line()
        gone = one.closed()
        one.close()
        two.close()
        return line, gone

    line, gone = serve(work_store, client)
    assert line.startswith(b"* BYE "), line
    assert gone


def test_selected_folder_replaced_by_another_program_is_bye(work_store: Store) -> None:
    """Removed and made again (with other messages) between two commands: a new
    UIDVALIDITY, the UIDs the session knows mean nothing any more (RFC 9051 §2.3.1.1);
    the session ends with BYE. It went on with the new folder's messages under the old
    UIDs (on mbox one of them was never shown)."""

    def client(port: int) -> tuple[list[bytes], bool]:
        wire = Wire(port)
        wire.login()
        assert tagged(wire.command("SELECT Work")).startswith(b"t2 OK")
        _remove_by_hand(work_store)
        other: Store
        if isinstance(work_store, MaildirStore):
            other = MaildirStore(work_store.root, fsync=False)
        else:
            assert isinstance(work_store, MboxStore)
            other = MboxStore(work_store.root, inbox=work_store.inbox_path, fsync=False)
        other.create_folder("Work")
        with other.folder("Work") as work:
            work.append_bytes(b"Subject: new 1\r\n\r\none\r\n")
            work.append_bytes(b"Subject: new 2\r\n\r\ntwo\r\n")
        other.close()
        lines = wire.command("NOOP")
        gone = wire.closed()
        wire.close()
        return lines, gone

    lines, gone = serve(work_store, client)
    assert any(line.startswith(b"* BYE ") for line in lines), lines
    assert not any(line.startswith(b"t3 ") for line in lines), lines
    assert gone


def test_other_folder_deleted_by_another_session_changes_nothing(work_store: Store) -> None:
    """Only the selected folder's disappearance ends a session."""

    def client(port: int) -> tuple[list[bytes], list[bytes]]:
        one, two = Wire(port), Wire(port)
        one.login()
        two.login()
        assert tagged(one.command("SELECT INBOX")).startswith(b"t2 OK")
        assert tagged(two.command("DELETE Work")).startswith(b"t2 OK")
        noop = one.command("NOOP")
        fetch = one.command("FETCH 1 (FLAGS)")
        one.close()
        two.close()
        return noop, fetch

    noop, fetch = serve(work_store, client)
    assert tagged(noop).startswith(b"t3 OK") and tagged(fetch).startswith(b"t4 OK")


# --- 1. OLDNAME (RFC 9051 §6.3.4, §6.3.5, §6.3.6, §6.3.2, §6.3.9.7) --------------------

NFD = "Cafe\u0301"  # "Café" with a combining accent: not in NFC
NFC = "Caf\u00e9"


def rev2_wire(port: int) -> Wire:
    wire = Wire(port)
    wire.login()
    assert tagged(wire.command("ENABLE IMAP4rev2")).startswith(b"t2 OK")
    return wire


def lists(lines: list[bytes]) -> list[bytes]:
    return [line for line in lines if line.startswith(b"* LIST ")]


def q(name: str) -> bytes:
    return b'"' + name.encode() + b'"'


def test_rename_in_rev2_sends_list_of_the_new_name_with_oldname(work_store: Store) -> None:
    def client(port: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
        wire = rev2_wire(port)
        assert tagged(wire.command("SUBSCRIBE Work")).startswith(b"t3 OK")
        renamed = wire.command("RENAME Work Play")
        listed = wire.command('LIST "" Play RETURN (SUBSCRIBED)')
        selected = wire.command("SELECT Play")
        wire.close()
        return renamed, listed, selected

    renamed, listed, selected = serve(work_store, client)
    assert tagged(renamed).startswith(b"t4 OK")
    (line,) = lists(renamed)
    assert line.endswith(b' "/" Play (OLDNAME (Work))\r\n'), line
    # The attributes are the mailbox's own, as LIST tells them.
    (plain,) = lists(listed)
    assert b"\\Subscribed" in plain  # the store moved the subscription along
    assert line.split(b' "/" ')[0] == plain.split(b' "/" ')[0]
    # SELECT's LIST response: accurate attributes too (RFC 9051 §6.3.2).
    (chosen,) = lists(selected)
    assert chosen.split(b' "/" ')[0] == plain.split(b' "/" ')[0]


def test_rename_in_rev1_and_rename_of_inbox_send_no_list(work_store: Store) -> None:
    def client(port: int) -> tuple[list[bytes], list[bytes]]:
        rev1 = Wire(port)
        rev1.login()
        plain = rev1.command("RENAME Work Play")
        rev1.close()
        wire = rev2_wire(port)
        inbox = wire.command("RENAME INBOX Old")
        wire.close()
        return plain, inbox

    plain, inbox = serve(work_store, client)
    assert tagged(plain).startswith(b"t2 OK") and not lists(plain)
    assert tagged(inbox).startswith(b"t3 OK") and not lists(inbox)  # RFC 9051 §6.3.6


def test_denormalized_names_are_converted_to_nfc_with_oldname(work_store: Store) -> None:
    def client(port: int) -> dict[str, list[bytes]]:
        wire = rev2_wire(port)
        out = {
            "create": wire.command(b"CREATE " + q(NFD)),
            "select_nfd": wire.command(b"SELECT " + q(NFD)),
            "select_nfc": wire.command(b"SELECT " + q(NFC)),
            "unselect": wire.command("UNSELECT"),
            "list": wire.command('LIST "" *'),
            "pattern": wire.command(b'LIST "" ' + q(NFD + "%")),
            "delete": wire.command(b"DELETE " + q(NFD)),
            "after": wire.command('LIST "" *'),
        }
        wire.close()
        return out

    out = serve(work_store, client)
    assert tagged(out["create"]).startswith(b"t3 OK")
    (line,) = lists(out["create"])
    assert line.endswith(b' "/" ' + q(NFC) + b" (OLDNAME (" + q(NFD) + b"))\r\n"), line
    # SELECT opens what CREATE made under the same name, and says which name it is.
    assert tagged(out["select_nfd"]).startswith(b"t4 OK")
    (line,) = lists(out["select_nfd"])
    assert line.endswith(b' "/" ' + q(NFC) + b" (OLDNAME (" + q(NFD) + b"))\r\n"), line
    (line,) = lists(out["select_nfc"])
    assert line.endswith(b' "/" ' + q(NFC) + b"\r\n"), line
    names = [line.rsplit(b' "/" ', 1)[1] for line in lists(out["list"])]
    assert q(NFC) + b"\r\n" in names and not any(NFD.encode() in n for n in names)
    # A pattern is normalized too (the name matches whichever form the client uses).
    assert [line.rsplit(b' "/" ', 1)[1] for line in lists(out["pattern"])] == [q(NFC) + b"\r\n"]
    assert tagged(out["delete"]).startswith(b"t9 OK")
    (line,) = lists(out["delete"])
    assert line.startswith(b"* LIST (\\NonExistent) ") and b"(OLDNAME (" + q(NFD) in line
    assert not any(NFC.encode() in n for n in lists(out["after"]))


def test_rev1_names_are_normalized_too_without_oldname(work_store: Store) -> None:
    def client(port: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
        wire = Wire(port)
        wire.login()
        # "Cafe" + U+0301 in modified UTF-7 (RFC 3501 §5.1.3).
        create = wire.command("CREATE Cafe&AwE-")
        select = wire.command("SELECT Cafe&AwE-")
        listed = wire.command('LIST "" Caf*')
        wire.close()
        return create, select, listed

    create, select, listed = serve(work_store, client)
    assert tagged(create).startswith(b"t2 OK") and not lists(create)
    assert tagged(select).startswith(b"t3 OK")
    (line,) = lists(listed)
    assert line.endswith(b' "/" Caf&AOk-\r\n'), line


# --- RECENT never above what the client knows (RFC 3501 §7.3.2, §7.3.1) ---------------


def test_rev1_recent_counts_only_messages_that_remain(work_store: Store) -> None:
    """Another program expunges two messages and delivers two new ones between two
    commands of an IMAP4rev1 session (no watch: NOOP finds both at once): the EXPUNGEs
    go first, then EXISTS, then RECENT, which counts the messages left, never the
    expunged ones (it said 5 of 3)."""

    def client(port: int) -> list[bytes]:
        wire = Wire(port)
        wire.login()
        assert tagged(wire.command("SELECT INBOX")).startswith(b"t2 OK")  # 3 recent
        with work_store.folder("INBOX") as inbox:
            inbox.set_flags([2, 3], ["\\Deleted"], "add")
            inbox.expunge()
            inbox.append_bytes(b"Subject: four\r\n\r\n4\r\n")
            inbox.append_bytes(b"Subject: five\r\n\r\n5\r\n")
        lines = wire.command("NOOP")
        wire.close()
        return lines

    async def main() -> list[bytes]:
        async def stores(identity: str) -> Store:
            return work_store

        handler = StoreIMAPHandler(Users(), stores, watch=False)
        config = imap_config(allow_plaintext_login=True)
        async with IMAPServer(handler, config, limits=QUICK) as server:
            return await asyncio.to_thread(client, server.port)

    lines = asyncio.run(asyncio.wait_for(main(), DEADLINE * 2))
    known = 3
    for line in lines:
        words = line.split()
        if line.endswith(b" EXPUNGE\r\n"):
            known -= 1
        elif line.endswith(b" EXISTS\r\n"):
            known = int(words[1])
        elif line.endswith(b" RECENT\r\n"):
            assert int(words[1]) <= known, lines
    assert known == 3 and b"* 3 RECENT\r\n" in lines, lines
