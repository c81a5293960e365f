"""Dovecot's POP3 server and mailagents on one Maildir: our POP3 client reads what
Dovecot serves (the same bytes, UIDLs and sizes that poplib sees), and a mailbox that
Dovecot served keeps its UIDLs when mailagents serves it (a POP3 client that moves with
it downloads nothing twice)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailagents import sasl
from mailagents.aio import POP3Client, POP3Timeouts, SelfSignedCertificate, make_self_signed
from mailagents.pop3 import Sentinel
from mailagents.pop3.client import (
    AuthResult,
    Capabilities,
    ClientConnection,
    ClientEvent,
    ConnectionClosed,
    Greeting,
    Listing,
    MessageChunk,
    MessageEnd,
    MessageStart,
    Reply,
    Stat,
    UniqueIds,
)
from mailagents.store.maildir import MaildirStore

from .peers import DovecotPOP3, chown_tree, mail_tree, pop3_view, running_dovecot_pop3

pytestmark = pytest.mark.interop

# Lines that dot-stuffing must carry through: ".", "..", ".x", a body without a final
# line end (Dovecot adds CRLF), bare LF line ends, 8-bit octets, a 998-octet line, an
# empty body, and a message bigger than any read buffer.
MESSAGES = [
    b"From: a@example.test\r\nSubject: dots\r\n\r\n.\r\n..\r\n.x\r\n...\r\nend\r\n",
    b"From: a@example.test\r\nSubject: no final line end\r\n\r\nlast line",
    b"From: a@example.test\nSubject: bare LF\n\nline\n.dot\n",
    b"From: a@example.test\r\nSubject: empty body\r\n\r\n",
    b"From: a@example.test\r\nSubject: 8bit\r\n\r\n\xe9t\xe9 \xff\r\n" + b"x" * 998 + b"\r\n",
    b"From: a@example.test\r\nSubject: big\r\n\r\n"
    + b"".join(b".%06d The quick brown fox jumps over the lazy dog.\r\n" % i
               for i in range(40_000)),
]


@dataclass(frozen=True)
class Stored:
    """What our store says about the mailbox before any server touched it."""

    uidvalidity: int
    uids: list[int]
    sizes: dict[int, int]
    bodies: dict[int, bytes]


def served(body: bytes) -> bytes:
    """A stored message as a POP3 server delivers it: a last line without its line end
    gets one (RFC 1939 §3: a multi-line response is lines, each ending in CRLF)."""
    return body if body.endswith(b"\r\n") or not body else body + b"\r\n"


@pytest.fixture
def mailbox() -> Iterator[tuple[Path, Stored]]:
    tree = mail_tree()
    maildir = tree / "Maildir"
    with MaildirStore(maildir) as store, store.folder("INBOX") as inbox:
        for data in MESSAGES:
            inbox.append_bytes(data)
        inbox.refresh()
        infos = inbox.messages()
        stored = Stored(
            uidvalidity=inbox.status().uidvalidity,
            uids=[m.uid for m in infos],
            sizes={m.uid: m.size for m in infos},
            bodies={m.uid: inbox.read_message(m.uid) for m in infos},
        )
    try:
        yield maildir, stored
    finally:
        shutil.rmtree(tree, ignore_errors=True)


@pytest.fixture
def dovecot(mailbox: tuple[Path, Stored]) -> Iterator[DovecotPOP3]:
    with running_dovecot_pop3(mailbox[0]) as server:
        yield server


def test_dovecot_serves_our_maildir_with_uidls_from_our_uids(
    mailbox: tuple[Path, Stored], dovecot: DovecotPOP3
) -> None:
    _, stored = mailbox
    view = pop3_view(dovecot.pop3_port, dovecot.user, dovecot.password)
    assert view.count == len(MESSAGES)
    numbers = range(1, len(MESSAGES) + 1)
    # Dovecot 2.3's default pop3_uidl_format is %08Xu%08Xv: the UID, then UIDVALIDITY,
    # each as eight hex digits, which its variable expansion writes in lower case.
    assert view.uids == {
        n: f"{uid:08x}{stored.uidvalidity:08x}" for n, uid in zip(numbers, stored.uids, strict=True)
    }, dovecot.log()
    # Sizes with CRLF line ends: what our store reports (RFC 1939 §11: "exact size").
    assert view.sizes == {n: stored.sizes[uid] for n, uid in zip(numbers, stored.uids, strict=True)}
    assert view.size == sum(stored.sizes.values())
    for n, uid in zip(numbers, stored.uids, strict=True):
        assert view.messages[n] == served(stored.bodies[uid]), n


def test_a_maildrop_dovecot_served_keeps_its_uidls_with_us(
    mailbox: tuple[Path, Stored],
) -> None:
    """The migration promise: the unique-ids a POP3 client kept from Dovecot are the
    ones our MAA shows for the same Maildir, so nothing is downloaded again."""
    from mailagents.agents.maa import StoreMaildrop

    maildir, _ = mailbox
    with running_dovecot_pop3(maildir) as dovecot:
        theirs = pop3_view(dovecot.pop3_port, dovecot.user, dovecot.password)
    with MaildirStore(maildir, create=False) as store:
        maildrop = StoreMaildrop(store)
        try:
            ours = maildrop.open()
        finally:
            maildrop.close()
    assert {n: m.uidl for n, m in enumerate(ours, 1)} == theirs.uids
    assert {n: m.size for n, m in enumerate(ours, 1)} == theirs.sizes


# ------------------------------------------------- our client core against Dovecot

TIMEOUT = 10.0  # seconds for one whole exchange (Dovecot delays a failed login 2 s)


class Session:
    """Our :class:`ClientConnection` on a blocking socket: ``wait`` moves bytes until
    the event that ends a request arrives, reading at most ``read_size`` octets at a
    time (1 feeds the core one byte at a time)."""

    def __init__(self, port: int, *, context: ssl.SSLContext | None = None,
                 read_size: int = 65536) -> None:
        self.sock: socket.socket = socket.create_connection(("127.0.0.1", port), TIMEOUT)
        if context is not None:
            self.sock = context.wrap_socket(self.sock, server_hostname="localhost")
        self.conn = ClientConnection(tls_active=context is not None)
        self.read_size = read_size
        greeting = self.wait(Greeting)[-1]
        assert isinstance(greeting, Greeting)
        self.greeting = greeting

    def wait(self, *final: type[ClientEvent]) -> list[ClientEvent]:
        """The events up to and including the first of a type in ``final``."""
        deadline = time.monotonic() + TIMEOUT
        events: list[ClientEvent] = []
        while time.monotonic() < deadline:
            event = self.conn.next_event()
            if isinstance(event, Sentinel):  # NEED_DATA
                # Handling a response may have queued the next commands: send first.
                out = self.conn.data_to_send()
                if out:
                    self.sock.sendall(out)
                self.conn.receive_data(self.sock.recv(self.read_size))
                continue
            events.append(event)
            if isinstance(event, final):
                return events
        raise TimeoutError(f"no {final} after {TIMEOUT} s: {events[-5:]}")

    def start_tls(self, context: ssl.SSLContext) -> None:
        self.conn.stls()
        (reply,) = self.wait(Reply)
        assert isinstance(reply, Reply) and reply.reply.ok, reply
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")
        self.conn.tls_started()

    def capa(self) -> Capabilities:
        self.conn.capa()
        (capabilities,) = self.wait(Capabilities)
        assert isinstance(capabilities, Capabilities)
        return capabilities

    def retrieve(self, number: int, lines: int | None = None) -> tuple[bytes, int]:
        """(the message, its MessageEnd size) by RETR or TOP."""
        if lines is None:
            self.conn.retr(number)
        else:
            self.conn.top(number, lines)
        events = self.wait(MessageEnd, Reply)
        assert isinstance(events[0], MessageStart), events[0]
        end = events[-1]
        assert isinstance(end, MessageEnd) and end.number == number, end
        data = b"".join(e.data for e in events if isinstance(e, MessageChunk))
        return data, end.size

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def session_factory() -> Iterator[list[Session]]:
    opened: list[Session] = []
    yield opened
    for session in opened:
        session.close()


def open_session(opened: list[Session], port: int, **options: object) -> Session:
    session = Session(port, **options)  # type: ignore[arg-type]
    opened.append(session)
    return session


@pytest.mark.parametrize("read_size", [65536, 1], ids=["whole", "bytewise"])
def test_our_client_reads_what_poplib_reads(
    mailbox: tuple[Path, Stored], dovecot: DovecotPOP3, session_factory: list[Session],
    read_size: int,
) -> None:
    _, stored = mailbox
    view = pop3_view(dovecot.pop3_port, dovecot.user, dovecot.password)
    session = open_session(session_factory, dovecot.pop3_port, read_size=read_size)
    assert session.greeting.reply.ok
    assert session.capa().capabilities.get("PIPELINING") == ()
    # Pipelined (Dovecot announced PIPELINING): every request queued at once.
    conn = session.conn
    conn.login(dovecot.user, dovecot.password)
    conn.stat()
    conn.list()
    conn.uidl()
    conn.list(2)
    conn.uidl(3)
    events = session.wait(UniqueIds)
    events += session.wait(Listing)
    events += session.wait(UniqueIds)
    login, stat, listing, uids, one_size, one_uid = events
    assert isinstance(login, AuthResult) and login.success, login
    assert isinstance(stat, Stat) and (stat.count, stat.size) == (view.count, view.size)
    assert isinstance(listing, Listing) and dict(listing.entries) == view.sizes
    assert isinstance(uids, UniqueIds) and dict(uids.entries) == view.uids
    assert isinstance(one_size, Listing) and one_size.entries == ((2, view.sizes[2]),)
    assert isinstance(one_uid, UniqueIds) and one_uid.entries == ((3, view.uids[3]),)
    # Bytewise, the big message would take a few million reads: the small ones do.
    numbers = sorted(view.sizes) if read_size > 1 else sorted(view.sizes)[:-1]
    for number, uid in zip(numbers, stored.uids[: len(numbers)], strict=True):
        data, size = session.retrieve(number)
        assert data == view.messages[number] == served(stored.bodies[uid]), number
        # Dovecot ends a last line that has no line end (the message's LIST size does
        # not count those two octets).
        assert size == len(data) == len(view.messages[number])
        assert view.sizes[number] == stored.sizes[uid]
        header = data[: data.index(b"\r\n\r\n") + 4] if b"\r\n\r\n" in data else data
        top, _ = session.retrieve(number, 0)
        assert top == header, number
    conn.quit()
    events = session.wait(ConnectionClosed)
    assert isinstance(events[0], Reply) and events[0].reply.ok
    assert pop3_view(dovecot.pop3_port, dovecot.user, dovecot.password) == view


def test_dele_and_quit_really_delete(
    mailbox: tuple[Path, Stored], dovecot: DovecotPOP3, session_factory: list[Session],
) -> None:
    maildir, stored = mailbox
    before = pop3_view(dovecot.pop3_port, dovecot.user, dovecot.password)
    session = open_session(session_factory, dovecot.pop3_port)
    conn = session.conn
    conn.login(dovecot.user, dovecot.password)
    conn.dele(2)
    conn.rset()  # unmarks 2
    conn.dele(1)
    conn.dele(3)
    conn.dele(3)  # already deleted: -ERR, the session goes on
    conn.stat()
    events = session.wait(Stat)
    assert [type(e) for e in events] == [AuthResult, Reply, Reply, Reply, Reply, Reply, Stat]
    replies = [e for e in events if isinstance(e, Reply)]
    assert [r.reply.ok for r in replies] == [True, True, True, True, False]
    stat = events[-1]
    assert isinstance(stat, Stat) and stat.count == len(MESSAGES) - 2
    conn.quit()
    (quit_reply, closed) = session.wait(ConnectionClosed)
    assert isinstance(quit_reply, Reply) and quit_reply.reply.ok, quit_reply
    after = pop3_view(dovecot.pop3_port, dovecot.user, dovecot.password)
    assert after.count == len(MESSAGES) - 2
    assert sorted(after.uids.values()) == sorted(
        u for n, u in before.uids.items() if n not in (1, 3)
    )
    dovecot.stop()
    with MaildirStore(maildir, create=False) as store, store.folder("INBOX") as inbox:
        assert [m.uid for m in inbox.messages()] == [
            uid for i, uid in enumerate(stored.uids, 1) if i not in (1, 3)
        ]


def test_wrong_password_is_refused(
    dovecot: DovecotPOP3, session_factory: list[Session]
) -> None:
    session = open_session(session_factory, dovecot.pop3_port)
    session.conn.login(dovecot.user, "wrong")
    (failed,) = session.wait(AuthResult)
    assert isinstance(failed, AuthResult) and not failed.success
    assert failed.reply.code == "AUTH", failed
    assert not session.conn.authenticated


@pytest.fixture(scope="module")
def cert() -> SelfSignedCertificate:
    return make_self_signed(("localhost",))


@pytest.fixture
def tls_dovecot(
    mailbox: tuple[Path, Stored], cert: SelfSignedCertificate
) -> Iterator[DovecotPOP3]:
    with running_dovecot_pop3(mailbox[0], cert_pem=cert.cert_pem, key_pem=cert.key_pem,
                              no_flag_updates=True) as server:
        yield server


def test_stls_verified_then_cram_md5(
    tls_dovecot: DovecotPOP3, cert: SelfSignedCertificate, session_factory: list[Session]
) -> None:
    session = open_session(session_factory, tls_dovecot.pop3_port)
    assert "STLS" in session.capa().capabilities
    session.start_tls(cert.client_context())
    assert session.conn.tls_active
    again = session.capa().capabilities
    assert "STLS" not in again and "CRAM-MD5" in again["SASL"], again
    session.conn.authenticate(sasl.CramMd5Client(tls_dovecot.user, tls_dovecot.password))
    (result,) = session.wait(AuthResult)
    assert isinstance(result, AuthResult) and result.success, result
    session.conn.stat()
    (stat,) = session.wait(Stat)
    assert isinstance(stat, Stat) and stat.count == len(MESSAGES)


def test_stls_refuses_a_certificate_it_does_not_trust(
    tls_dovecot: DovecotPOP3, session_factory: list[Session]
) -> None:
    session = open_session(session_factory, tls_dovecot.pop3_port)
    with pytest.raises(ssl.SSLCertVerificationError):
        session.start_tls(ssl.create_default_context())


def test_implicit_tls_and_apop(
    tls_dovecot: DovecotPOP3, cert: SelfSignedCertificate, session_factory: list[Session]
) -> None:
    assert tls_dovecot.pop3s_port is not None
    session = open_session(session_factory, tls_dovecot.pop3s_port,
                           context=cert.client_context())
    assert session.conn.tls_active and session.conn.challenge, session.greeting
    session.conn.apop(tls_dovecot.user, tls_dovecot.password)
    (result,) = session.wait(AuthResult)
    assert isinstance(result, AuthResult) and result.success, result
    assert result.mechanism == "APOP"
    data, size = session.retrieve(1)
    assert data == MESSAGES[0] and size == len(data)


# ----------------------------------------------- our asyncio client against Dovecot


def test_aio_client_keep_mode_new_mail_then_delete(
    mailbox: tuple[Path, Stored], tls_dovecot: DovecotPOP3, cert: SelfSignedCertificate
) -> None:
    """fetchmail's "keep" mode with our asyncio client over STLS (certificate
    verified, SASL PLAIN chosen from CAPA): a second session fetches nothing, a new
    message alone is fetched, then everything is deleted at QUIT."""
    maildir, stored = mailbox
    port = tls_dovecot.pop3_port
    user, password = tls_dovecot.user, tls_dovecot.password
    view = pop3_view(port, user, password)
    seen: set[str] = set()
    got: dict[str, bytes] = {}

    async def keep(uid: str, data: bytes) -> None:
        got[uid] = data

    async def session(*, delete: bool = False) -> tuple[str, ...]:
        async with POP3Client.connect(
            "127.0.0.1", port, stls=True, ssl_context=cert.client_context(),
            server_hostname="localhost", timeouts=POP3Timeouts.uniform(TIMEOUT),
        ) as client:
            assert client.tls_active
            await client.login(user, password)
            uids = await client.uidl()
            assert (await client.stat())[0] == len(uids)
            result = await client.fetch(keep, seen=seen, delete=delete)
            assert result.present == frozenset(uids.values())
            assert result.deleted == (result.fetched if delete else ())
            return result.fetched

    fetched = asyncio.run(asyncio.wait_for(session(), TIMEOUT))
    assert list(fetched) == [view.uids[n] for n in sorted(view.uids)]
    assert got == {view.uids[n]: view.messages[n] for n in view.uids}
    assert asyncio.run(asyncio.wait_for(session(), TIMEOUT)) == ()

    with MaildirStore(maildir, fsync=False) as store, store.folder("INBOX") as inbox:
        new = inbox.append_bytes(b"Subject: new\r\n\r\n.\r\nlate\r\n").uid
    assert new is not None
    chown_tree(maildir.parent, tls_dovecot.uid, tls_dovecot.gid)  # we wrote as root
    expected = f"{new:08x}{stored.uidvalidity:08x}"
    assert asyncio.run(asyncio.wait_for(session(), TIMEOUT)) == (expected,)
    assert got[expected] == b"Subject: new\r\n\r\n.\r\nlate\r\n"

    seen.clear()
    fetched = asyncio.run(asyncio.wait_for(session(delete=True), TIMEOUT))
    assert len(fetched) == len(MESSAGES) + 1
    assert pop3_view(port, user, password).count == 0
