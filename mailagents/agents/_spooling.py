"""An :class:`~mailagents.aio.SMTPHandler` base that spools each message as it arrives
(:class:`~mailagents.delivery.MessageSpool`: in memory while small, in a temporary file
above a size) instead of collecting it whole in :attr:`~mailagents.aio.Session.message`.
The MSA and the LMTP server stand on it."""

from __future__ import annotations

import os

from mailagents.aio import Session, SMTPHandler
from mailagents.delivery import MEMORY_LIMIT, Message, MessageSpool

__all__ = ["SpoolingHandler"]

_KEY = "mailagents.spool"


class SpoolingHandler(SMTPHandler):
    """Spools each message's content (``memory_limit`` octets in memory, the rest in an
    unnamed file in ``spool_directory``); :meth:`take_message` gives it to
    ``on_message``, which must close it."""

    def __init__(
        self,
        *,
        memory_limit: int = MEMORY_LIMIT,
        spool_directory: str | os.PathLike[str] | None = None,
    ) -> None:
        self.memory_limit = memory_limit
        self.spool_directory = spool_directory

    async def on_data_chunk(self, session: Session, data: bytes) -> None:
        """Into the session's spool (made at the first chunk)."""
        spool = session.data.get(_KEY)
        if spool is None:
            spool = session.data[_KEY] = MessageSpool(
                memory_limit=self.memory_limit, directory=self.spool_directory
            )
        spool.write(data)

    async def on_reset(self, session: Session) -> None:
        """The transaction was abandoned: the spool is thrown away."""
        spool = session.data.pop(_KEY, None)
        if spool is not None:
            spool.discard()

    def take_message(self, session: Session) -> Message:
        """The message spooled for the transaction that just ended (the caller closes
        it)."""
        spool = session.data.pop(_KEY, None)
        return spool.finish() if spool is not None else Message.from_bytes(b"")
