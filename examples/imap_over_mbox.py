"""Serve a classic mbox spool (``/var/mail/alice``) over IMAP, then read it with imaplib.

``serve()`` is the server: each user's store is an
:class:`~mailagents.store.MboxStore` whose INBOX is the user's spool file, the mbox
that Postfix's local(8), procmail or ``python -m mailagents deliver --format mbox``
append to, and whose other folders are mbox files in a folder of their own; the
store-backed IMAP server (:func:`~mailagents.agents.store_imap_server`) serves them
with STARTTLS. The file stays an ordinary mbox that mutt or s-nail can open meanwhile
(the store takes the same fcntl and dotlocks they do); UIDs and flags live in side
files beside the folders, flags go into ``Status:`` headers when the file is
rewritten (at EXPUNGE).

The rest is a demonstration that stops by itself: ``python examples/imap_over_mbox.py``
writes a spool with two messages in a temporary folder (one body line starts with
``From``, escaped in the file as ``>From``), serves it on a free port, and imaplib logs
in over STARTTLS, reads both, deletes the first and expunges it; the spool file is
printed afterwards (the message left has its ``>From`` line and a ``Status: RO``
header for its \\Seen flag).
"""

from __future__ import annotations

import asyncio
import imaplib
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from mailagents.agents import store_imap_server
from mailagents.aio import make_self_signed
from mailagents.store import MboxStore, Store, safe_name
from mailagents.userdb import PasswordFile

SPOOL = b"""\
From bob@example.org Mon Dec  7 09:00:00 2026
From: bob@example.org
Subject: first

Hello Alice.

From carol@example.org Mon Dec  7 10:00:00 2026
From: carol@example.org
Subject: second

>From the top, once more.

"""


async def forever(port: int) -> None:
    """Serve until the process is stopped."""
    await asyncio.Event().wait()


async def serve(spool: Path, folders: Path, users: PasswordFile, tls: ssl.SSLContext,
                port: int = 143, until: Callable[[int], Awaitable[None]] = forever) -> None:
    """Each user's INBOX is ``spool/<user>``, the other folders under ``folders/<user>``;
    served on ``port`` until ``until(bound port)`` returns."""
    stores: dict[str, MboxStore] = {}  # one store per user, for every session of theirs

    async def store_for(user: str) -> Store:
        if user not in stores:
            name = safe_name(user)  # no user name can reach outside its folder
            stores[user] = MboxStore(folders / name, inbox=spool / name)
        return stores[user]

    server = store_imap_server(users, store_for, ssl_context=tls)
    await server.start("127.0.0.1", port)
    try:
        await until(server.port)
    finally:
        await server.close()
        for store in stores.values():
            store.close()


def read_and_delete(port: int, tls: ssl.SSLContext) -> None:
    """What a mail client does: STARTTLS, LOGIN, SELECT, FETCH (BODY[TEXT] sets
    \\Seen), STORE, EXPUNGE."""
    with imaplib.IMAP4("127.0.0.1", port, timeout=10) as imap:
        imap.starttls(tls)
        imap.login("alice", "wonderland")
        print("SELECT INBOX:", imap.select("INBOX"))
        for item in imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY[TEXT])")[1]:
            if isinstance(item, tuple):
                print("FETCH:", item[1])
        imap.store("1", "+FLAGS", "(\\Deleted)")
        print("EXPUNGE:", imap.expunge())
        imap.logout()


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "spool").mkdir()
        (root / "spool" / "alice").write_bytes(SPOOL)
        certificate = make_self_signed(["localhost"])
        with PasswordFile(root / "users", scrypt_n=2**10) as users:
            users.set_password("alice", "wonderland")

            async def client(port: int) -> None:
                await asyncio.to_thread(read_and_delete, port, certificate.client_context())

            await serve(root / "spool", root / "mail", users, certificate.server_context(),
                        port=0, until=client)
        print("the spool now:")
        print((root / "spool" / "alice").read_text(), end="")


if __name__ == "__main__":
    asyncio.run(main())
