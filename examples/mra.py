"""Fetch new mail from a remote IMAP account into a local Maildir, as fetchmail does.

    IMAP_HOST=imap.example.org IMAP_USER=alice IMAP_PASSWORD=secret \\
        python examples/mra.py

Each new message is written durably into ``mail/alice@example.test/Maildir`` (a
:class:`~mailagents.agents.MaildirDelivery`), then remembered in ``fetch-state/``; it
stays on the server (``after="keep"``; ``"delete"`` removes it once it is safe here).
TLS is implicit (port 993) and the certificate verified; ``IMAP_TLS=starttls`` uses
port 143 with STARTTLS required. Run it again: only what is new comes.
"""

import asyncio
import os

from mailagents.agents import MRA, Account, MaildirDelivery


async def main() -> None:
    env = os.environ
    account = Account(
        name="work", protocol="imap", host=env["IMAP_HOST"], user=env["IMAP_USER"],
        password=env["IMAP_PASSWORD"], port=int(env["IMAP_PORT"]) if "IMAP_PORT" in env else None,
        tls=env.get("IMAP_TLS", "implicit"),  # type: ignore[arg-type]
        recipients=("alice@example.test",), after="keep",
    )
    delivery = MaildirDelivery("mail/{user}/Maildir")
    try:
        for report in await MRA([account], delivery, state_dir="fetch-state").run_once():
            print(f"{report.account}: {len(report.fetched)} new, error: {report.error}")
    finally:
        delivery.close()


if __name__ == "__main__":
    asyncio.run(main())
