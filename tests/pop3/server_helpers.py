"""Drivers shared by the POP3 server-core tests: a scripted application answering the
decision events, and a runner that feeds bytes whole or in pieces."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mailagents import sasl
from mailagents.pop3 import (
    NEED_DATA,
    PAUSED,
    Accept,
    Decision,
    Maildrop,
    MaildropEntry,
    MessageChunk,
    MessageEnd,
    OpenMaildrop,
    Reject,
    RemoteProtocolError,
    Retrieve,
    ServerConfig,
    ServerConnection,
    ServerEvent,
    Update,
)

CHALLENGE = "<1896.697170952@dbc.mtview.ca.us>"
SCRAM = sasl.scram_secrets("tanstaaf", salt=b"0123456789abcdef", iterations=4096)

# The maildrop of RFC 1939's examples: two messages of 120 and 200 octets.
MSG1 = b"From: a@b\r\nSubject: one\r\n\r\n" + b"x" * 91 + b"\r\n"
MSG2 = b"From: c@d\r\nSubject: two\r\n\r\nline 1\r\n.dot line\r\n" + b"y" * 152 + b"\r\n"
assert len(MSG1) == 120 and len(MSG2) == 200


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@dataclass
class App:
    """A scripted application: one user, a password, a maildrop."""

    user: str = "mrose"
    password: str = "tanstaaf"
    messages: Sequence[bytes] = (MSG1, MSG2)
    sizes: Sequence[int] | None = None  # reported sizes (default: the CRLF size)
    open_reject: Reject | None = None
    retrieve_reject: Reject | None = None
    update_reject: Reject | None = None
    credentials_reject: Reject | None = None
    chunk: int = 7  # stream messages in pieces of this many octets
    log: list[object] = field(default_factory=list)

    def entries(self) -> tuple[MaildropEntry, ...]:
        sizes = self.sizes or [len(crlf(m)) for m in self.messages]
        return tuple(
            MaildropEntry(size=s, uid=f"uid-{i}") for i, s in enumerate(sizes, 1)
        )

    def __call__(self, server: ServerConnection, event: ServerEvent) -> list[Decision] | None:
        if isinstance(event, sasl.NeedCredentials):
            if self.credentials_reject is not None:
                return [self.credentials_reject]
            if event.authcid != self.user:
                return [sasl.NoSuchUser()]
            if event.mechanism == "APOP":
                return [sasl.LegacySecret(secret=self.password)]
            if event.password is not None:
                return [sasl.PasswordVerdict(valid=event.password == self.password)]
            return [SCRAM]
        if isinstance(event, OpenMaildrop):
            return [self.open_reject or Maildrop(messages=self.entries())]
        if isinstance(event, Retrieve):
            if self.retrieve_reject is not None:
                return [self.retrieve_reject]
            data = self.messages[event.number - 1]
            step = self.chunk
            chunks: list[Decision] = [
                MessageChunk(data=data[i : i + step]) for i in range(0, len(data), step)
            ]
            return [Accept(), *chunks, MessageEnd()]
        if isinstance(event, Update):
            self.log.append(event)
            return [self.update_reject or Accept()]
        return None


def pump(
    server: ServerConnection, app: App, events: list[ServerEvent] | None = None
) -> list[ServerEvent]:
    """Take events until NEED_DATA (or an unanswered PAUSED), answering decisions;
    ``events`` collects them even when RemoteProtocolError ends the loop."""
    events = [] if events is None else events
    while True:
        event = server.next_event()
        if event is NEED_DATA or event is PAUSED:
            return events
        events.append(event)
        decisions = app(server, event)
        for decision in decisions or ():
            server.send(decision)


@dataclass
class Result:
    events: list[ServerEvent]
    out: bytes
    fatal: bool

    @property
    def lines(self) -> list[bytes]:
        return self.out.split(b"\r\n")[:-1]

    def types(self) -> list[str]:
        return [type(e).__name__ for e in self.events]


def run(
    data: bytes | Iterable[bytes],
    server: ServerConnection | None = None,
    app: App | None = None,
    *,
    bytewise: bool = False,
    greeting: bool = False,
) -> Result:
    """Feed ``data`` (one piece, several, or one byte at a time) and collect."""
    server = server if server is not None else ServerConnection(plain_config())
    app = app if app is not None else App()
    if isinstance(data, bytes):
        pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    else:
        pieces = list(data)
    events: list[ServerEvent] = []
    out = bytearray(server.data_to_send())
    if not greeting:
        out.clear()
    fatal = False
    try:
        pump(server, app, events)
        for piece in pieces:
            server.receive_data(piece)
            pump(server, app, events)
            out += server.data_to_send()
    except RemoteProtocolError:
        fatal = True
        out += server.data_to_send()
    return Result(events, bytes(out), fatal)


def plain_config(**kw: object) -> ServerConfig:
    """A configuration where USER/PASS and PLAIN work without TLS (for tests)."""
    options: dict[str, object] = {"allow_plaintext_login": True, "allow_apop": True}
    options.update(kw)
    return ServerConfig(**options)  # type: ignore[arg-type]


def logged_in(app: App | None = None, **kw: object) -> ServerConnection:
    server = ServerConnection(plain_config(**kw), challenge=CHALLENGE)
    result = run(b"USER mrose\r\nPASS tanstaaf\r\n", server, app or App())
    assert result.out.startswith(b"+OK Send PASS\r\n+OK maildrop"), result.out
    return server


def both_ways(data: bytes, make: object = None) -> list[Result]:
    """Run ``data`` whole and one byte at a time on fresh logged-in servers."""
    return [run(data, logged_in()), run(data, logged_in(), bytewise=True)]
