"""The IMAP client core driven by hand, with no socket at all.

The script plays a server from canned responses (RFC 9051's own examples): it logs in
with a password holding a line break (which the core sends as a literal, after the
server's ``+``, so it can never end the command early), selects INBOX, fetches two
messages' flags, copies them (the COPYUID ranges stay ranges) and logs out, printing
what the client writes and the events it reports. Run it:
``python examples/imap_client.py``.

Over a network, the asyncio client does the same in a few lines::

    async with IMAPClient.connect("imap.example.org", implicit_tls=True) as client:
        await client.login("alice", "secret")
        box = await client.select("INBOX")
        print(box.exists, await client.fetch("1:*", "(UID FLAGS)"))
"""

from __future__ import annotations

from mailagents.imap import SequenceSet, commands
from mailagents.imap.client import ClientConnection, Completed, Greeting, Update

# What the server says, in order; each piece is fed when the client is ready for it.
SERVER = [
    b"* OK [CAPABILITY IMAP4rev1 UIDPLUS] IMAP4rev1 Service Ready\r\n",
    b"+ Ready for literal data\r\n",
    b"A0001 OK LOGIN completed\r\n",
    b"* 172 EXISTS\r\n* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
    b"* OK [UIDNEXT 4392] Predicted next UID\r\n"
    b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
    b"A0002 OK [READ-WRITE] SELECT completed\r\n",
    b"* 1 FETCH (UID 4380 FLAGS (\\Seen))\r\n* 173 EXISTS\r\n"
    b"* 2 FETCH (UID 4381 FLAGS ())\r\nA0003 OK FETCH completed\r\n",
    b"A0004 OK [COPYUID 3857529045 4380:4381 1:2] COPY completed\r\n",
    b"* BYE IMAP4rev1 Server logging out\r\nA0005 OK LOGOUT completed\r\n",
]


def show(conn: ClientConnection) -> None:
    """Print what the client would write, then every event it has."""
    out = conn.data_to_send()
    if out:
        print("C:", out)
    for event in conn.events():
        if isinstance(event, Greeting):
            print("greeting:", event.status, sorted(conn.capabilities or ()))
        elif isinstance(event, Completed):
            print(f"{event.tag} {event.command} -> {event.status}, {len(event.data)} responses")
            for response in event.data:
                print("   ", response)
            if event.response.code is not None:
                print("    code:", event.response.code)
        elif isinstance(event, Update):
            print("news:", event.response)
        else:
            print("event:", event)


def main() -> None:
    conn = ClientConnection()
    replies = iter(SERVER)
    conn.receive_data(next(replies))
    show(conn)
    conn.login("fred", "pass\r\nword")  # a CR LF: sent as a literal, {10}
    show(conn)
    conn.receive_data(next(replies))  # "+": the literal goes now
    show(conn)
    conn.receive_data(next(replies))
    show(conn)
    conn.send(commands.Select(tag=conn.new_tag(), mailbox="INBOX"))
    show(conn)
    conn.receive_data(next(replies))
    show(conn)
    two = SequenceSet.parse("1:2")
    conn.send(commands.Fetch(tag=conn.new_tag(), sequence_set=two, items="FAST"))
    show(conn)
    conn.receive_data(next(replies))
    show(conn)
    conn.send(commands.Copy(tag=conn.new_tag(), sequence_set=two, mailbox="Archive"))
    show(conn)
    conn.receive_data(next(replies))
    show(conn)
    conn.logout()
    show(conn)
    conn.receive_data(next(replies))
    show(conn)
    print("closed:", conn.closed)


if __name__ == "__main__":
    main()
