"""Two sans-I/O cores talking to each other with no socket at all.

A ClientConnection sends one message with two recipients to a ServerConnection that
refuses one of them; the bytes are moved by hand, which is all an adapter does.
Run it: ``python examples/smtp_in_memory.py``.
"""

from __future__ import annotations

from mailagents.smtp import (
    NEED_DATA,
    PAUSED,
    Accept,
    ClientConnection,
    DataChunk,
    Hello,
    MailFrom,
    MessageComplete,
    RcptTo,
    Reject,
    Reply,
    ServerConfig,
    ServerConnection,
)
from mailagents.smtp.client import Greeting, Response, TransactionResult

MESSAGE = b"From: a@example.org\nTo: b@example.test\nSubject: hi\n\nHello.\n.dot line\n"


def server_side(server: ServerConnection, received: list[bytes]) -> None:
    """The server application: decide on each event."""
    while (event := server.next_event()) not in (NEED_DATA, PAUSED):
        if isinstance(event, RcptTo):
            mailbox = event.path.mailbox
            if mailbox is not None and mailbox.domain == "example.test":
                server.send(Accept())
            else:
                refusal = Reply(code=550, enhanced="5.7.1", lines=("relaying denied",))
                server.send(Reject(reply=refusal))
        elif isinstance(event, Hello | MailFrom):
            server.send(Accept())
        elif isinstance(event, DataChunk):
            received.append(event.data)
        elif isinstance(event, MessageComplete):
            server.send(Accept())


def main() -> TransactionResult:
    server = ServerConnection(ServerConfig(hostname="mx.example.test"))
    client = ClientConnection()
    received: list[bytes] = []
    result: TransactionResult | None = None
    while result is None:
        # Move the bytes: this is the whole job of an adapter.
        client.receive_data(server.data_to_send())
        for event in client.events():
            if isinstance(event, Greeting):
                client.ehlo("client.example.org")
            elif isinstance(event, Response) and event.command == "EHLO":
                client.send_mail("a@example.org", ["b@example.test", "c@elsewhere.example"],
                                 MESSAGE)
            elif isinstance(event, TransactionResult):
                result = event
        server.receive_data(client.data_to_send())
        server_side(server, received)
    print("accepted:", [str(p) for p in result.accepted])
    print("refused: ", [str(p) for p in result.refused])
    print("server received:", b"".join(received))
    return result


if __name__ == "__main__":
    main()
