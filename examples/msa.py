"""Run an MSA in ten lines: authenticated submission (RFC 6409) into local Maildirs.

Add a user first (``python -m mailagents passwd users alice@example.test``), run
``python examples/msa.py``, then submit over STARTTLS on port 10587 or implicit TLS on
10465 as that user; the message lands in ``mail/alice@example.test/Maildir/new/``.
The certificate here is a fresh self-signed one: use ``server_context(cert, key)`` with
a real one, and ports 587 and 465, in production.
"""

import asyncio
import contextlib

from mailagents.agents import MSA
from mailagents.aio import make_self_signed
from mailagents.userdb import PasswordFile


async def main(submission_port: int = 10587, submissions_port: int = 10465) -> None:
    users = PasswordFile("users")
    tls = make_self_signed(["localhost"]).server_context()
    async with MSA("localhost", users, local_domains={"example.test"}, ssl_context=tls) as msa:
        await msa.serve("127.0.0.1", submission_port, submissions_port)
        print(f"MSA on ports {msa.submission_port} and {msa.submissions_port}", flush=True)
        await asyncio.Event().wait()  # until Ctrl-C


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
