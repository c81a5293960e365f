"""Serve Maildirs over IMAP in ten lines, then read one back with imaplib.

The ten lines are ``serve()``: a password file for the logins, a path template from
each user to a Maildir, and the store-backed IMAP server (every IMAP4rev2 and rev1
command, STARTTLS, IDLE woken by new mail). The rest makes a throw-away setting to
show it working: a temporary folder, a self-signed certificate, a user ``alice`` with a
message in her INBOX; imaplib then logs in over STARTTLS and reads it. Run it:
``python examples/imap_server.py`` (it picks a free port and stops by itself).
"""

from __future__ import annotations

import asyncio
import imaplib
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path

from mailagents.agents import store_imap_server
from mailagents.aio import make_self_signed
from mailagents.store import MaildirStore, StoreResolver
from mailagents.userdb import PasswordFile


async def forever(port: int) -> None:
    """Serve until the process is stopped."""
    await asyncio.Event().wait()


async def serve(root: Path, tls: ssl.SSLContext, port: int = 143,
                until: Callable[[int], Awaitable[None]] = forever) -> None:
    """The ten lines: users from a password file (``python -m mailagents passwd FILE
    USER`` writes one), each user's Maildir from a template, STARTTLS on ``port``;
    served until ``until(bound port)`` returns."""
    with PasswordFile(root / "users") as users, closing(
        StoreResolver(str(root / "{user}" / "Maildir"))
    ) as stores:
        server = store_imap_server(users, stores, ssl_context=tls)
        await server.start("127.0.0.1", port)
        try:
            await until(server.port)
        finally:
            await server.close()


def read_inbox(port: int, tls: ssl.SSLContext) -> None:
    """What a mail client does: STARTTLS, LOGIN, SELECT, FETCH."""
    with imaplib.IMAP4("127.0.0.1", port, timeout=10) as imap:
        imap.starttls(tls)
        imap.login("alice", "wonderland")
        print("SELECT INBOX:", imap.select("INBOX"))
        data = imap.fetch("1", "(FLAGS BODY[HEADER.FIELDS (SUBJECT)])")[1]
        print("FETCH 1:", data[0])
        print("flags now:", imap.fetch("1", "(FLAGS)")[1][0])


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        PasswordFile(root / "users", scrypt_n=2**10).set_password("alice", "wonderland")
        with MaildirStore(root / "alice" / "Maildir") as store, store.folder("INBOX") as inbox:
            inbox.append_bytes(b"From: bob@example.test\r\nSubject: Hello\r\n\r\nHi!\r\n")
        certificate = make_self_signed(["localhost"])

        async def client(port: int) -> None:
            await asyncio.to_thread(read_inbox, port, certificate.client_context())

        await serve(root, certificate.server_context(), port=0, until=client)


if __name__ == "__main__":
    asyncio.run(main())
