"""Two writers on one INBOX: session A over IMAP, and another handle of the store (a
second session, an MDA) appending, flagging and expunging at random between A's
commands. A's client-side model, rebuilt only from the responses, keeps the RFC
invariants at every step: UIDs strictly ascending (RFC 9051 §2.3.1.1), every
``* n FETCH (UID u)`` agreeing with the numbers told so far (§2.3.1.2), no EXPUNGE
during FETCH, STORE or SEARCH (§7.5.1); and after a NOOP it equals the store."""

from __future__ import annotations

import random
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailagents.store import Store
from tests.agents.test_imap_session import make_store, message, serve

_UNTAGGED = re.compile(rb"\* (\d+) (EXISTS|EXPUNGE|FETCH \(UID (\d+)[ )])")


@pytest.fixture(params=["maildir", "mbox"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from make_store(request.param, tmp_path)


class Model:
    """Session A: a line client keeping the sequence-number → UID list it was told."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rwb")
        self.uids: list[int] = []
        self.count = 0  # what EXISTS said, before the UIDs of new messages are known
        self.n = 0
        self.file.readline()
        self.command("LOGIN user secret")
        self.command("SELECT INBOX")
        self.learn()

    def command(self, text: str) -> list[bytes]:
        self.n += 1
        tag = b"t%d" % self.n
        self.file.write(tag + b" " + text.encode() + b"\r\n")
        self.file.flush()
        verb = text.split()[0].upper()
        verb = text.split()[1].upper() if verb == "UID" else verb
        uid_form = text.upper().startswith("UID ")
        lines = []
        while True:
            line = self.file.readline()
            assert line, "connection closed"
            if line.startswith(tag + b" "):
                assert line.startswith(tag + b" OK"), line
                return lines
            lines.append(line)
            self.apply(line, verb, uid_form)

    def apply(self, line: bytes, verb: str, uid_form: bool) -> None:
        found = _UNTAGGED.match(line)
        if not found:
            return
        number = int(found.group(1))
        kind = found.group(2)
        if kind == b"EXISTS":
            assert number >= self.count, "EXISTS never goes down (RFC 9051 §7.4.1)"
            self.count = number
        elif kind == b"EXPUNGE":
            assert uid_form or verb not in ("FETCH", "STORE", "SEARCH"), line
            assert 1 <= number <= self.count
            if number <= len(self.uids):
                del self.uids[number - 1]
            self.count -= 1
        else:
            uid = int(found.group(3))
            assert 1 <= number <= self.count
            if number <= len(self.uids):
                assert self.uids[number - 1] == uid, (line, self.uids)
            elif number == len(self.uids) + 1:
                self.uids.append(uid)
        assert self.uids == sorted(set(self.uids)), self.uids

    def learn(self) -> None:
        """Learn the UIDs of messages EXISTS announced."""
        if self.count > len(self.uids):
            self.command(f"FETCH {len(self.uids) + 1}:{self.count} (UID)")
        assert len(self.uids) == self.count


def _store_uids(store: Store) -> list[int]:
    with store.folder("INBOX") as inbox:
        return [m.uid for m in inbox.messages()]


@pytest.mark.parametrize("seed", range(4))
def test_two_writers_keep_the_rfc_invariants(store: Store, seed: int) -> None:
    rng = random.Random(seed)

    def client(port: int) -> None:
        a = Model(port)
        for step in range(30):
            action = rng.choice(["append", "expunge_other", "flag_other", "a_store", "a_fetch",
                                 "a_expunge", "a_search", "noop"])  # fmt: skip
            if action == "append":
                with store.folder("INBOX") as other:
                    other.append_bytes(message(100 + step))
            elif action == "expunge_other":
                with store.folder("INBOX") as other:
                    uids = [m.uid for m in other.messages()]
                    if uids:
                        gone = rng.sample(uids, k=min(len(uids), rng.randint(1, 2)))
                        other.set_flags(gone, ["\\Deleted"], "add")
                        other.expunge(gone)
            elif action == "flag_other":
                with store.folder("INBOX") as other:
                    uids = [m.uid for m in other.messages()]
                    if uids:
                        other.set_flags([rng.choice(uids)], ["\\Flagged"], "add")
            elif action == "a_store" and a.count:
                a.command(f"STORE {rng.randint(1, a.count)} +FLAGS (\\Seen)")
            elif action == "a_fetch" and a.count:
                a.command(f"FETCH 1:{a.count} (UID FLAGS)")
            elif action == "a_expunge" and a.count:
                a.command(f"UID STORE {rng.choice(a.uids or [1])} +FLAGS.SILENT (\\Deleted)")
                a.command("EXPUNGE")
            elif action == "a_search":
                a.command("SEARCH ALL")
            else:
                a.command("NOOP")
            a.learn()
        for _ in range(50):
            a.command("NOOP")
            a.learn()
            if a.uids == _store_uids(store):
                break
            time.sleep(0.05)
        assert a.uids == _store_uids(store)
        a.command("LOGOUT")

    serve(store, client)
