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


def run(
    data: bytes | Iterable[bytes],
    server: ServerConnection | None = None,
    policy: Policy = accept_all,
) -> tuple[list[ServerEvent], bytes, bool]:
    """Feed ``data`` (one piece or several) and return (events, output, fatal)."""
    server = server if server is not None else ServerConnection()
    pieces = [data] if isinstance(data, bytes) else list(data)
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
