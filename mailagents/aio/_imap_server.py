"""One IMAP client connection of the asyncio server: the session loop over
``StreamSession`` that feeds ``ServerConnection`` and answers its events through the
application's ``IMAPHandler`` (see ``mailagents.aio.imap``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Awaitable, Sequence
from typing import TYPE_CHECKING, TypeVar

from mailagents import sasl
from mailagents._protocol import NEED_DATA, PAUSED, LocalProtocolError, RemoteProtocolError
from mailagents.aio._codec import DeflateCodec
from mailagents.aio._imap_server_handler import IMAPSession
from mailagents.aio._listener import Listener, Refusal
from mailagents.aio._session import WOKEN, StreamSession
from mailagents.imap._commands import Command
from mailagents.imap._events import (
    AppendChunk,
    AppendEnd,
    AppendRequested,
    AppendStart,
    Authenticated,
    AuthenticationFailed,
    CommandReceived,
    CommandRejected,
    Complete,
    CompressionStarted,
    ConnectionClosed,
    Continue,
    Greeting,
    IdleEnded,
    IdleStarted,
    LiteralData,
    StartTLS,
    Untagged,
)
from mailagents.imap._frame import Frame
from mailagents.imap._responses import Response
from mailagents.imap._server import ServerConnection
from mailagents.imap._state import State

if TYPE_CHECKING:
    from mailagents.aio.imap import IMAPServer

__all__ = ["IMAPConnection"]

log = logging.getLogger("mailagents.aio.imap")

_T = TypeVar("_T")

_REFUSALS: dict[Refusal, str] = {
    "connections": "Too many connections, try again later",
    "address": "Too many connections from your address, try again later",
    "shutdown": "Service shutting down",
}
_GATHER = 64 * 1024
"""Untagged responses are written once this many octets are pending (or with the
command's tagged answer)."""
_SERVERBUG = Complete(status="NO", code="SERVERBUG", text="Internal error")


class IMAPConnection(StreamSession):
    """One IMAP client connection: the session loop over ``StreamSession``."""

    def __init__(self, server: IMAPServer, listener: Listener, loop: asyncio.AbstractEventLoop):
        super().__init__(listener, loop)
        self.state_timeouts = server.state_timeouts
        self._server = server
        self.core: ServerConnection | None = None
        self.session: IMAPSession | None = None
        self._user: str | None = None

    # --- hooks -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.core = ServerConnection(self._server.config)
        self.session = IMAPSession(tuple(peer) if peer else (), self)
        self.session.tls = self._server.config.tls_active
        super().connection_made(transport)

    def begin(self) -> None:
        if self.session is not None:
            self.session.peer = self.peer
        self.set_state("before_login")

    def refuse(self, why: Refusal) -> None:
        self.core = None
        self.session = None
        core = ServerConnection(self._server.config)
        core.send(Greeting(kind="BYE", text=_REFUSALS[why]))
        self.write(core.data_to_send())

    def failed(self) -> None:
        if self.core is not None:
            self.core.shutdown("Internal error, closing connection")
            self.write(self.core.data_to_send())

    def at_boundary(self) -> bool:
        core = self.core
        return core is None or not core.paused

    async def _ask(self, call: Awaitable[_T], fallback: _T) -> _T:
        """A handler call with the client's clock stopped; its exception is logged and
        answered with ``fallback`` (a ``ConnectionError``, the client gone while the
        handler wrote to it, only at DEBUG: nothing failed on our side)."""
        paused = self.pause_clock()
        try:
            return await call
        except ConnectionError as exc:  # the client left while the handler wrote
            log.debug("IMAP handler %s: %s", getattr(call, "__qualname__", call), exc)
            return fallback
        except Exception:
            log.exception("IMAP handler %s failed", getattr(call, "__qualname__", call))
            return fallback
        finally:
            if paused:
                self.resume_clock()

    def _flush(self) -> None:
        core = self.core
        assert core is not None
        out = core.data_to_send()
        if out:
            self.write(out)

    def _track_state(self) -> None:
        core = self.core
        assert core is not None
        state = core.state
        if state in (State.IDLE_AUTHENTICATED, State.IDLE_SELECTED):
            self.set_state("idle")
        elif state in (State.AUTHENTICATED, State.SELECTED):
            self.set_state("after_login")
        elif state in (State.GREETING, State.NOT_AUTHENTICATED, State.AUTHENTICATING):
            self.set_state("before_login")

    async def send_untagged(
        self, response: Response | Frame, literals: Sequence[AsyncIterable[bytes]]
    ) -> None:
        core = self.core
        assert core is not None
        if isinstance(response, Frame):
            core.send(Untagged(frame=response))
        else:
            core.send(Untagged(response=response))
        for literal in literals:
            self.transferring()
            async for chunk in literal:
                if chunk:
                    core.send(LiteralData(data=chunk))
                    await self._gathered()
        await self._gathered()

    async def _gathered(self) -> None:
        """Write what the core holds once it is worth a write of its own (smaller
        untagged responses wait for the next ones, the tagged answer at the latest:
        one write for a FETCH of fifty headers instead of fifty), then wait while the
        client does not read; ``ConnectionError`` when it is gone."""
        core = self.core
        assert core is not None
        if core.pending >= _GATHER:
            self._flush()
        if not await self.drain():
            raise ConnectionError("the client is gone")

    # --- the session -----------------------------------------------------------------

    async def serve(self) -> None:
        """The session loop; the handler's ``on_close`` at the end."""
        session = self.session
        assert session is not None
        log.debug("IMAP session with %s started", session.peer)
        try:
            await self._serve()
        finally:
            if self._user is not None:
                self._server._left(self._user)
            try:
                await self._server.handler.on_close(session)
            except Exception:
                log.exception("IMAP handler on_close failed")
            log.debug("IMAP session with %s ended", session.peer)

    async def _serve(self) -> None:
        core = self.core
        session = self.session
        assert core is not None and session is not None
        handler = self._server.handler
        greeting = await self._ask(handler.on_connect(session), Greeting())
        try:
            core.send(greeting)
        except LocalProtocolError:
            log.exception("IMAP handler gave an invalid greeting: %r", greeting)
            core.send(Greeting())
        if greeting.kind == "PREAUTH":
            session.identity = greeting.identity
            if not await self._logged_in(greeting.identity or "", "PREAUTH"):
                return
        while True:
            try:
                event = core.next_event()
            except RemoteProtocolError:
                self._flush()
                return
            if event is NEED_DATA:
                self._track_state()
                out = core.data_to_send()
                if out:
                    self.write(out)
                    self.answered()
                if not await self.drain():
                    return
                data = await self.read_or_wake()
                if data is WOKEN:
                    await self._ask(handler.on_wake(session), None)
                    core.refresh()
                    continue
                if data is None:
                    if self.stopping == "timeout":
                        core.shutdown("Autologout; idle for too long")
                    elif self.stopping in ("shutdown", "drain"):
                        core.shutdown("Server shutting down")
                    self._flush()
                    return
                assert isinstance(data, bytes)
                core.receive_data(data)
                continue
            if event is PAUSED:  # pragma: no cover - every decision is answered inline
                raise RuntimeError("the IMAP core waits for a decision nobody made")
            if not await self._event(event):
                return

    async def _event(self, event: object) -> bool:
        """Answer one event; False when the session must end."""
        core = self.core
        session = self.session
        assert core is not None and session is not None
        handler = self._server.handler
        if isinstance(event, CommandReceived):
            return await self._command(event.command)
        if isinstance(event, sasl.NeedCredentials):
            answer = await self._ask(handler.on_credentials(session, event), sasl.NoSuchUser())
            try:
                core.send(answer)
            except LocalProtocolError:
                log.exception("IMAP handler gave an invalid credentials answer: %r", answer)
                core.send(sasl.NoSuchUser())
        elif isinstance(event, Authenticated):
            session.identity = event.identity
            session.mechanism = event.mechanism
            log.info("%s logged in as %s (%s)", session.peer, event.identity, event.mechanism)
            return await self._logged_in(event.identity, event.mechanism)
        elif isinstance(event, AuthenticationFailed):
            log.info("%s failed to log in (%s): %s", session.peer, event.mechanism, event.reason)
            if await self.login_failed():
                core.shutdown("Too many authentication failures")
                self._flush()
                return False
        elif isinstance(event, AppendRequested):
            decision = await self._ask(handler.on_append_requested(session, event), Continue())
            try:
                core.send(decision)
            except LocalProtocolError:
                log.exception("IMAP handler gave an invalid APPEND answer: %r", decision)
                core.send(Continue())
        elif isinstance(event, AppendStart):
            self.transferring()
            await self._ask(handler.on_append_start(session, event), None)
        elif isinstance(event, AppendChunk):
            await self._ask(handler.on_append_chunk(session, event), None)
        elif isinstance(event, AppendEnd):
            await self._ask(handler.on_append_end(session, event), None)
        elif isinstance(event, IdleStarted):
            self._flush()
            self.answered()
            await self._ask(handler.on_idle(session, True), None)
        elif isinstance(event, IdleEnded):
            await self._ask(handler.on_idle(session, False), None)
        elif isinstance(event, StartTLS):
            return await self._start_tls()
        elif isinstance(event, CompressionStarted):
            self._flush()  # the OK leaves uncompressed (RFC 4978 §3)
            # What the client sent right after the command is compressed already.
            self.install_codec(DeflateCodec(), core.compression_started())
        elif isinstance(event, ConnectionClosed):
            self._flush()
            return False
        elif isinstance(event, CommandRejected):
            log.debug("%s: rejected: %r", session.peer, event.response)
        return True

    async def _logged_in(self, identity: str, mechanism: str) -> bool:
        core = self.core
        session = self.session
        assert core is not None and session is not None
        if not self._server._joined(identity):
            log.info("%s: too many sessions for %s", session.peer, identity)
            core.shutdown("Too many sessions for this user")
            self._flush()
            return False
        self._user = identity
        self.set_state("after_login")
        await self._ask(self._server.handler.on_login(session), None)
        return True

    async def _command(self, command: Command) -> bool:
        core = self.core
        session = self.session
        assert core is not None and session is not None
        paused = self.pause_clock()
        try:
            decision = await self._server.handler.on_command(session, command)
        except ConnectionError:
            return False
        except Exception:
            log.exception("IMAP handler failed on %r", command)
            decision = _SERVERBUG
        finally:
            if paused:
                self.resume_clock()
        if core.state is State.LOGOUT:  # the handler ended the session (IMAPSession.end)
            self._flush()
            return False
        try:
            core.send(decision)
        except LocalProtocolError:
            log.exception("IMAP handler gave an invalid answer: %r", decision)
            try:
                core.send(_SERVERBUG)
            except LocalProtocolError:  # a literal cut short: the session cannot go on
                return False
        return True

    async def _start_tls(self) -> bool:
        core = self.core
        session = self.session
        context = self._server.ssl_context
        assert core is not None and session is not None and context is not None
        self._flush()
        self.answered()
        if not await self.start_tls(context):
            return False
        core.tls_started()
        session.tls = True
        return True
