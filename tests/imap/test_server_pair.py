"""The server core against the client core in memory (design.md, "The style we learn
from", item 7): a whole session, every byte passed between them, whole or one byte at a
time, with nothing but the two cores and a scripted application."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mailagents import sasl
from mailagents._protocol import NEED_DATA, PAUSED
from mailagents.imap import _commands as c
from mailagents.imap._client import ClientConnection
from mailagents.imap._client_events import (
    Completed,
    LiteralStarted,
    Update,
)
from mailagents.imap._client_events import (
    Greeting as ClientGreeting,
)
from mailagents.imap._client_events import (
    IdleStarted as ClientIdleStarted,
)
from mailagents.imap._client_events import (
    LiteralData as ClientLiteralData,
)
from mailagents.imap._config import ServerConfig
from mailagents.imap._events import (
    AppendChunk,
    CommandReceived,
    Complete,
    Greeting,
    LiteralData,
    Untagged,
)
from mailagents.imap._fetch_items import FetchBody, Section
from mailagents.imap._frame import Frame, Streamed
from mailagents.imap._response_writer import write_response
from mailagents.imap._responses import ExistsData, FlagsData
from mailagents.imap._selected import SelectedMailbox
from mailagents.imap._seqset import SequenceSet
from mailagents.imap._server import ServerConnection
from mailagents.imap._state import State

BODY = b"Subject: big\r\n\r\n" + b"0123456789" * 3000 + b"\r\n"


@dataclass
class Store:
    """The scripted application behind the server."""

    appended: bytearray = field(default_factory=bytearray)

    def handle(self, server: ServerConnection, event: object) -> None:
        if isinstance(event, sasl.NeedCredentials):
            server.send(sasl.PasswordVerdict(valid=event.password == "secret"))
        elif isinstance(event, AppendChunk):
            self.appended += event.data
        elif isinstance(event, CommandReceived):
            command = event.command
            if isinstance(command, c.Select):
                server.send(Untagged(frame=write_response(FlagsData(flags=("\\Seen",)))))
                server.send(Untagged(frame=write_response(ExistsData(count=3))))
                server.send(Complete(code="READ-WRITE", selected=SelectedMailbox([4, 7, 9])))
            elif isinstance(command, c.Fetch):
                head = b"* 1 FETCH (UID 4 BODY[] {%d}" % len(BODY)
                frame = Frame(lines=(head, b")"), literals=(Streamed(size=len(BODY)),))
                server.send(Untagged(frame=frame))
                for i in range(0, len(BODY), 7000):
                    server.send(LiteralData(data=BODY[i : i + 7000]))
                server.send(Complete())
            elif isinstance(command, c.Append):  # into the selected INBOX: its new UID
                server.send(Complete(code="APPENDUID 1 20"))  # RFC 4315 §3
            else:
                server.send(Complete())


class Pair:
    """Both cores, and the pump that carries bytes between them."""

    def __init__(self, *, bytewise: bool) -> None:
        self.bytewise = bytewise
        cfg = ServerConfig(allow_plaintext_login=True, literal_plus=False)
        self.server = ServerConnection(cfg)
        self.client = ClientConnection(inline_max=4096)
        self.store = Store()
        self.client_events: list[object] = []
        self.server.send(Greeting(text="ready"))

    def _feed(self, receive: object, data: bytes) -> None:
        if self.bytewise:
            for i in range(len(data)):
                receive(data[i : i + 1])  # type: ignore[operator]
                self._drain_server()
        else:
            receive(data)  # type: ignore[operator]

    def _drain_server(self) -> None:
        while (event := self.server.next_event()) not in (NEED_DATA, PAUSED):
            self.store.handle(self.server, event)

    def pump(self) -> None:
        for _ in range(100_000):
            self._drain_server()
            to_client = self.server.data_to_send()
            if to_client:
                self._feed(self.client.receive_data, to_client)
            self.client_events += list(self.client.events())
            to_server = self.client.data_to_send()
            if not to_client and not to_server:
                return
            if to_server:
                self._feed(self.server.receive_data, to_server)
        raise AssertionError("the pair never settled")

    def completed(self, tag: str) -> Completed:
        done = [e for e in self.client_events if isinstance(e, Completed) and e.tag == tag]
        assert len(done) == 1, self.client_events
        return done[0]


@pytest.mark.parametrize("bytewise", [False, True])
def test_a_whole_session(bytewise: bool) -> None:
    pair = Pair(bytewise=bytewise)
    client, server = pair.client, pair.server
    pair.pump()
    assert isinstance(pair.client_events[0], ClientGreeting)

    login = client.login("fred", "secret")
    pair.pump()
    assert pair.completed(login).ok and server.state is State.AUTHENTICATED

    select = client.send(c.Select(tag=client.new_tag(), mailbox="INBOX"))
    pair.pump()
    assert pair.completed(select).ok and client.selected == "INBOX"

    # A 30 KB BODY[] streamed by the server and by the client's reader alike.
    fetch = client.send(
        c.Fetch(
            tag=client.new_tag(),
            sequence_set=SequenceSet.parse("1"),
            items=(FetchBody(section=Section()),),
        )
    )
    pair.pump()
    assert pair.completed(fetch).ok
    assert any(isinstance(e, LiteralStarted) and e.size == len(BODY) for e in pair.client_events)
    body = b"".join(e.data for e in pair.client_events if isinstance(e, ClientLiteralData))
    assert body == BODY

    # The store changes; a NOOP tells the client, in an order that keeps numbers right.
    view = server.mailbox
    assert view is not None
    view.expunged([7])
    view.appended([12])
    seen = len(pair.client_events)
    noop = client.noop()
    pair.pump()
    assert pair.completed(noop).ok
    told = [
        type(r).__name__
        for e in pair.client_events[seen:]
        if isinstance(e, Completed)
        for r in e.data
    ]
    told += [type(e.response).__name__ for e in pair.client_events[seen:] if isinstance(e, Update)]
    assert sorted(told) == ["ExistsData", "ExpungeData"], told

    # IDLE: an expunge pushed while idling arrives at once.
    client.idle()
    pair.pump()
    assert any(isinstance(e, ClientIdleStarted) for e in pair.client_events)
    view.expunged([4])
    server.refresh()
    pair.pump()
    assert any(
        isinstance(e, Update) and type(e.response).__name__ == "ExpungeData"
        for e in pair.client_events[-2:]
    )
    client.idle_done()
    pair.pump()
    assert server.state is State.SELECTED

    # APPEND of a 10 KB message: over LITERAL-'s 4096, so a synchronising literal (the
    # client waits for "+"), streamed into the store.
    message = b"Subject: up\r\n\r\n" + b"u" * 10_000 + b"\r\n"
    append = client.send(
        c.Append(tag=client.new_tag(), mailbox="INBOX", messages=(c.AppendMessage(data=message),))
    )
    pair.pump()
    assert pair.completed(append).ok and bytes(pair.store.appended) == message

    logout = client.logout()
    pair.pump()
    assert pair.completed(logout).ok and server.state is State.LOGOUT
