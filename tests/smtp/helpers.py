"""Drivers shared by the SMTP tests: run a ServerConnection over given bytes with a
scripted policy, and wire a client and a server core together in memory."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mailagents import sasl
from mailagents.smtp import (
    NEED_DATA,
    PAUSED,
    Accept,
    Decision,
    Hello,
    MailFrom,
    MessageComplete,
    RcptTo,
    RemoteProtocolError,
    ServerConnection,
    ServerEvent,
)

Policy = Callable[[ServerEvent], Decision | None]


def accept_all(event: ServerEvent) -> Decision | None:
    """Accept every decision event; answer no credentials request."""
    if isinstance(event, Hello | MailFrom | RcptTo | MessageComplete):
        return Accept()
    return None


def pump(server: ServerConnection, policy: Policy = accept_all) -> list[ServerEvent]:
    """Take events until NEED_DATA, answering decisions with ``policy``."""
    events: list[ServerEvent] = []
    while True:
        event = server.next_event()
        if event is NEED_DATA:
            return events
        if event is PAUSED:
            return events
        events.append(event)
        if isinstance(event, Hello | MailFrom | RcptTo | MessageComplete | sasl.NeedCredentials):
            decision = policy(event)
            if decision is None:
                return events
            server.send(decision)


def after_data_lines(pieces: Iterable[bytes]) -> list[bytes]:
    """``pieces`` cut again after every ``DATA<CRLF>`` of the stream they make (even
    one split between pieces): what a client that waits for the 354 (RFC 2920 §3.1)
    sends in one go. A cut inside message content is one more fragmentation, which
    never changes the outcome; empty pieces (the end of input) are kept."""
    out: list[bytes] = []
    tail = b""  # the end of the stream so far, for a DATA<CRLF> split between pieces
    for piece in pieces:
        if not piece:
            out.append(piece)
            continue
        window = tail + piece
        start = 0
        at = window.find(b"DATA\r\n")
        while at >= 0:
            end = at + 6 - len(tail)  # where the command ends, in piece
            if end > start:
                out.append(piece[start:end])
                start = end
            at = window.find(b"DATA\r\n", at + 1)
        if start < len(piece):
            out.append(piece[start:])
        tail = window[-5:]
    return out


def feed(
    server: ServerConnection, data: bytes, policy: Policy = accept_all
) -> list[ServerEvent]:
    """Feed ``data`` as a client that waits for the 354 sends it (see
    :func:`after_data_lines`), pumping events after each piece."""
    events: list[ServerEvent] = []
    for piece in after_data_lines([data]):
        server.receive_data(piece)
        events += pump(server, policy)
    return events


def run(
    data: bytes | Iterable[bytes],
    server: ServerConnection | None = None,
    policy: Policy = accept_all,
) -> tuple[list[ServerEvent], bytes, bool]:
    """Feed ``data`` (one piece or several, each cut after its DATA lines, as a client
    that waits for the 354 sends it) and return (events, output, fatal)."""
    server = server if server is not None else ServerConnection()
    given = [data] if isinstance(data, bytes) else list(data)
    pieces = after_data_lines(given)
    events: list[ServerEvent] = []
    out = bytearray(server.data_to_send())
    fatal = False
    try:
        for piece in pieces:
            server.receive_data(piece)
            events += pump(server, policy)
            out += server.data_to_send()
    except RemoteProtocolError:
        fatal = True
        out += server.data_to_send()
    return events, bytes(out), fatal


def codes(output: bytes) -> list[int]:
    """The reply codes of the last line of every reply in ``output``."""
    result = []
    for line in output.split(b"\r\n"):
        if (len(line) >= 4 and line[3:4] == b" ") or len(line) == 3:
            result.append(int(line[:3]))
    return result


def credentials_policy(users: dict[str, str]) -> Policy:
    """Accept everything and check passwords (PLAIN) or derive SCRAM secrets."""
    secrets = {u: sasl.scram_secrets(p, salt=b"salt-" + u.encode()) for u, p in users.items()}

    def policy(event: ServerEvent) -> Decision | None:
        if isinstance(event, sasl.NeedCredentials):
            if event.authcid not in users:
                return sasl.NoSuchUser()
            if event.password is not None:
                return sasl.PasswordVerdict(valid=event.password == users[event.authcid])
            return secrets[event.authcid]
        return accept_all(event)

    return policy


class ConnectionPair:
    """A ClientConnection and a ServerConnection wired together in memory.

    ``step`` moves the bytes each way once (optionally one octet at a time) and
    returns the client events that arrived; ``server_events`` keeps what the server's
    application saw."""

    def __init__(
        self,
        server: ServerConnection | None = None,
        client: object | None = None,
        policy: Policy = accept_all,
        *,
        bytewise: bool = False,
    ) -> None:
        from mailagents.smtp import ClientConnection

        self.server = server if server is not None else ServerConnection()
        self.client = client if client is not None else ClientConnection()
        assert isinstance(self.client, ClientConnection)
        self.policy = policy
        self.bytewise = bytewise
        self.server_events: list[ServerEvent] = []

    def _pieces(self, data: bytes) -> list[bytes]:
        if not self.bytewise:
            return [data] if data else []
        return [data[i : i + 1] for i in range(len(data))]

    def step(self) -> list[object]:
        from mailagents.smtp import ClientConnection

        client = self.client
        assert isinstance(client, ClientConnection)
        events: list[object] = []
        for piece in self._pieces(self.server.data_to_send()):
            client.receive_data(piece)
            events += list(client.events())
        for piece in self._pieces(client.data_to_send()):
            self.server.receive_data(piece)
            self.server_events += pump(self.server, self.policy)
        return events

    def until(self, kind: type, rounds: int = 50) -> object:
        """Step until the client emits an event of ``kind``; return it."""
        for _ in range(rounds):
            for event in self.step():
                if isinstance(event, kind):
                    return event
        raise AssertionError(f"no {kind.__name__} after {rounds} rounds")
