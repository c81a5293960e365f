"""What the SMTP client sends: the bytes of an :class:`email.message.Message` with its
envelope from the headers, and a spooled :class:`mailagents.delivery.Message` read in
pieces (never whole) for the core's streaming mode."""

from __future__ import annotations

import asyncio
import copy
import email.utils
from collections.abc import Iterator, Sequence
from email.generator import BytesGenerator
from email.message import Message
from email.policy import EmailPolicy
from io import BytesIO

from mailagents import delivery
from mailagents.smtp import Mailbox, Path

__all__ = ["READ_SIZE", "Address", "Pieces", "eight_bit", "from_message"]

READ_SIZE = 1 << 16
"""Octets read from a spool file at a time (one ``os.pread``)."""

Address = str | Mailbox | Path
"""An address as the core takes it: ``"a@b.example"``, ``"<a@b.example>"``, a
:class:`~mailagents.smtp.Mailbox` or a :class:`~mailagents.smtp.Path`."""


def _has_eight_bit(message: delivery.Message) -> bool:
    return not all(piece.isascii() for piece in message.chunks(READ_SIZE))


async def eight_bit(message: delivery.Message) -> bool:
    """Whether ``message`` has an octet above 127, read piece by piece (in a worker
    thread when it is in a spool file: the reads block)."""
    if message.in_memory:
        return _has_eight_bit(message)
    return await asyncio.get_running_loop().run_in_executor(None, _has_eight_bit, message)


class Pieces:
    """The pieces of ``message``, :data:`READ_SIZE` octets at a time, each read from
    a spool file in a worker thread (so that a slow disk does not stall the loop)."""

    def __init__(self, message: delivery.Message) -> None:
        self._iterator: Iterator[bytes] = message.chunks(READ_SIZE)
        self._threaded = not message.in_memory

    async def next(self) -> bytes | None:
        """The next piece, or ``None`` after the last one."""
        if not self._threaded:
            # Let the loop run between pieces: replies that came (a refused BDAT
            # chunk) are seen, and other sessions get their turn.
            await asyncio.sleep(0)
            return next(self._iterator, None)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, next, self._iterator, None)

    def close(self) -> None:
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()


def from_message(
    message: Message, sender: Address | None, recipients: Sequence[Address] | None
) -> tuple[Address, Sequence[Address], bytes]:
    """The envelope from the headers (when not given) and the bytes to send."""
    resent = message.get_all("Resent-Date")
    if resent is None:
        prefix = ""
    elif len(resent) == 1:
        prefix = "Resent-"
    else:
        raise ValueError("the message has more than one Resent- header block")
    if sender is None:
        header = message.get(prefix + "Sender") or message.get(prefix + "From")
        if header is None:
            raise ValueError(f"the message has no {prefix}Sender or {prefix}From header")
        found = [addr for _, addr in email.utils.getaddresses([str(header)]) if addr]
        if not found:
            raise ValueError(f"no address in {prefix}From: {header}")
        sender = found[0]
    if recipients is None:
        values = [
            str(value)
            for name in ("To", "Cc", "Bcc")
            for value in message.get_all(prefix + name, [])
        ]
        recipients = [addr for _, addr in email.utils.getaddresses(values) if addr]
    stripped = copy.copy(message)
    del stripped["Bcc"]
    del stripped["Resent-Bcc"]
    international = any(
        not str(a).isascii() for a in [sender, *recipients]
    )
    policy = message.policy
    if international and isinstance(policy, EmailPolicy):
        policy = policy.clone(utf8=True)
    buffer = BytesIO()
    BytesGenerator(buffer, policy=policy).flatten(stripped, linesep="\r\n")
    return sender, recipients, buffer.getvalue()
