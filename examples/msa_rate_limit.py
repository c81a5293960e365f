"""An MSA with a sending rate limit per authenticated user.

``RateLimit`` is the MSA's ``check_mail`` hook (see
:data:`mailagents.agents.msa.CheckMail`): an async callable the MSA calls at each
``MAIL FROM``, once the client has authenticated and the sender is known to be its
own. It lets each user start ``limit`` messages in any ``window`` seconds (a sliding
window) and answers the next one with a temporary failure at ``MAIL``::

    451 4.7.0 Sending rate limit reached for alice@example.test: 3 messages in 60 s,
        try again in 42 s

so that the client keeps the message and tries again later; nothing is lost and the
session goes on. 451 because RFC 5321 §4.3.2 lists it among the replies to ``MAIL``
(450 is not), and X.7.0 because it is a policy refusal that may succeed later (RFC
3463 §3.8; X.7.1 is meant for permanent refusals). Each ``MAIL`` accepted counts, as
Postfix's anvil counts message delivery requests; one refused does not. In a program
of your own::

    async with MSA("mail.example.test", PasswordFile("users"), local_domains={"example.test"},
                   ssl_context=tls, check_mail=RateLimit(limit=100, window=3600)) as msa:
        await msa.serve(submission_port=587, submissions_port=465)
        await asyncio.Event().wait()

The rest is a demonstration that stops by itself: ``python examples/msa_rate_limit.py``
runs the MSA on a free port in a temporary folder with a limit of 3 messages a minute,
a user ``alice@example.test`` and a self-signed certificate, submits 4 messages over
STARTTLS with smtplib, and prints what became of each.
"""

from __future__ import annotations

import asyncio
import collections
import math
import smtplib
import ssl
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from mailagents.agents import MSA, MaildirDelivery
from mailagents.aio import Session, make_self_signed
from mailagents.smtp import MailFrom, Reply
from mailagents.userdb import PasswordFile


class RateLimit:
    """At most ``limit`` messages per user in any ``window`` seconds (``clock`` gives
    the time in seconds; a monotonic clock by default)."""

    def __init__(self, limit: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be at least 1 and window positive")
        self.limit, self.window, self.clock = limit, window, clock
        self.started: dict[str, collections.deque[float]] = {}
        """Each user's messages started within the window: when, oldest first."""

    async def __call__(self, session: Session, event: MailFrom) -> Reply | None:
        user = (session.identity or "").lower()  # never None: MAIL needs AUTH here
        now = self.clock()
        started = self.started.setdefault(user, collections.deque())
        while started and started[0] <= now - self.window:
            started.popleft()  # out of the window
        if len(started) >= self.limit:
            wait = math.ceil(started[0] + self.window - now)
            return Reply(code=451, enhanced="4.7.0", lines=(
                f"Sending rate limit reached for {user}: {self.limit} messages in "
                f"{self.window:g} s, try again in {wait} s",))
        started.append(now)
        return None


def submit(port: int, tls: ssl.SSLContext) -> None:
    """What a mail client does: STARTTLS, AUTH, and four messages."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.starttls(context=tls)
        smtp.login("alice@example.test", "wonderland")
        for number in range(1, 5):
            message = f"From: alice@example.test\r\nSubject: number {number}\r\n\r\nHi.\r\n"
            try:
                smtp.sendmail("alice@example.test", ["bob@example.test"], message)
                print(f"message {number}: accepted")
            except smtplib.SMTPSenderRefused as refused:
                print(f"message {number}: refused at MAIL:", refused.smtp_code,
                      refused.smtp_error.decode())


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        users = PasswordFile(root / "users", scrypt_n=2**10)
        users.set_password("alice@example.test", "wonderland")
        certificate = make_self_signed(["localhost"])
        with users, closing(MaildirDelivery(str(root / "{user}" / "Maildir"))) as mda:
            async with MSA("mail.example.test", users, mda, local_domains={"example.test"},
                           ssl_context=certificate.server_context(),
                           check_mail=RateLimit(limit=3, window=60)) as msa:
                await msa.serve("127.0.0.1", 0, None)
                await asyncio.to_thread(submit, msa.submission_port,
                                        certificate.client_context())
        inbox = root / "bob@example.test" / "Maildir" / "new"
        print("bob's new mail:", len(list(inbox.iterdir())), "messages")


if __name__ == "__main__":
    asyncio.run(main())
