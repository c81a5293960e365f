"""A POP3 server core driven by hand, with no socket at all.

A maildrop of two messages lives in a dict. The script feeds the core the commands a
client would send (login, STAT, UIDL, RETR of a message with a line that starts with a
dot, DELE, QUIT), answers each decision event, and prints what the core writes back.
Run it: ``python examples/pop3_in_memory.py``.
"""

from __future__ import annotations

from mailagents import sasl
from mailagents.pop3 import (
    NEED_DATA,
    PAUSED,
    Accept,
    Maildrop,
    MaildropEntry,
    MessageChunk,
    MessageEnd,
    OpenMaildrop,
    Retrieve,
    ServerConfig,
    ServerConnection,
    Update,
)

MESSAGES = {
    "0000000100000001": b"Subject: one\r\n\r\nFirst.\r\n",
    "0000000100000002": b"Subject: two\r\n\r\n.a line that starts with a dot\r\n",
}
PASSWORD = "secret"


def answer(conn: ServerConnection, deleted: list[str]) -> None:
    """Take every event the core has and answer the ones that need a decision."""
    while (event := conn.next_event()) not in (NEED_DATA, PAUSED):
        if isinstance(event, sasl.NeedCredentials):  # USER/PASS arrive as SASL PLAIN
            conn.send(sasl.PasswordVerdict(valid=event.password == PASSWORD))
        elif isinstance(event, OpenMaildrop):  # lock the maildrop, list it
            entries = tuple(MaildropEntry(size=len(m), uid=u) for u, m in MESSAGES.items())
            conn.send(Maildrop(messages=entries))
        elif isinstance(event, Retrieve):  # stream the message; the core byte-stuffs it
            conn.send(Accept())
            conn.send(MessageChunk(data=MESSAGES[event.uid]))
            conn.send(MessageEnd())
        elif isinstance(event, Update):  # QUIT: now remove what the client deleted
            deleted.extend(entry.uid for entry in event.deleted)
            conn.send(Accept())


def main() -> list[str]:
    """Run the session; return the unique ids deleted at QUIT."""
    conn = ServerConnection(ServerConfig(hostname="pop.example.test", allow_plaintext_login=True))
    deleted: list[str] = []
    print(conn.data_to_send().decode(), end="")
    for command in (b"USER alice", b"PASS secret", b"STAT", b"UIDL", b"RETR 2", b"DELE 1",
                    b"QUIT"):
        print(f"C: {command.decode()}")
        conn.receive_data(command + b"\r\n")
        answer(conn, deleted)
        print(conn.data_to_send().decode(), end="")
    print("deleted at QUIT:", deleted)
    return deleted


if __name__ == "__main__":
    main()
