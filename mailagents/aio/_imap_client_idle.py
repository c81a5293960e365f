"""IDLE for :class:`mailagents.aio.IMAPClient` (RFC 2177): the async context manager
:meth:`IMAPClient.idle <mailagents.aio.IMAPClient.idle>` returns, renewing IDLE before
the server's inactivity time-out. Split from :mod:`mailagents.aio.imap_client`, whose
session internals it drives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING

from mailagents.aio._imap_client_errors import IMAPCommandError
from mailagents.imap._client_events import Completed, IdleStarted
from mailagents.imap._responses import Response

if TYPE_CHECKING:
    from mailagents.aio.imap_client import IMAPClient

__all__ = ["IMAPIdle"]


class IMAPIdle:
    """What :meth:`IMAPClient.idle` returns: an async context manager whose value is
    an async iterator of untagged responses (see there)."""

    def __init__(self, client: IMAPClient) -> None:
        self._client = client
        self._tag: str | None = None
        self._queue: asyncio.Queue[Response] = asyncio.Queue()

    async def __aenter__(self) -> AsyncIterator[Response]:
        client = self._client
        await client._lock.acquire()
        try:
            await self._begin()
        except BaseException:
            client._lock.release()
            raise
        return self._iterate()

    async def _begin(self) -> None:
        client = self._client
        client._updates = self._queue
        self._tag = tag = client._core.idle()
        while True:
            event = await client._event(None)
            if isinstance(event, IdleStarted):
                return
            if isinstance(event, Completed) and event.tag == tag:
                self._tag = None
                raise IMAPCommandError("IDLE", event.response)
            await client._dispatch(event)

    async def _iterate(self) -> AsyncIterator[Response]:
        client = self._client
        loop = asyncio.get_running_loop()
        deadline = loop.time() + client._timeouts.idle
        while True:
            if not self._queue.empty():
                yield self._queue.get_nowait()
                continue
            event = await client._idle_event(deadline)
            if event is None:
                # RFC 2177 §3: renew IDLE before the server's inactivity time-out.
                await self._end()
                await self._begin()
                deadline = loop.time() + client._timeouts.idle
                continue
            if isinstance(event, Completed) and event.tag == self._tag:
                self._tag = None
                if not event.ok:
                    raise IMAPCommandError("IDLE", event.response)
                return  # the server ended IDLE
            await client._dispatch(event)

    async def _end(self) -> None:
        client = self._client
        tag = self._tag
        if tag is None or client.closed:
            return
        client._core.idle_done()
        self._tag = None
        done = await client._until_done(tag)
        if not done.ok:
            raise IMAPCommandError("IDLE", done.response)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client = self._client
        try:
            if exc_type is None or not client.closed:
                await self._end()
        finally:
            client._updates = None
            client._lock.release()
        while not self._queue.empty():
            await client._notify(self._queue.get_nowait())
