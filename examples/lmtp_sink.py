"""An LMTP sink for Postfix: every message Postfix hands over is printed, not stored.

Point Postfix's delivery at it in ``main.cf`` (then ``postfix reload``)::

    # local(8)'s users (mydestination):
    mailbox_transport = lmtp:inet:127.0.0.1:2424
    # or the users of virtual mailbox domains:
    virtual_transport = lmtp:inet:127.0.0.1:2424

and run ``python examples/lmtp_sink.py`` (``--port``, ``--host``). Each message is
printed (envelope, size, header section) and every recipient answered ``250`` on its
own after the data (RFC 2033 §4.2), so Postfix logs ``status=sent`` for each; useful
to see what a Postfix setup delivers, in a test or while moving mail hosts. It stops
on Ctrl-C or SIGTERM, or with ``--max-messages N`` after N messages (a test uses that).

:class:`~mailagents.agents.LMTPServer` does the protocol (LHLO, one reply per
recipient, the ``Received:`` field, a spool for large messages); ``sink`` is its
delivery callable (a :data:`~mailagents.delivery.Deliver`). To store the mail
instead, give it an :class:`~mailagents.agents.MDA`, as ``python -m mailagents lmtp``
does; the LMTP server also listens on a Unix socket (``serve_unix``, for
``lmtp:unix:/path``). LMTP has no AUTH: listen on loopback or a socket only Postfix
may open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from mailagents.agents import LMTPServer
from mailagents.delivery import Handoff, RecipientResult


class Sink:
    """Prints each message and says every recipient got it; ``done`` is set after
    ``max_messages`` messages (``None``: never)."""

    def __init__(self, max_messages: int | None = None) -> None:
        self.max_messages = max_messages
        self.count = 0
        self.done = asyncio.Event()

    async def __call__(self, handoff: Handoff) -> list[RecipientResult]:
        envelope, message = handoff.envelope, handoff.message
        self.count += 1
        print(f"--- message {self.count} from {envelope.mail_from} to "
              f"{', '.join(str(r.path) for r in envelope.recipients)}, {message.size} octets")
        print(message.header.decode("utf-8", "replace").rstrip("\r\n").replace("\r\n", "\n"),
              flush=True)
        if self.count == self.max_messages:
            self.done.set()
        return [RecipientResult.ok(recipient) for recipient in envelope.recipients]


async def main(host: str, port: int, max_messages: int | None) -> None:
    sink = Sink(max_messages)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, sink.done.set)
    async with LMTPServer("sink.example.test", sink) as lmtp:
        await lmtp.serve(host, port)
        print(f"LMTP sink on {host}:{lmtp.port}", flush=True)
        await sink.done.wait()
    print(f"stopped after {sink.count} message(s)", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="An LMTP server that prints each message.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2424, help="0: a free one (printed)")
    parser.add_argument("--max-messages", type=int, metavar="N", help="stop after N")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.host, args.port, args.max_messages))
