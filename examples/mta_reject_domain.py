"""An MTA that takes no mail for one domain, in under fifteen lines: a policy hook.

Those lines are ``NO_MAIL``, ``RejectDomain`` and ``make_mta()`` (and the three imports
they need). ``RejectDomain`` is the MTA's usual
:class:`~mailagents.agents.RelayPolicy` (local domains, the clients that may relay,
never an open relay) with one rule in front: a recipient at ``blocked.example`` is
refused at ``RCPT`` with 550 5.7.1, whoever the client is, so that no message for it
enters the queue. The same subclass could refuse by the client's address (``peer`` in
``client``), by its authenticated ``identity``, or a domain's subdomains too
(``domain.endswith(".blocked.example")``). ``make_mta()`` is the MTA for
``example.test`` with that policy: local mail to ``deliver``, relaying (by MX lookup)
for clients on 127.0.0.0/8. In a program of your own::

    with closing(MaildirDelivery("mail/{user}/Maildir")) as mda:
        async with make_mta("spool/queue", mda) as mta:
            await mta.serve("0.0.0.0", 25)
            await asyncio.Event().wait()

The rest is a demonstration that stops by itself: ``python
examples/mta_reject_domain.py`` serves on a free port in a temporary folder, sends one
message to alice@example.test and carol@blocked.example with smtplib (alice gets it,
carol's address is refused), shows that another domain is still relayed, and prints
what happened.
"""

from __future__ import annotations

import asyncio
import smtplib
import tempfile
import time
from contextlib import closing
from pathlib import Path as FilePath
from typing import Any

from mailagents.agents import MTA, Deliver, MaildirDelivery, Refused, RelayDecision, RelayPolicy
from mailagents.smtp import Path, Reply

NO_MAIL = Reply(code=550, enhanced="5.7.1", lines=("We take no mail for blocked.example",))


class RejectDomain(RelayPolicy):
    def classify(self, path: Path, **client: Any) -> RelayDecision:
        if path.mailbox is not None and path.mailbox.domain.lower() == "blocked.example":
            return Refused(reply=NO_MAIL, reason="relay-denied")
        return super().classify(path, **client)  # the usual rules for everyone else


def make_mta(queue: str, deliver: Deliver) -> MTA:
    policy = RejectDomain(local_domains={"example.test"}, relay_networks=["127.0.0.0/8"])
    return MTA("mx.example.test", local_domains={"example.test"}, policy=policy,
               deliver=deliver, queue=queue)


def send(port: int, root: FilePath) -> None:
    """What a client does: one message for two recipients, then a relay check."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        message = "From: bob@example.org\r\nSubject: Hello\r\n\r\nHi!\r\n"
        refused = smtp.sendmail(
            "bob@example.org", ["alice@example.test", "carol@blocked.example"], message
        )
        print("refused:", refused)
        smtp.mail("bob@example.org")
        print("RCPT dave@elsewhere.example:", smtp.rcpt("dave@elsewhere.example"))
        smtp.rset()  # not sent: relaying would look the domain's MX up
    new = root / "alice@example.test" / "Maildir" / "new"
    deadline = time.monotonic() + 20  # the queue hands the message on at once
    while not (new.is_dir() and any(new.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    for copy in sorted(new.iterdir()):
        subject = [line for line in copy.read_text().splitlines() if line.startswith("Subj")]
        print("alice got:", subject)


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = FilePath(folder)
        with closing(MaildirDelivery(str(root / "{user}" / "Maildir"))) as mda:
            async with make_mta(str(root / "queue"), mda) as mta:
                await mta.serve("127.0.0.1", 0)
                await asyncio.to_thread(send, mta.port, root)


if __name__ == "__main__":
    asyncio.run(main())
