"""Both POP3 cores wired together in memory: full sessions between ClientConnection and
ServerConnection, bytes moved whole or one byte at a time in both directions."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents import sasl
from mailagents.pop3._client_events import (
    AuthResult,
    Capabilities,
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
from mailagents.pop3._config import ServerConfig
from mailagents.pop3._events import (
    Accept,
    Authenticated,
    AuthenticationFailed,
    Maildrop,
    MaildropEntry,
    OpenMaildrop,
    Quit,
    Reject,
    Retrieve,
    StartTLS,
    Update,
)
from mailagents.pop3._events import MessageChunk as ServerChunk
from mailagents.pop3._events import MessageEnd as ServerEnd
from mailagents.pop3._response import Response, Sentinel
from mailagents.pop3._server import Decision, ServerConnection, ServerEvent
from mailagents.pop3.client import ClientConnection

CHALLENGE = "<1896.697170952@dbc.mtview.ca.us>"
USER, PASSWORD = "mrose", "tanstaaf"
SCRAM = sasl.scram_secrets(PASSWORD, salt=b"pair-test-salt!!", iterations=4096)

MSG1 = b"From: a@example.org\r\nSubject: one\r\n\r\nHello\r\n"
MSG2 = (
    b"From: b@example.org\r\nSubject: dots\r\n\r\n"
    b".leading dot\r\n..two\r\n.\r\nline 4\r\nline 5\r\n"
)
MSG3 = b"Subject: three\n\nbare LF body\n.\nno final line end"
MSG3_CRLF = b"Subject: three\r\n\r\nbare LF body\r\n.\r\nno final line end\r\n"


def crlf_size(message: bytes) -> int:
    data = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return len(data if data.endswith(b"\r\n") or not data else data + b"\r\n")


@dataclass
class Mailbox:
    """The server application: one user, a maildrop, deletions recorded."""

    messages: list[bytes] = field(default_factory=lambda: [MSG1, MSG2, MSG3])
    in_use: bool = False
    chunk: int = 5
    updates: list[Update] = field(default_factory=list)
    retrieved: list[Retrieve] = field(default_factory=list)

    def answer(self, event: ServerEvent) -> list[Decision]:
        if isinstance(event, sasl.NeedCredentials):
            if event.authcid != USER:
                return [sasl.NoSuchUser()]
            if event.mechanism == "APOP":
                return [sasl.LegacySecret(secret=PASSWORD)]
            if event.password is not None:
                return [sasl.PasswordVerdict(valid=event.password == PASSWORD)]
            return [SCRAM]
        if isinstance(event, OpenMaildrop):
            if self.in_use:
                return [Reject(reply=Response(ok=False, code="IN-USE", text="locked"))]
            entries = tuple(
                MaildropEntry(size=crlf_size(m), uid=f"uid{i:04d}")
                for i, m in enumerate(self.messages, 1)
            )
            return [Maildrop(messages=entries)]
        if isinstance(event, Retrieve):
            self.retrieved.append(event)
            data = self.messages[event.number - 1]
            pieces: list[Decision] = [
                ServerChunk(data=data[i : i + self.chunk]) for i in range(0, len(data), self.chunk)
            ]
            return [Accept(), *pieces, ServerEnd()]
        if isinstance(event, Update):
            self.updates.append(event)
            return [Accept()]
        return []


class ConnectionPair:
    """A client core and a server core joined by an in-memory wire.

    ``run()`` moves bytes until both sides are idle, answering the server's decisions
    with ``mailbox`` and completing STLS on both sides when the client is told +OK.
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        mailbox: Mailbox | None = None,
        challenge: str | None = CHALLENGE,
        bytewise: bool = False,
    ) -> None:
        self.server = ServerConnection(config, challenge=challenge)
        self.client = ClientConnection()
        self.mailbox = mailbox or Mailbox()
        self.bytewise = bytewise
        self.server_events: list[ServerEvent] = []
        self.client_events: list[ClientEvent] = []
        self.client_writes: list[bytes] = []
        self._server_tls_pending = False

    def _feed(self, receive: object, data: bytes) -> None:
        assert callable(receive)
        if self.bytewise:
            for i in range(len(data)):
                receive(data[i : i + 1])
        else:
            receive(data)

    def _drain_server(self) -> None:
        while True:
            event = self.server.next_event()
            if isinstance(event, Sentinel):
                return
            self.server_events.append(event)
            if isinstance(event, StartTLS):
                self._server_tls_pending = True
            for decision in self.mailbox.answer(event):
                self.server.send(decision)

    def _drain_client(self) -> list[ClientEvent]:
        new: list[ClientEvent] = []
        for event in self.client.events():
            new.append(event)
            if isinstance(event, Reply) and event.command == "STLS" and event.reply.ok:
                self.client.tls_started()
                assert self._server_tls_pending
                self.server.tls_started()
                self._server_tls_pending = False
        return new

    def run(self) -> list[ClientEvent]:
        """Move bytes both ways until nothing moves; return the new client events."""
        new: list[ClientEvent] = []
        for _ in range(10_000):
            self._drain_server()
            down = self.server.data_to_send()
            if down:
                if self.bytewise:
                    for i in range(len(down)):
                        if self.client.closed:
                            break
                        self.client.receive_data(down[i : i + 1])
                        new += self._drain_client()
                else:
                    self.client.receive_data(down)
            new += self._drain_client()
            up = self.client.data_to_send()
            if up:
                self.client_writes.append(up)
                self._feed(self.server.receive_data, up)
            if not down and not up:
                break
        self.client_events += new
        return _merged(new)


def _merged(evs: list[ClientEvent]) -> list[ClientEvent]:
    out: list[ClientEvent] = []
    for ev in evs:
        if isinstance(ev, MessageChunk) and out and isinstance(out[-1], MessageChunk):
            out[-1] = MessageChunk(number=ev.number, data=out[-1].data + ev.data)
        else:
            out.append(ev)
    return out


def plain(**kw: object) -> ServerConfig:
    options: dict[str, object] = {
        "hostname": "pop.example.org",
        "allow_plaintext_login": True,
        "allow_apop": True,
    }
    options.update(kw)
    return ServerConfig(**options)  # type: ignore[arg-type]


bytewise = pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])


def start(pair: ConnectionPair) -> Greeting:
    [greeting] = pair.run()
    assert isinstance(greeting, Greeting) and greeting.reply.ok
    return greeting


# --- full sessions ----------------------------------------------------------------------


@bytewise
def test_full_session_user_pass(bytewise: bool) -> None:
    pair = ConnectionPair(plain(), bytewise=bytewise)
    greeting = start(pair)
    assert greeting.challenge == CHALLENGE
    c = pair.client
    c.capa()
    [capa] = pair.run()
    assert isinstance(capa, Capabilities)
    assert {"TOP", "UIDL", "USER", "PIPELINING"} <= set(capa.capabilities)
    assert "PLAIN" in capa.capabilities["SASL"]

    c.login(USER, PASSWORD)
    [auth] = pair.run()
    assert isinstance(auth, AuthResult) and auth.success and c.authenticated
    assert any(isinstance(e, Authenticated) and e.identity == USER for e in pair.server_events)

    c.stat()
    c.list()
    c.list(3)
    c.uidl()
    c.uidl(2)
    sizes = [crlf_size(m) for m in (MSG1, MSG2, MSG3)]
    evs = pair.run()
    assert evs == [
        Stat(reply=Response(ok=True, text=f"3 {sum(sizes)}"), count=3, size=sum(sizes)),
        Listing(
            reply=Response(ok=True, text=f"3 messages ({sum(sizes)} octets)"),
            entries=((1, sizes[0]), (2, sizes[1]), (3, sizes[2])),
        ),
        Listing(reply=Response(ok=True, text=f"3 {sizes[2]}"), entries=((3, sizes[2]),)),
        UniqueIds(
            reply=evs[3].reply,  # type: ignore[union-attr]
            entries=((1, "uid0001"), (2, "uid0002"), (3, "uid0003")),
        ),
        UniqueIds(reply=Response(ok=True, text="2 uid0002"), entries=((2, "uid0002"),)),
    ]

    for n, expected in ((1, MSG1), (2, MSG2), (3, MSG3_CRLF)):
        c.retr(n)
        start_ev, chunk, end = pair.run()
        assert isinstance(start_ev, MessageStart) and start_ev.number == n
        assert chunk == MessageChunk(number=n, data=expected)
        assert end == MessageEnd(number=n, size=len(expected))
        assert end.size == sizes[n - 1]  # LIST's size is what RETR gives

    c.top(2, 2)
    evs = pair.run()
    assert evs[1] == MessageChunk(
        number=2, data=b"From: b@example.org\r\nSubject: dots\r\n\r\n.leading dot\r\n..two\r\n"
    )
    assert pair.mailbox.retrieved[-1].lines == 2

    c.dele(1)
    c.dele(1)
    c.rset()
    c.dele(3)
    c.noop()
    c.stat()
    evs = pair.run()
    assert [type(e).__name__ for e in evs] == ["Reply", "Reply", "Reply", "Reply", "Reply", "Stat"]
    assert evs[0] == Reply(command="DELE", reply=evs[0].reply)  # type: ignore[union-attr]
    assert evs[0].reply.ok and not evs[1].reply.ok  # type: ignore[union-attr]
    assert evs[5] == Stat(reply=evs[5].reply, count=2, size=sizes[0] + sizes[1])  # type: ignore[union-attr]

    c.quit()
    quit_reply, closed = pair.run()
    assert isinstance(quit_reply, Reply) and quit_reply.command == "QUIT" and quit_reply.reply.ok
    assert closed == ConnectionClosed() and c.closed
    [update] = pair.mailbox.updates
    assert update.numbers == (3,)
    assert any(isinstance(e, Quit) for e in pair.server_events)


@bytewise
def test_apop_session(bytewise: bool) -> None:
    pair = ConnectionPair(plain(), bytewise=bytewise)
    start(pair)
    pair.client.apop(USER, PASSWORD)
    [auth] = pair.run()
    assert isinstance(auth, AuthResult) and auth.success and auth.mechanism == "APOP"
    pair.client.quit()
    assert pair.run()[-1] == ConnectionClosed()
    assert pair.mailbox.updates[0].numbers == ()


def test_apop_wrong_secret() -> None:
    pair = ConnectionPair(plain())
    start(pair)
    pair.client.apop(USER, "wrong")
    [auth] = pair.run()
    assert isinstance(auth, AuthResult) and not auth.success and auth.reply.code == "AUTH"
    assert any(isinstance(e, AuthenticationFailed) for e in pair.server_events)


@bytewise
@pytest.mark.parametrize("initial", [True, False])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_sasl(bytewise: bool, initial: bool, mechanism: str) -> None:
    pair = ConnectionPair(plain(), bytewise=bytewise)
    start(pair)
    pair.client.capa()
    pair.run()
    mech: sasl.ClientMechanism = (
        sasl.PlainClient(USER, PASSWORD)
        if mechanism == "PLAIN"
        else sasl.ScramSha256Client(USER, PASSWORD)
    )
    pair.client.authenticate(mech, initial=initial)
    [auth] = pair.run()
    assert auth == AuthResult(success=True, reply=auth.reply, mechanism=mechanism)  # type: ignore[union-attr]
    pair.client.stat()
    [stat] = pair.run()
    assert isinstance(stat, Stat) and stat.count == 3


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_sasl_wrong_password(mechanism: str) -> None:
    pair = ConnectionPair(plain())
    start(pair)
    mech: sasl.ClientMechanism = (
        sasl.PlainClient(USER, "nope")
        if mechanism == "PLAIN"
        else sasl.ScramSha256Client(USER, "nope")
    )
    pair.client.authenticate(mech)
    [auth] = pair.run()
    assert isinstance(auth, AuthResult) and not auth.success
    assert auth.reply.code == "AUTH" and auth.error is None
    assert not pair.client.authenticated
    pair.client.login(USER, PASSWORD)  # the session goes on
    [auth] = pair.run()
    assert isinstance(auth, AuthResult) and auth.success


def test_maildrop_in_use() -> None:
    pair = ConnectionPair(plain(), mailbox=Mailbox(in_use=True))
    start(pair)
    pair.client.login(USER, PASSWORD)
    [auth] = pair.run()
    assert isinstance(auth, AuthResult) and not auth.success and auth.reply.code == "IN-USE"
    assert not any(isinstance(e, AuthenticationFailed) for e in pair.server_events)


@bytewise
def test_stls_flow(bytewise: bool) -> None:
    pair = ConnectionPair(
        ServerConfig(hostname="pop.example.org", tls_available=True), bytewise=bytewise
    )
    start(pair)
    c = pair.client
    c.capa()
    [capa] = pair.run()
    assert isinstance(capa, Capabilities)
    assert "STLS" in capa.capabilities and "USER" not in capa.capabilities
    c.stls()
    [reply] = pair.run()
    assert isinstance(reply, Reply) and reply.command == "STLS" and reply.reply.ok
    assert c.tls_active and pair.server.tls_active
    assert dict(c.capabilities) == {}
    c.capa()
    [capa] = pair.run()
    assert isinstance(capa, Capabilities)
    assert "STLS" not in capa.capabilities and "USER" in capa.capabilities
    c.login(USER, PASSWORD)
    c.uidl()
    auth, uids = pair.run()
    assert isinstance(auth, AuthResult) and auth.success
    assert isinstance(uids, UniqueIds) and len(uids.entries) == 3


def test_plaintext_login_refused_without_tls() -> None:
    pair = ConnectionPair(ServerConfig(hostname="pop.example.org", tls_available=True))
    start(pair)
    pair.client.login(USER, PASSWORD)
    [auth] = pair.run()
    assert isinstance(auth, AuthResult) and not auth.success
    assert pair.client_writes == [b"USER mrose\r\n"]  # the password never left


def test_pipelined_transaction_in_one_write() -> None:
    pair = ConnectionPair(plain())
    start(pair)
    c = pair.client
    c.capa()
    pair.run()
    assert c.can_pipeline
    pair.client_writes.clear()
    c.login(USER, PASSWORD)
    c.uidl()
    c.retr(2)
    c.dele(2)
    c.retr(3)
    c.dele(3)
    c.quit()
    evs = pair.run()
    assert pair.client_writes[0] == (
        b"USER mrose\r\nPASS tanstaaf\r\nUIDL\r\nRETR 2\r\nDELE 2\r\nRETR 3\r\nDELE 3\r\nQUIT\r\n"
    )
    assert len(pair.client_writes) == 1
    assert [type(e).__name__ for e in evs] == [
        "AuthResult",
        "UniqueIds",
        "MessageStart",
        "MessageChunk",
        "MessageEnd",
        "Reply",
        "MessageStart",
        "MessageChunk",
        "MessageEnd",
        "Reply",
        "Reply",
        "ConnectionClosed",
    ]
    assert evs[3] == MessageChunk(number=2, data=MSG2)
    assert evs[7] == MessageChunk(number=3, data=MSG3_CRLF)
    assert pair.mailbox.updates[0].numbers == (2, 3)


def test_without_pipelining_one_command_per_write() -> None:
    pair = ConnectionPair(plain())
    start(pair)
    c = pair.client
    c.login(USER, PASSWORD)  # no CAPA: pipelining unknown
    c.stat()
    c.quit()
    evs = pair.run()
    assert pair.client_writes == [b"USER mrose\r\n", b"PASS tanstaaf\r\n", b"STAT\r\n", b"QUIT\r\n"]
    assert [type(e).__name__ for e in evs] == ["AuthResult", "Stat", "Reply", "ConnectionClosed"]


def test_server_rejects_commands_out_of_state() -> None:
    pair = ConnectionPair(plain())
    start(pair)
    pair.client.stat()  # before login
    pair.client.retr(1)
    evs = pair.run()
    assert [(e.command, e.reply.ok) for e in evs] == [("STAT", False), ("RETR", False)]  # type: ignore[union-attr]


line_text = st.text(alphabet=".ab \t", max_size=12).map(str.encode)


@given(
    st.lists(line_text, max_size=12),
    st.sampled_from([b"\r\n", b"\n"]),
    st.booleans(),
    st.integers(1, 9),
)
def test_any_message_round_trips(
    lines: list[bytes], ending: bytes, final_newline: bool, chunk: int
) -> None:
    message = ending.join(lines) + (ending if final_newline and lines else b"")
    expected = b"".join(line + b"\r\n" for line in lines)
    if lines and not final_newline and lines[-1] == b"":
        expected = expected[:-2]  # an empty last line without its end is nothing
    pair = ConnectionPair(plain(), mailbox=Mailbox(messages=[message], chunk=chunk))
    start(pair)
    pair.client.login(USER, PASSWORD)
    pair.client.list(1)
    pair.client.retr(1)
    auth, listing, *evs = pair.run()
    assert isinstance(listing, Listing)
    body = b"".join(e.data for e in evs if isinstance(e, MessageChunk))
    assert body == expected
    assert evs[-1] == MessageEnd(number=1, size=len(expected))
