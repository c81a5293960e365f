"""The MAA's fast paths (mailagents/agents/maa.py): a message opened and read in one
executor call, small messages read ahead in batches, without changing a byte of what the
client gets. Every wait is bounded."""

from __future__ import annotations

import asyncio
import gc
import io
import os
import poplib
import warnings
from pathlib import Path
from typing import Any, Literal

import pytest

from mailagents.agents import MAA, StoreMaildrop
from mailagents.agents import maa as maa_module
from mailagents.aio import ListenerLimits, POP3Session, make_self_signed
from mailagents.store import MaildirStore, MboxStore, MessageNotFoundError, Store
from mailagents.userdb import PasswordFile
from tests.aio.test_pop3_server import message, run

# ---------------------------------------------------- StoreMaildrop: one executor call


class Trickle(io.RawIOBase):
    """A stream that gives at most 3 octets per read (a short read is not its end)."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = data
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        take = 3 if size < 0 else min(3, size)
        piece, self.data = self.data[:take], self.data[take:]
        return piece


@pytest.fixture(params=["maildir", "mbox"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    made: Store = (MaildirStore(tmp_path / "m", fsync=False) if request.param == "maildir"
                   else MboxStore(tmp_path / "m", fsync=False))
    with made:
        yield made


def test_read_chunk_does_not_take_a_short_read_for_the_end(store: Store) -> None:
    drop = StoreMaildrop(store, chunk_size=10)
    stream = Trickle(b"0123456789abcdefghijklmnopqrstu")
    got = []
    while True:
        chunk, done = drop.read_chunk(stream)  # type: ignore[arg-type]
        got.append(chunk)
        if done:
            break
    assert got == [b"0123456789", b"abcdefghij", b"klmnopqrst", b"u"]
    assert drop.read_chunk(Trickle(b""))[1]  # type: ignore[arg-type]


def test_start_message_reads_a_small_message_in_one_call(store: Store) -> None:
    with store.folder("INBOX") as inbox:
        small = inbox.append_bytes(message(1)).uid or 0
        big = inbox.append_bytes(message(2, b"z" * 3000 + b"\r\n")).uid or 0
    drop = StoreMaildrop(store, chunk_size=1000)
    drop.open()
    try:
        stream, first, done = drop.start_message(small)
        assert (first, done) == (message(1), True) and stream.closed
        stream, first, done = drop.start_message(big)
        assert len(first) == 1000 and not done and not stream.closed

        async def rest() -> bytes:
            return b"".join([c async for c in drop.chunks(stream, first, done)])

        assert asyncio.run(rest()) == message(2, b"z" * 3000 + b"\r\n")
        assert stream.closed
        with pytest.raises(MessageNotFoundError):
            drop.start_message(9999)
        started = drop.start_messages([small, 9999, big])
        assert [s is None for s in started] == [False, True, False]
        # Reading stops once the limit was read: the big message is not started.
        limit = len(message(1)) + 1
        assert len(drop.start_messages([small, 9999, small, big], limit=limit)) == 3
        assert drop.start_messages([small], limit=0) == []
        for s in started:
            if s is not None:
                s[0].close()
    finally:
        drop.close()


def test_start_messages_stops_short_at_an_error(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with store.folder("INBOX") as inbox:
        uids = [inbox.append_bytes(message(i)).uid or 0 for i in range(3)]
    drop = StoreMaildrop(store)
    drop.open()
    real = StoreMaildrop.start_message

    def start(self: StoreMaildrop, uid: int) -> Any:
        if uid == uids[1]:
            raise OSError("bad sector")
        return real(self, uid)

    monkeypatch.setattr(StoreMaildrop, "start_message", start)
    try:
        started = drop.start_messages(uids)
        assert len(started) == 1 and started[0] is not None and started[0][1] == message(0)
    finally:
        drop.close()


# ------------------------------------------------------------ the MAA's read-ahead

FAST = {"limits": ListenerLimits(shutdown_grace=0.5, shutdown_timeout=0.5)}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def small_chunks(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """Make the MAA's maildrops read ``size`` octets at a time: read-ahead entries then
    keep their streams open."""
    real_init = StoreMaildrop.__init__

    def init(self: StoreMaildrop, store: Store, *, chunk_size: int = size) -> None:
        real_init(self, store, chunk_size=size)

    monkeypatch.setattr(StoreMaildrop, "__init__", init)


def count_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many messages were started, and how many of them in read-ahead batches."""
    counts = {"started": 0, "batched": 0}
    real_start, real_batch = StoreMaildrop.start_message, StoreMaildrop.start_messages

    def start(self: StoreMaildrop, uid: int) -> Any:
        counts["started"] += 1
        return real_start(self, uid)

    def batch(self: StoreMaildrop, uids: Any, limit: int | None = None) -> Any:
        counts["batched"] += len(uids)
        return real_batch(self, uids, limit)

    monkeypatch.setattr(StoreMaildrop, "start_message", start)
    monkeypatch.setattr(StoreMaildrop, "start_messages", batch)
    return counts


@pytest.mark.parametrize("chunk", [None, 50])
@pytest.mark.parametrize("kind", ["maildir", "mbox"])
def test_read_ahead_gives_the_same_bytes_in_any_order(
    tmp_path: Path, kind: Literal["maildir", "mbox"], chunk: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if chunk is not None:
        small_chunks(monkeypatch, chunk)
    # Small batches, so that a session crosses several of them.
    monkeypatch.setattr(maa_module, "_READ_AHEAD_MESSAGES", 3)
    bodies = [message(i, b".dot %d\r\n" % i * (i % 7 + 1)) for i in range(1, 30)]
    bodies[9] = message(10, (b"B" * 98 + b"\r\n") * 30)  # too big to be read ahead
    store: Store = (MaildirStore(tmp_path / "u", fsync=False) if kind == "maildir"
                    else MboxStore(tmp_path / "u", fsync=False))
    with store, store.folder("INBOX") as inbox:
        for body in bodies:
            inbox.append_bytes(body)
    users = PasswordFile(tmp_path / "users", scrypt_n=2**8)
    users.set_password("u", "pw")
    cert = make_self_signed(["localhost"])
    order = [*range(1, 16), 15, 3, 4, 29, 28, 16, 17, 18, 19, 20, 21]
    fds_before = open_fds()

    async def main() -> None:
        maa = MAA("pop.test", users, str(tmp_path / "{user}"), ssl_context=cert.server_context(),
                  mailbox_format=kind, fsync=False, allow_plaintext=True, server_options=FAST,
                  read_ahead=2000)
        async with maa:
            await maa.serve("127.0.0.1", 0, None, None, None)

            def client() -> None:
                pop = poplib.POP3("127.0.0.1", maa.pop3_port, timeout=5)
                pop.user("u")
                pop.pass_("pw")
                for n in order:
                    _, lines, _ = pop.retr(n)
                    assert b"".join(line + b"\r\n" for line in lines) == bodies[n - 1], n
                _, lines, _ = pop.top(22, 0)
                assert lines == [b"Subject: 22", b""]
                _, lines, _ = pop.retr(23)
                assert b"".join(line + b"\r\n" for line in lines) == bodies[22]
                pop.quit()

            await asyncio.to_thread(client)

    run(main())
    users.close()
    assert open_fds() <= fds_before  # every stream read ahead was closed


def test_read_ahead_of_a_message_removed_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MaildirStore(tmp_path / "u", fsync=False)
    with store, store.folder("INBOX") as inbox:
        for i in range(1, 5):
            inbox.append_bytes(message(i))
    real = StoreMaildrop.start_message
    gone: set[int] = set()

    def start(self: StoreMaildrop, uid: int) -> Any:
        if uid in gone:
            raise MessageNotFoundError(uid)
        return real(self, uid)

    monkeypatch.setattr(StoreMaildrop, "start_message", start)
    users = PasswordFile(tmp_path / "users", scrypt_n=2**8)
    users.set_password("u", "pw")
    cert = make_self_signed(["localhost"])

    async def main() -> None:
        maa = MAA("pop.test", users, str(tmp_path / "{user}"), ssl_context=cert.server_context(),
                  fsync=False, allow_plaintext=True, server_options=FAST)
        async with maa:
            await maa.serve("127.0.0.1", 0, None, None, None)

            def client() -> None:
                pop = poplib.POP3("127.0.0.1", maa.pop3_port, timeout=5)
                pop.user("u")
                pop.pass_("pw")
                gone.add(3)  # before the read-ahead that RETR 1 starts
                assert pop.retr(1)[1][0] == b"Subject: 1"
                assert pop.retr(2)[1][0] == b"Subject: 2"
                with pytest.raises(poplib.error_proto, match="removed by another client"):
                    pop.retr(3)
                assert pop.retr(4)[1][0] == b"Subject: 4"
                pop.quit()

            await asyncio.to_thread(client)

    run(main())
    users.close()


def test_a_session_ending_during_a_read_ahead_closes_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MaildirStore(tmp_path / "u", fsync=False)
    with store, store.folder("INBOX") as inbox:
        for i in range(1, 40):
            inbox.append_bytes(message(i, b"x" * 100 + b"\r\n"))
    closed: list[POP3Session] = []
    real_close = maa_module._Handler.on_close

    async def on_close(self: Any, session: POP3Session) -> None:
        await real_close(self, session)
        closed.append(session)

    monkeypatch.setattr(maa_module._Handler, "on_close", on_close)
    small_chunks(monkeypatch, 50)  # the streams read ahead stay open: closed at the end
    users = PasswordFile(tmp_path / "users", scrypt_n=2**8)
    users.set_password("u", "pw")
    cert = make_self_signed(["localhost"])
    fds_before = open_fds()

    async def main() -> None:
        maa = MAA("pop.test", users, str(tmp_path / "{user}"), ssl_context=cert.server_context(),
                  fsync=False, allow_plaintext=True, server_options=FAST)
        async with maa:
            await maa.serve("127.0.0.1", 0, None, None, None)

            def client() -> None:
                pop = poplib.POP3("127.0.0.1", maa.pop3_port, timeout=5)
                pop.user("u")
                pop.pass_("pw")
                pop.retr(1)
                pop.close()  # no QUIT: the read-ahead of 2.. is under way or done

            await asyncio.to_thread(client)
            for _ in range(200):
                if closed:
                    break
                await asyncio.sleep(0.01)
            # the maildrop lock is free again: a new session gets in
            def again() -> None:
                pop = poplib.POP3("127.0.0.1", maa.pop3_port, timeout=5)
                pop.user("u")
                pop.pass_("pw")
                pop.quit()

            await asyncio.to_thread(again)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        run(main())
        gc.collect()
    users.close()
    assert closed and "maa.read_ahead" not in closed[0].data
    assert open_fds() <= fds_before
    assert not [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize("read_ahead", [maa_module.READ_AHEAD, 0])
def test_in_order_retrieval_reads_ahead_all_but_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_ahead: int
) -> None:
    monkeypatch.setattr(maa_module, "_READ_AHEAD_MESSAGES", 4)
    counts = count_reads(monkeypatch)
    store = MaildirStore(tmp_path / "u", fsync=False)
    with store, store.folder("INBOX") as inbox:
        for i in range(1, 31):
            inbox.append_bytes(message(i))
    users = PasswordFile(tmp_path / "users", scrypt_n=2**8)
    users.set_password("u", "pw")
    cert = make_self_signed(["localhost"])

    async def main() -> None:
        maa = MAA("pop.test", users, str(tmp_path / "{user}"), ssl_context=cert.server_context(),
                  fsync=False, allow_plaintext=True, server_options=FAST,
                  read_ahead=read_ahead)
        async with maa:
            await maa.serve("127.0.0.1", 0, None, None, None)

            def client() -> None:
                pop = poplib.POP3("127.0.0.1", maa.pop3_port, timeout=5)
                pop.user("u")
                pop.pass_("pw")
                for n in range(1, 31):
                    assert pop.retr(n)[1][0] == b"Subject: %d" % n
                pop.quit()

            await asyncio.to_thread(client)

    run(main())
    users.close()
    if read_ahead:
        # Message 1 was read on its own, every later one in a batch started in time.
        assert counts["batched"] == 29
        assert counts["started"] == 30
    else:
        assert counts["batched"] == 0
        assert counts["started"] == 30
    with pytest.raises(ValueError):
        MAA("pop.test", users, ssl_context=cert.server_context(), read_ahead=-1)
