"""An MDA that files mail by plus-address: alice+lists@example.test goes into alice's
folder ``lists``.

Nothing needs writing for it: :class:`~mailagents.agents.LocalRecipients` splits an
address extension at its ``delimiter`` (``"+"`` by default; ``"-"`` as qmail does;
``""`` turns it off), and the :class:`~mailagents.agents.MDA` delivers into the folder
the extension names when the user has one, else into INBOX. So mail for
``alice+lists@`` lands in ``lists`` once alice has made that folder (with her mail
client over IMAP, or ``MaildirStore.create_folder``), and mail for an extension with no
folder (``alice+shop@``) still reaches her INBOX, never a bounce. Folders are never
made from an address: anyone could fill a mailbox with folders by writing to
``alice+anything@``. The whole address is looked up first (an alias or user
``alice+lists`` wins), and ``Delivered-To:`` names ``alice@example.test``.

The same table and MDA serve SMTP (the MTA's ``deliver``), LMTP
(:class:`~mailagents.agents.LMTPServer`) and ``python -m mailagents deliver --users
FILE -d alice+lists@example.test`` (with alice in FILE; without ``--users`` each ``-d``
names a user of its own). ``python examples/mda_plus_address.py`` shows it in a
temporary folder: the recipient check, where three messages go, and alice's folders
afterwards; it stops by itself.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from mailagents.agents import MDA, LocalRecipients
from mailagents.delivery import Handoff, Message
from mailagents.smtp import Envelope, MailParameters, Recipient, parse_mailbox
from mailagents.smtp import Path as SMTPPath
from mailagents.store import MaildirStore


def handoff(number: int, to: str) -> Handoff:
    """A message for one recipient, as an MTA or an LMTP server hands it over."""
    message = Message.from_bytes(
        f"From: news@example.org\r\nTo: {to}\r\nSubject: number {number}\r\n\r\nHi.\r\n".encode()
    )
    envelope = Envelope(mail_from=SMTPPath(parse_mailbox("news@example.org")),
                        mail_parameters=MailParameters(), size=message.size,
                        recipients=(Recipient(path=SMTPPath(parse_mailbox(to))),))
    return Handoff(id=f"demo{number}", envelope=envelope, message=message)


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        recipients = LocalRecipients(["alice"], {"postmaster": ["alice"]},
                                     local_domains={"example.test"}, delimiter="+")
        with MaildirStore(root / "alice" / "Maildir") as store:
            store.create_folder("lists")  # alice's client made it
        print(recipients.resolve(parse_mailbox("alice+lists@example.test")))
        mda = MDA(str(root / "{user}" / "Maildir"), recipients)
        try:
            for address in ("bob+lists@example.test", "alice+lists@example.test"):
                reply = await mda.check_recipient(parse_mailbox(address))
                answer = f"{reply.code} {reply.enhanced} {reply.text}" if reply else "accepted"
                print(f"RCPT {address}: {answer}")
            for number, to in enumerate(("alice+lists@example.test",
                                         "alice+shop@example.test", "alice@example.test"), 1):
                [result] = await mda(handoff(number, to))
                print(f"{to}: {result.status} into {result.location}")
        finally:
            await mda.aclose()
        with MaildirStore(root / "alice" / "Maildir") as store:
            for info in store.folders():
                with store.folder(info.name) as box:
                    subjects = [
                        line.decode() for m in box.messages()
                        for line in box.read_message(m.uid).splitlines()
                        if line.startswith(b"Subject:")
                    ]
                print(f"{info.name}: {subjects}")


if __name__ == "__main__":
    asyncio.run(main())
