"""The application's side of the asyncio IMAP server: :class:`IMAPHandler`, which
the application subclasses, and :class:`IMAPSession`, what the server knows of one
client connection (see ``mailagents.aio.imap``)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from typing import Any, Protocol

from mailagents import sasl
from mailagents.imap._commands import Command
from mailagents.imap._events import (
    AppendChunk,
    AppendEnd,
    AppendRequested,
    AppendStart,
    Complete,
    Continue,
    Greeting,
)
from mailagents.imap._frame import Frame
from mailagents.imap._responses import Response
from mailagents.imap._server import ServerConnection

__all__ = ["IMAPHandler", "IMAPSession", "SessionLink"]


class SessionLink(Protocol):
    """What an :class:`IMAPSession` needs of its connection."""

    core: ServerConnection | None

    def wake(self) -> None:
        """Have the session loop look at the store."""

    async def send_untagged(
        self, response: Response | Frame, literals: Sequence[AsyncIterable[bytes]]
    ) -> None:
        """Send one untagged response and its streamed literals."""


class IMAPSession:
    """What the server knows about one client connection, passed to every handler call.

    The adapter keeps ``tls``, ``identity`` and ``mechanism`` up to date; ``data``
    belongs to the handler (the user's store, the selected folder). :meth:`send` puts
    an untagged response out for the command in progress; :meth:`wake` (for a folder
    watch's callback) has the session call :meth:`IMAPHandler.on_wake` and send what
    changed."""

    def __init__(self, peer: tuple[Any, ...], connection: SessionLink) -> None:
        self.peer = peer
        """The client's socket address (see ``POP3Session.peer``)."""
        self.tls = False
        """The session runs over TLS (implicit TLS, or after STARTTLS)."""
        self.identity: str | None = None
        """The authenticated identity once logged in, else ``None``."""
        self.mechanism: str | None = None
        """``"LOGIN"`` or the SASL mechanism the client logged in with."""
        self.data: dict[str, Any] = {}
        """Free for the handler's own per-session state."""
        self._connection = connection

    @property
    def core(self) -> ServerConnection:
        """The session's ``ServerConnection``: its ``mailbox`` view, ``enabled`` set and
        ``state`` (answers go through :meth:`send` and the handler's return values)."""
        core = self._connection.core
        assert core is not None
        return core

    def wake(self) -> None:
        """Something changed in the store: call :meth:`IMAPHandler.on_wake` and send the
        updates the core allows now (in IDLE at once). Safe to call any number of times
        from the loop's thread."""
        self._connection.wake()

    def end(self, text: str) -> None:
        """End the session now with ``* BYE text`` (RFC 9051 §7.1.5: the server closes
        the connection at once), for instance when the selected mailbox was deleted or
        renamed away by another program (RFC 2180 §3). What the core had queued goes
        out first; the command in progress gets no tagged answer."""
        self.core.shutdown(text)

    async def send(
        self, response: Response | Frame, literals: Sequence[AsyncIterable[bytes]] = ()
    ) -> None:
        """Send one untagged response for the command in progress: a response object
        (written by the core for the session) or a frame. Each ``Streamed`` literal in
        it, in order, takes its octets from the matching item of ``literals``, exactly
        its announced size; the client's slowness holds this call (back-pressure)."""
        await self._connection.send_untagged(response, literals)


class IMAPHandler:
    """The application's mailboxes: subclass it and override the calls you need.

    Every method is a coroutine called by the server for one session, with the
    client's clock stopped. The defaults know no user and refuse every mailbox
    command with ``NO``. An exception raised by a decision method is logged and
    answered ``NO [SERVERBUG]``; one raised while a literal streams closes the
    connection (the client must never take a cut literal as whole)."""

    async def on_connect(self, session: IMAPSession) -> Greeting:
        """The greeting (RFC 9051 §7.1): ``OK`` by default; ``PREAUTH`` for a
        pre-authenticated connection, ``BYE`` to refuse."""
        return Greeting()

    async def on_credentials(
        self, session: IMAPSession, request: sasl.NeedCredentials
    ) -> sasl.Answer:
        """LOGIN or AUTHENTICATE: look the user up. LOGIN asks as PLAIN does
        (``request.password`` is set): answer a ``PasswordVerdict``; SCRAM wants
        ``ScramSecrets``. ``NoSuchUser`` (the default) fails the login;
        ``mailagents.userdb.UserStore.answer_async`` answers all of these."""
        return sasl.NoSuchUser()

    async def on_login(self, session: IMAPSession) -> None:
        """The client logged in as ``session.identity`` (open the user's store)."""

    async def on_command(self, session: IMAPSession, command: Command) -> Complete:
        """A command for the application (everything the core does not answer itself,
        see ``CommandReceived``): send untagged responses with
        :meth:`IMAPSession.send`, tell the view ``session.core.mailbox`` what changed,
        and return the tagged :class:`~mailagents.imap.Complete`."""
        return Complete(status="NO", text="Not available")

    async def on_append_requested(
        self, session: IMAPSession, event: AppendRequested
    ) -> Continue | Complete:
        """With ``ServerConfig.confirm_append``: a synchronising APPEND literal was
        announced. ``Continue`` lets it come; a NO ``Complete`` (``TRYCREATE``,
        ``TOOBIG``, ``OVERQUOTA``) ends the command first."""
        return Continue()

    async def on_append_start(self, session: IMAPSession, event: AppendStart) -> None:
        """An APPEND message begins (its chunks follow, then :meth:`on_append_end`,
        then :meth:`on_command` with the ``Append`` command)."""

    async def on_append_chunk(self, session: IMAPSession, event: AppendChunk) -> None:
        """Octets of the APPEND message being received."""

    async def on_append_end(self, session: IMAPSession, event: AppendEnd) -> None:
        """The APPEND message is complete."""

    async def on_idle(self, session: IMAPSession, idling: bool) -> None:
        """IDLE began (``idling`` true) or ended (RFC 2177)."""

    async def on_wake(self, session: IMAPSession) -> None:
        """After :meth:`IMAPSession.wake`: read the store's changes and tell them to the
        view ``session.core.mailbox``; the server then sends what may go out."""

    async def on_close(self, session: IMAPSession) -> None:
        """The session ended, however it ended: release what it held. Always called
        once per served session."""
