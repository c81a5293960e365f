"""mailagents.agents.maa: the store side of a POP3 session (StoreMaildrop, over Maildir
and mbox stores, bytes only) and the MAA over real sockets with Python's poplib as
the client (run in a thread); every test is bounded in time."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import poplib
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents import sasl
from mailagents.agents import MAA, MaildirDelivery, MaildropMessage, StoreMaildrop, uidl
from mailagents.aio import ListenerLimits, SelfSignedCertificate, make_self_signed
from mailagents.smtp import Mailbox
from mailagents.store import (
    DELETED,
    SEEN,
    MailboxInUseError,
    MaildirStore,
    MboxStore,
    MessageInfo,
    MessageNotFoundError,
    Store,
)
from mailagents.userdb import PasswordFile

TIMEOUT = 20.0


def message(n: int, body: bytes = b"") -> bytes:
    return (
        f"From: a@example.test\r\nTo: b@example.test\r\nSubject: message {n}\r\n\r\n".encode()
        + (body or f"Body of message {n}.\r\n".encode())
    )


@pytest.fixture(params=["maildir", "mbox"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store
    if request.param == "maildir":
        made = MaildirStore(tmp_path / "Maildir", fsync=False)
    else:
        made = MboxStore(tmp_path / "mbox", fsync=False)
    with made:
        yield made


def deliver(store: Store, *messages: bytes) -> list[int]:
    with store.folder("INBOX") as inbox:
        return [inbox.append_bytes(m).uid or 0 for m in messages]


# ------------------------------------------------------------------ StoreMaildrop


def test_uidl_format() -> None:
    assert uidl(1, 1) == "0000000100000001"
    # Dovecot's %08Xu%08Xv: the UID first, lower-case hex (checked against Dovecot in
    # tests/interop/test_pop3_dovecot.py).
    assert uidl(0x5F3A9C01, 0xABCDEF) == "00abcdef5f3a9c01"
    assert len(uidl(2**32 - 1, 2**32 - 1)) == 16


def test_snapshot_sizes_uidls_and_streaming(store: Store) -> None:
    big = message(2, b"".join(b".line %d\r\n" % i for i in range(50_000)))
    lf_only = b"Subject: lf\n\nbare\nlines\n"
    uids = deliver(store, message(1), big, lf_only)
    drop = StoreMaildrop(store, chunk_size=1000)
    snapshot = drop.open()
    try:
        assert [m.uid for m in snapshot] == uids
        assert [m.size for m in snapshot] == [
            len(message(1)), len(big), len(lf_only.replace(b"\n", b"\r\n"))
        ]
        assert all(m.uidl == uidl(drop.uidvalidity, m.uid) for m in snapshot)
        assert drop.uidvalidity > 0
        assert drop.messages == snapshot

        async def read(uid: int) -> list[bytes]:
            return [c async for c in drop.chunks(drop.open_message(uid))]

        chunks = asyncio.run(read(uids[1]))
        assert b"".join(chunks) == big
        assert max(len(c) for c in chunks) <= 1000
        assert b"".join(asyncio.run(read(uids[2]))) == lf_only.replace(b"\n", b"\r\n")
    finally:
        drop.close()
    drop.close()  # twice is harmless


_LINE = st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@settings(max_examples=25)
@given(
    bodies=st.lists(st.lists(st.one_of(_LINE, st.just(b"."), st.just(b"From x")), max_size=30),
                    min_size=1, max_size=4),
    chunk_size=st.integers(min_value=1, max_value=300),
    kind=st.sampled_from(["maildir", "mbox"]),
)
def test_any_message_streams_back_as_stored(
    bodies: list[list[bytes]], chunk_size: int, kind: str
) -> None:
    messages = [message(i, b"".join(line + b"\r\n" for line in body))
                for i, body in enumerate(bodies)]
    with tempfile.TemporaryDirectory() as tmp:
        made: Store = (MaildirStore(Path(tmp) / "m", fsync=False) if kind == "maildir"
                       else MboxStore(Path(tmp) / "m", fsync=False))
        with made:
            deliver(made, *messages)
            drop = StoreMaildrop(made, chunk_size=chunk_size)
            try:
                snapshot = drop.open()

                async def read(uid: int) -> bytes:
                    return b"".join([c async for c in drop.chunks(drop.open_message(uid))])

                for entry, original in zip(snapshot, messages, strict=True):
                    data = asyncio.run(read(entry.uid))
                    assert data == original
                    assert entry.size == len(original)
            finally:
                drop.close()


def test_stopping_a_stream_early_closes_it(store: Store) -> None:
    (uid,) = deliver(store, message(1, b"x" * 10_000 + b"\r\n"))
    drop = StoreMaildrop(store, chunk_size=100)
    drop.open()
    stream = drop.open_message(uid)

    async def first() -> bytes:
        gen = drop.chunks(stream)
        chunk = await anext(gen)
        await gen.aclose()
        return chunk

    try:
        assert len(asyncio.run(first())) == 100
        assert stream.closed
    finally:
        drop.close()


def test_second_session_is_refused_until_the_first_ends(store: Store) -> None:
    deliver(store, message(1))
    first = StoreMaildrop(store)
    first.open()
    second = StoreMaildrop(store)
    with pytest.raises(MailboxInUseError):
        second.open()
    with pytest.raises(RuntimeError):
        second.folder  # noqa: B018 - not open
    first.close()
    assert len(second.open()) == 1
    with pytest.raises(RuntimeError):
        second.open()
    second.close()


def test_messages_delivered_later_stay_out_of_the_snapshot(store: Store) -> None:
    deliver(store, message(1))
    drop = StoreMaildrop(store)
    try:
        assert len(drop.open()) == 1
        deliver(store, message(2))  # delivery does not wait for the session
        assert len(drop.messages) == 1
    finally:
        drop.close()
    again = StoreMaildrop(store)
    try:
        assert len(again.open()) == 2
        assert again.messages[0].uidl == drop.messages[0].uidl  # stable across sessions
    finally:
        again.close()


def test_remove_and_mark_seen(store: Store) -> None:
    uids = deliver(store, message(1), message(2), message(3))
    drop = StoreMaildrop(store)
    drop.open()
    try:
        drop.mark_seen([uids[0]])
        drop.mark_seen([])
        assert drop.remove([]) == []
        assert drop.remove([uids[1], 999_999]) == []  # an unknown UID counts as gone
    finally:
        drop.close()
    with store.folder("INBOX") as inbox:
        infos = {m.uid: m for m in inbox.messages()}
    assert sorted(infos) == [uids[0], uids[2]]
    assert SEEN in infos[uids[0]].flags
    assert SEEN not in infos[uids[2]].flags
    assert DELETED not in infos[uids[2]].flags


def test_a_message_expunged_by_another_client(store: Store) -> None:
    uids = deliver(store, message(1), message(2))
    drop = StoreMaildrop(store)
    drop.open()
    try:
        with store.folder("INBOX") as other:  # an IMAP client expunges it meanwhile
            other.set_flags([uids[0]], {DELETED}, "add")
            other.expunge([uids[0]])
        if isinstance(store, MaildirStore):
            with pytest.raises(MessageNotFoundError):
                drop.open_message(uids[0])
        assert drop.remove(uids) == []
    finally:
        drop.close()


def test_chunk_size_must_be_positive(store: Store) -> None:
    with pytest.raises(ValueError):
        StoreMaildrop(store, chunk_size=0)


def test_message_record() -> None:
    m = MaildropMessage(uid=3, size=10, uidl=uidl(7, 3))
    assert m.uidl == "0000000300000007"


# ------------------------------------------------------------- the MAA over sockets

# The failed-login throttle and the shutdown grace, made short for the tests.
FAST = {"limits": ListenerLimits(auth_failure_delay=0.01, max_auth_failure_delay=0.05,
                                 idle_timeout=600.0, command_timeout=600.0,
                                 shutdown_grace=0.5, shutdown_timeout=0.5)}
ALICE = "alice@example.test"
ALICE_PW = "Alice's secret 1"
BOB = "bob"
BOB_PW = "Bob's secret 2"
T = TypeVar("T")


@pytest.fixture(scope="module")
def cert() -> SelfSignedCertificate:
    return make_self_signed(["localhost"])


@pytest.fixture
def users(tmp_path: Path) -> PasswordFile:
    store = PasswordFile(tmp_path / "users", scrypt_n=2**8)
    store.set_password(ALICE, ALICE_PW)
    store.set_password(BOB, BOB_PW)
    return store


@pytest.fixture
def mail(tmp_path: Path) -> Path:
    return tmp_path / "mail"


def inbox_of(mail: Path, user: str) -> MaildirStore:
    return MaildirStore(mail / user / "Maildir", fsync=False)


def put(mail: Path, user: str, *messages: bytes) -> list[int]:
    with inbox_of(mail, user) as store:
        return deliver(store, *messages)


def stored(mail: Path, user: str) -> list[MessageInfo]:
    with inbox_of(mail, user) as store, store.folder("INBOX") as inbox:
        return inbox.messages()


def run_with_maa(
    cert: SelfSignedCertificate,
    users: PasswordFile,
    mail: Path,
    client: Callable[[MAA], T],
    **options: Any,
) -> T:
    """Start an MAA on two free ports, run ``client(maa)`` in a thread, close."""
    server_options = {**FAST, **options.pop("server_options", {})}
    mailboxes = options.pop("mailboxes", str(mail / "{user}" / "Maildir"))
    maa = MAA(
        "pop.example.test",
        users,
        mailboxes,
        ssl_context=cert.server_context(),
        fsync=False,
        server_options=server_options,
        **options,
    )

    async def main() -> T:
        async with maa:
            await maa.serve("127.0.0.1", 0, 0, None, None)
            result = await asyncio.to_thread(client, maa)
        assert maa.pop3 is None and maa.pop3s is None
        return result

    try:
        return asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    finally:
        users.close()


def stls(maa: MAA, cert: SelfSignedCertificate, login: tuple[str, str] | None = None
         ) -> poplib.POP3:
    pop = poplib.POP3("127.0.0.1", maa.pop3_port, timeout=5)
    pop.stls(context=cert.client_context())
    if login is not None:
        pop.user(login[0])
        pop.pass_(login[1])
    return pop


def pop3s(maa: MAA, cert: SelfSignedCertificate, login: tuple[str, str] | None = None
          ) -> poplib.POP3_SSL:
    pop = poplib.POP3_SSL("127.0.0.1", maa.pop3s_port, timeout=5,
                          context=cert.client_context())
    if login is not None:
        pop.user(login[0])
        pop.pass_(login[1])
    return pop


def joined(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\r\n" for line in lines)


def test_stls_user_pass_and_every_command(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    messages = [message(1), message(2, b"..two dots\r\n.one dot\r\n.\r\nend\r\n"),
                message(3, b"".join(b"line %d\r\n" % i for i in range(20)))]
    uids = put(mail, ALICE, *messages)

    def client(maa: MAA) -> None:
        pop = poplib.POP3("127.0.0.1", maa.pop3_port, timeout=5)
        assert pop.getwelcome().startswith(b"+OK pop.example.test POP3 server ready")
        capa = pop.capa()
        assert "STLS" in capa and "USER" not in capa  # no clear-text passwords
        pop.stls(context=cert.client_context())
        capa = pop.capa()
        assert "STLS" not in capa and "USER" in capa and "UIDL" in capa and "TOP" in capa
        assert capa["SASL"] == ["SCRAM-SHA-256", "PLAIN"]
        pop.user(ALICE)
        assert pop.pass_(ALICE_PW).startswith(b"+OK")
        total = sum(len(m) for m in messages)
        assert pop.stat() == (3, total)
        _, listing, _ = pop.list()
        assert listing == [b"%d %d" % (i + 1, len(m)) for i, m in enumerate(messages)]
        one: Any = pop.list(2)  # a status line when given a number
        assert one.split()[2] == str(len(messages[1])).encode()
        _, ids, _ = pop.uidl()
        with inbox_of(mail, ALICE) as store, store.folder("INBOX") as inbox:
            validity = inbox.status().uidvalidity
        assert ids == [b"%d %s" % (i + 1, uidl(validity, u).encode()) for i, u in enumerate(uids)]
        assert pop.uidl(3).split()[2] == uidl(validity, uids[2]).encode()
        for i, m in enumerate(messages, 1):
            _, lines, octets = pop.retr(i)
            assert joined(lines) == m
        _, lines, _ = pop.top(3, 2)
        head, _, body = joined(lines).partition(b"\r\n\r\n")
        assert body == b"line 0\r\nline 1\r\n"
        assert pop.noop().startswith(b"+OK")
        assert pop.dele(1).startswith(b"+OK")
        with pytest.raises(poplib.error_proto, match="deleted"):
            pop.retr(1)
        assert pop.stat()[0] == 2
        assert pop.rset().startswith(b"+OK")
        assert pop.stat()[0] == 3
        pop.dele(2)
        assert len(stored(mail, ALICE)) == 3  # nothing removed before QUIT
        assert b"signing off" in pop.quit()

    run_with_maa(cert, users, mail, client)
    assert [m.uid for m in stored(mail, ALICE)] == [uids[0], uids[2]]


def auth_plain(pop: poplib.POP3, user: str, password: str) -> bytes:
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    return pop._shortcmd(f"AUTH PLAIN {token}")  # type: ignore[attr-defined, no-any-return]


def test_implicit_tls_auth_plain_and_scram(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    put(mail, ALICE, message(1))

    def client(maa: MAA) -> None:
        with contextlib.closing(pop3s(maa, cert)) as pop:
            assert "STLS" not in pop.capa()
            assert auth_plain(pop, ALICE, ALICE_PW).startswith(b"+OK")
            assert pop.stat() == (1, len(message(1)))
            pop.quit()
        # SCRAM-SHA-256 (RFC 5034 framing) with our own client mechanism.
        pop = pop3s(maa, cert)
        mech = sasl.ScramSha256Client(ALICE, ALICE_PW)
        first = base64.b64encode(mech.initial_response() or b"").decode()
        pop._putcmd(f"AUTH SCRAM-SHA-256 {first}")  # type: ignore[attr-defined]
        while True:
            line, _ = pop._getline()  # type: ignore[attr-defined]
            if not line.startswith(b"+ "):
                break
            answer = mech.respond(base64.b64decode(line[2:]))
            pop._putline(base64.b64encode(answer or b""))  # type: ignore[attr-defined]
        assert line.startswith(b"+OK"), line
        assert pop.stat()[0] == 1
        pop.quit()

    run_with_maa(cert, users, mail, client)


def test_twenty_megabytes_and_dot_lines(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    line = b".x" + b"0123456789abcdef" * 60 + b"\r\n"  # dots at the start of every line
    body = line * (20 * 1024 * 1024 // len(line)) + b".\r\n..\r\n"
    big = message(1, body)
    put(mail, ALICE, big)

    def client(maa: MAA) -> None:
        with contextlib.closing(pop3s(maa, cert, (ALICE, ALICE_PW))) as pop:
            _, lines, octets = pop.retr(1)
            assert hashlib.sha256(joined(lines)).digest() == hashlib.sha256(big).digest()
            assert lines[-2:] == [b".", b".."]
            pop.quit()

    run_with_maa(cert, users, mail, client)


def test_uidl_stable_across_sessions_and_new_mail_waits(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    put(mail, ALICE, message(1), message(2))

    def client(maa: MAA) -> None:
        pop = stls(maa, cert, (ALICE, ALICE_PW))
        _, first, _ = pop.uidl()
        put(mail, ALICE, message(3))  # delivered during the session
        assert pop.stat()[0] == 2
        _, again, _ = pop.uidl()
        assert again == first
        pop.dele(1)
        pop.quit()
        pop = stls(maa, cert, (ALICE, ALICE_PW))
        _, ids, _ = pop.uidl()
        assert len(ids) == 2
        assert ids[0].split()[1] == first[1].split()[1]  # message 2 kept its unique-id
        assert joined(pop.retr(2)[1]) == message(3)  # and the new one is there now
        pop.quit()

    run_with_maa(cert, users, mail, client)


def test_leaving_without_quit_deletes_nothing(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    put(mail, ALICE, message(1), message(2))

    def client(maa: MAA) -> None:
        pop = stls(maa, cert, (ALICE, ALICE_PW))
        pop.dele(1)
        pop.dele(2)
        pop.close()  # no QUIT: no UPDATE state (RFC 1939 §6)
        # The lock was released: the next session gets in (retrying while the
        # server notices the closed connection).
        deadline = time.monotonic() + 5
        while True:
            pop = stls(maa, cert)
            pop.user(ALICE)
            try:
                pop.pass_(ALICE_PW)
                break
            except poplib.error_proto as exc:
                assert b"[IN-USE]" in exc.args[0]
                pop.close()
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert pop.stat()[0] == 2
        pop.quit()

    run_with_maa(cert, users, mail, client)
    assert len(stored(mail, ALICE)) == 2


def test_connection_dropped_in_the_middle_of_retr(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    big = message(1, (b"z" * 998 + b"\r\n") * 8000)  # 8 MB: far more than one write
    small = message(2)
    put(mail, ALICE, big, small)
    digests = [hashlib.sha256(m).digest() for m in (big, small)]

    def client(maa: MAA) -> None:
        context = cert.client_context()
        raw = socket.create_connection(("127.0.0.1", maa.pop3s_port), timeout=5)
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            reader = tls.makefile("rb")
            assert reader.readline().startswith(b"+OK")
            tls.sendall(f"USER {ALICE}\r\nPASS {ALICE_PW}\r\nDELE 2\r\nRETR 1\r\n".encode())
            for _ in range(3):
                assert reader.readline().startswith(b"+OK")
            assert reader.readline().startswith(b"+OK")  # RETR 1 begins
            reader.read(100_000)
            reader.close()
        # Dropped. The maildrop comes free, and nothing was deleted or changed.
        deadline = time.monotonic() + 5
        while True:
            pop = pop3s(maa, cert)
            pop.user(ALICE)
            try:
                pop.pass_(ALICE_PW)
                break
            except poplib.error_proto:
                pop.close()
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert pop.stat()[0] == 2
        pop.quit()

    run_with_maa(cert, users, mail, client)
    with inbox_of(mail, ALICE) as store, store.folder("INBOX") as inbox:
        contents = [inbox.read_message(m.uid) for m in inbox.messages()]
    assert [hashlib.sha256(c).digest() for c in contents] == digests


def test_second_session_gets_in_use(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    put(mail, ALICE, message(1))

    def client(maa: MAA) -> None:
        first = pop3s(maa, cert, (ALICE, ALICE_PW))
        second = stls(maa, cert)
        second.user(ALICE)
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            second.pass_(ALICE_PW)
        # The right password was not a failed login: the session goes on.
        assert "USER" in second.capa()
        first.quit()
        second.user(ALICE)
        assert second.pass_(ALICE_PW).startswith(b"+OK")
        assert second.stat()[0] == 1
        second.quit()
        # Another user is not locked out by alice's session.
        third = pop3s(maa, cert, (ALICE, ALICE_PW))
        fourth = pop3s(maa, cert, (BOB, BOB_PW))
        assert fourth.stat() == (0, 0)
        fourth.quit()
        third.quit()

    run_with_maa(cert, users, mail, client)


def test_user_pass_before_tls_is_refused(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    def client(maa: MAA) -> None:
        pop = poplib.POP3("127.0.0.1", maa.pop3_port, timeout=5)
        with pytest.raises(poplib.error_proto):
            pop.user(ALICE)
        with pytest.raises(poplib.error_proto):
            pop.pass_(ALICE_PW)
        with pytest.raises(poplib.error_proto):
            auth_plain(pop, ALICE, ALICE_PW)
        pop.quit()

    run_with_maa(cert, users, mail, client)


def test_plaintext_when_allowed(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    put(mail, BOB, message(1))

    def client(maa: MAA) -> None:
        pop = poplib.POP3("127.0.0.1", maa.pop3_port, timeout=5)
        pop.user(BOB)
        pop.pass_(BOB_PW)
        assert pop.stat()[0] == 1
        pop.quit()

    run_with_maa(cert, users, mail, client, allow_plaintext=True)


def test_apop_with_a_legacy_secret(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    users.set_password(BOB, BOB_PW, legacy=True)
    put(mail, BOB, message(1))

    def client(maa: MAA) -> None:
        pop = pop3s(maa, cert)
        assert b"<" in pop.getwelcome()
        assert pop.apop(BOB, BOB_PW).startswith(b"+OK")
        assert pop.stat()[0] == 1
        pop.quit()
        pop = pop3s(maa, cert)
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            pop.apop(BOB, "wrong")
        pop.quit()

    run_with_maa(cert, users, mail, client, allow_apop=True)


def test_wrong_password_is_delayed_then_disconnected(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    limits = ListenerLimits(auth_failure_delay=0.2, max_auth_failure_delay=0.4,
                            max_auth_failures=3, shutdown_grace=0.5)

    def client(maa: MAA) -> None:
        pop = pop3s(maa, cert)
        delays = []
        for _ in range(2):
            pop.user(ALICE)
            start = time.monotonic()
            with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
                pop.pass_("wrong")
            delays.append(time.monotonic() - start)
        assert delays[0] >= 0.19 and delays[1] >= 0.39
        pop.user("nobody@example.test")
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            pop.pass_("wrong")
        # The third failure ends the session: its -ERR [AUTH], then the closing line.
        closing = pop.file.readline()
        assert closing.startswith(b"-ERR [SYS/TEMP]") and b"Too many" in closing
        assert pop.file.readline() == b""
        pop.close()

    run_with_maa(cert, users, mail, client, server_options={"limits": limits})


def test_idle_timeout_logs_out_without_deleting(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    put(mail, ALICE, message(1))

    def client(maa: MAA) -> None:
        pop = pop3s(maa, cert, (ALICE, ALICE_PW))
        pop.dele(1)
        start = time.monotonic()
        line = pop.file.readline()  # the server speaks first: the autologout
        assert line.startswith(b"-ERR") and b"idle" in line.lower()
        assert 0.4 < time.monotonic() - start < 5
        assert pop.file.readline() == b""  # then it closes
        pop.close()

    run_with_maa(cert, users, mail, client, server_options={"idle_timeout": 0.5})
    assert len(stored(mail, ALICE)) == 1


def test_mark_seen_on_retr_only(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    uids = put(mail, ALICE, message(1), message(2))

    def client(maa: MAA) -> None:
        pop = pop3s(maa, cert, (ALICE, ALICE_PW))
        pop.retr(1)
        pop.top(2, 0)
        pop.quit()

    run_with_maa(cert, users, mail, client, mark_seen=True)
    flags = {m.uid: m.flags for m in stored(mail, ALICE)}
    assert SEEN in flags[uids[0]] and SEEN not in flags[uids[1]]


def test_mark_seen_off_by_default(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    put(mail, ALICE, message(1))

    def client(maa: MAA) -> None:
        pop = pop3s(maa, cert, (ALICE, ALICE_PW))
        pop.retr(1)
        pop.quit()

    run_with_maa(cert, users, mail, client)
    assert all(SEEN not in m.flags for m in stored(mail, ALICE))


def test_mbox_stores(cert: SelfSignedCertificate, users: PasswordFile, tmp_path: Path) -> None:
    root = tmp_path / "mbox" / "alice@example.test"
    with MboxStore(root, fsync=False) as store:
        deliver(store, message(1), message(2, b"From the start\r\n.dot\r\n"))

    def client(maa: MAA) -> None:
        pop = pop3s(maa, cert, (ALICE, ALICE_PW))
        assert joined(pop.retr(2)[1]) == message(2, b"From the start\r\n.dot\r\n")
        pop.dele(1)
        pop.quit()

    run_with_maa(cert, users, tmp_path, client, mailbox_format="mbox",
                 mailboxes=str(tmp_path / "mbox" / "{user}"))
    with MboxStore(root, fsync=False) as store, store.folder("INBOX") as inbox:
        assert [inbox.read_message(m.uid) for m in inbox.messages()] == [
            message(2, b"From the start\r\n.dot\r\n")
        ]


def test_callable_mailboxes_and_login_delay(
    cert: SelfSignedCertificate, users: PasswordFile, tmp_path: Path
) -> None:
    store = MaildirStore(tmp_path / "shared", fsync=False)
    deliver(store, message(1))
    asked: list[str] = []

    def mailboxes(identity: str) -> Store:
        asked.append(identity)
        return store

    def client(maa: MAA) -> None:
        pop = pop3s(maa, cert, (ALICE, ALICE_PW))
        assert pop.stat()[0] == 1
        pop.quit()
        pop = pop3s(maa, cert)
        pop.user(ALICE)
        with pytest.raises(poplib.error_proto, match=r"\[LOGIN-DELAY\]"):
            pop.pass_(ALICE_PW)
        pop.quit()

    from mailagents.pop3 import ServerConfig

    with store:
        run_with_maa(cert, users, tmp_path, client, mailboxes=mailboxes,
                     config=ServerConfig(login_delay=60))
    assert asked == [ALICE]


def test_template_meets_the_msa_delivery(users: PasswordFile, tmp_path: Path) -> None:
    template = str(tmp_path / "{domain}" / "{local}" / "Maildir")
    delivery = MaildirDelivery(template)
    maa = MAA("pop.example.test", users, template, ssl_context=ssl.create_default_context())
    for address in ("Alice@Example.TEST", "o'neil+tag@example.test", ".hidden@example.test"):
        local, _, domain = address.rpartition("@")
        assert maa.mailbox_path(address) == delivery.maildir(
            Mailbox(local_part=local, domain=domain)
        )
    # An identity without "@" is {user} and {local}; it cannot leave its folder.
    assert maa.mailbox_path("../../etc") == str(tmp_path / "%2E.%2F..%2Fetc" / "Maildir")
    callable_maa = MAA("h", users, lambda identity: None,  # type: ignore[arg-type,return-value]
                       ssl_context=ssl.create_default_context())
    with pytest.raises(TypeError):
        callable_maa.mailbox_path(ALICE)
    with pytest.raises(ValueError):
        MAA("h", users, template, ssl_context=ssl.create_default_context(),
            mailbox_format="mh")  # type: ignore[arg-type]
    delivery.close()


def test_ports_before_serving(users: PasswordFile) -> None:
    maa = MAA("h", users, ssl_context=ssl.create_default_context())
    with pytest.raises(RuntimeError):
        maa.pop3_port  # noqa: B018
    with pytest.raises(RuntimeError):
        maa.pop3s_port  # noqa: B018


def test_serve_twice_and_one_listener_only(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    async def main() -> None:
        async with MAA("h", users, str(mail / "{user}"), ssl_context=cert.server_context(),
                       fsync=False) as maa:
            await maa.serve("127.0.0.1", None, 0, None, None)
            assert maa.pop3 is None and maa.pop3s_port > 0
            with pytest.raises(RuntimeError):
                await maa.serve("127.0.0.1", None, 0, None, None)

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_store_failures_are_temporary_errors(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(mail, ALICE, message(1), message(2))
    real_open = StoreMaildrop.open
    failures = {"open": 1, "message": 1, "remove": 1}

    def open_(self: StoreMaildrop) -> tuple[MaildropMessage, ...]:
        if failures["open"]:
            failures["open"] -= 1
            raise OSError("disk gone")
        return real_open(self)

    def open_message(self: StoreMaildrop, uid: int) -> Any:
        raise MessageNotFoundError(uid)

    def remove(self: StoreMaildrop, uids: Any) -> list[int]:
        if failures["remove"]:
            failures["remove"] -= 1
            raise OSError("read-only file system")
        return sorted(uids)  # "still there"

    monkeypatch.setattr(StoreMaildrop, "open", open_)
    monkeypatch.setattr(StoreMaildrop, "open_message", open_message)
    monkeypatch.setattr(StoreMaildrop, "remove", remove)

    def client(maa: MAA) -> None:
        pop = pop3s(maa, cert)
        pop.user(ALICE)
        with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\]"):
            pop.pass_(ALICE_PW)
        pop.user(ALICE)
        pop.pass_(ALICE_PW)
        with pytest.raises(poplib.error_proto, match="removed by another client"):
            pop.retr(1)
        pop.dele(1)
        with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\] Some deleted"):
            pop.quit()
        pop.close()
        pop = pop3s(maa, cert, (ALICE, ALICE_PW))
        pop.dele(2)
        with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\] Some deleted"):
            pop.quit()
        pop.close()

    run_with_maa(cert, users, mail, client)
    assert len(stored(mail, ALICE)) == 2


def test_serve_on_a_busy_port_closes_what_it_started(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    async def main() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            maa = MAA("h", users, str(mail / "{user}"), ssl_context=cert.server_context())
            with pytest.raises(OSError):
                await maa.serve("127.0.0.1", 0, port, None, None)
            assert maa.pop3 is None and maa.pop3s is None

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))
