"""Run an MTA in a dozen lines: SMTP on port 2525 for example.test, a durable queue in
``spool/queue``, local delivery into ``mail/{user}`` Maildirs, and relaying (by MX
lookup, with retries and bounces) for clients on this host.

Run ``python examples/mta.py``, then send to alice@example.test (or through it, from
127.0.0.1, to any domain): ``swaks --server 127.0.0.1:2525 --to alice@example.test``.
``python -m mailagents queue --queue spool/queue list`` shows what waits.
"""

import asyncio
import contextlib

from mailagents.agents import MDA, MTA, LocalRecipients


async def main(port: int = 2525) -> None:
    users = {"alice@example.test", "postmaster@example.test"}
    mda = MDA("mail/{user}", LocalRecipients(users, local_domains={"example.test"}))
    async with MTA("mx.example.test", local_domains={"example.test"}, deliver=mda,
                   queue="spool/queue", relay_networks=["127.0.0.0/8", "::1/128"]) as mta:
        await mta.serve("127.0.0.1", port)
        print(f"MTA on port {mta.port}", flush=True)
        await asyncio.Event().wait()  # until Ctrl-C


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
