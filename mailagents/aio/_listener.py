"""The protocol-neutral side of every server adapter: the :class:`Listener` (listening
sockets, connection limits, graceful shutdown) and the pieces each of its sessions is
made of, one private module each:

- :mod:`~mailagents.aio._limits`: :class:`~mailagents.aio.ListenerLimits`, every limit
  and deadline, with defaults fit for a public server;
- :mod:`~mailagents.aio._throttle`: the failed-login throttle
  (:class:`~mailagents.aio.AuthThrottle`) and the source address a connection is
  counted under;
- :mod:`~mailagents.aio._session`: :class:`~mailagents.aio._session.StreamSession`,
  one client connection (transport callbacks, back-pressure, the login delay, the TLS
  upgrade, the session task);
- :mod:`~mailagents.aio._deadlines`: the client's deadlines (idle, command, transfer,
  send), which the session asks for the next one to arm its timer;
- :mod:`~mailagents.aio._input`: the bounded input buffer.

The SMTP and POP3 servers use it: a protocol adapter subclasses
:class:`~mailagents.aio._session.StreamSession` and writes only its session loop (read,
feed the core, answer the core's events, write); every reply (a refusal greeting, a
time-out, a shutdown) comes from the protocol core, never from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
import stat
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

from mailagents.aio._limits import ListenerLimits
from mailagents.aio._throttle import AuthThrottle

if TYPE_CHECKING:
    from mailagents.aio._session import StreamSession

__all__ = ["Listener", "Refusal"]

log = logging.getLogger(__name__)

Refusal = Literal["connections", "address", "shutdown"]
"""Why a new connection is refused: the global limit, the per-address limit, or the
listener is closing."""


def _user_id(owner: int | str) -> int:
    """A user name or id as a uid."""
    if isinstance(owner, int):
        return owner
    import pwd  # POSIX only, like Unix sockets

    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        if owner.isdigit():
            return int(owner)
        raise LookupError(f"no such user: {owner!r}") from None


def _group_id(group: int | str) -> int:
    """A group name or id as a gid."""
    if isinstance(group, int):
        return group
    import grp  # POSIX only, like Unix sockets

    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            return int(group)
        raise LookupError(f"no such group: {group!r}") from None


def _identity(path: str) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the socket file at ``path`` (not following a symbolic
    link), or ``None`` if there is none."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        return None
    return st.st_dev, st.st_ino


def _clear_stale(path: str) -> None:
    """Make room for a new socket at ``path``: remove a stale socket file (nobody
    listens on it); refuse anything else there (a regular file, a directory, a symbolic
    link) and a socket that a server still listens on."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(errno.EEXIST, "exists and is not a socket: refusing to replace it",
                              path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.setblocking(False)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        pass  # stale: nobody accepts there
    except BlockingIOError:
        # Its backlog is full: a live server.
        raise OSError(errno.EADDRINUSE, "a server listens on this socket", path) from None
    except OSError:
        pass  # cannot tell (permission denied): leave it to bind
    else:
        raise OSError(errno.EADDRINUSE, "a server listens on this socket", path)
    finally:
        probe.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class Listener:
    """Listening sockets (several addresses, IPv4 and IPv6, optional implicit TLS) and
    the sessions they accepted, within :class:`ListenerLimits`.

    ``session_factory`` makes the :class:`~mailagents.aio._session.StreamSession`
    subclass of the protocol for each connection."""

    def __init__(
        self,
        session_factory: Callable[[Listener, asyncio.AbstractEventLoop], StreamSession],
        limits: ListenerLimits | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        throttle: AuthThrottle | None = None,
        name: str = "server",
    ) -> None:
        self.limits = limits if limits is not None else ListenerLimits()
        """The limits of the listener and its sessions."""
        self.ssl_context = ssl_context
        """Every connection starts with a TLS handshake with this context (implicit
        TLS), unless ``None``."""
        self.throttle = throttle if throttle is not None else AuthThrottle(self.limits)
        """The failed-login throttle (shared by all sessions; can be shared between
        listeners)."""
        self.name = name
        """A name for the logs."""
        self.sessions: set[StreamSession] = set()
        """The sessions being served."""
        self._factory = session_factory
        self._per_address: dict[str, int] = {}
        self._server: asyncio.Server | None = None
        self._closing = False
        # The Unix socket listened on: its path, and the (st_dev, st_ino) of the file
        # this listener created there (removed on close if it is still that file).
        self._path: str | None = None
        self._inode: tuple[int, int] | None = None

    async def start(self, host: str | Sequence[str] = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host`` (one address or name, or several) and ``port``
        (``0``: an ephemeral port)."""
        if self._server is not None:
            raise RuntimeError("the listener is already started")
        loop = asyncio.get_running_loop()
        hosts = host if isinstance(host, str) else list(host)
        tls = self.ssl_context
        self._closing = False
        self._server = await loop.create_server(
            lambda: self._factory(self, loop),
            hosts,
            port,
            backlog=self.limits.backlog,
            ssl=tls,
            ssl_handshake_timeout=self.limits.tls_handshake_timeout if tls else None,
            reuse_address=True,
            reuse_port=self.limits.reuse_port or None,
        )
        for sock in self._server.sockets:
            log.info("%s listening on %s", self.name, sock.getsockname())

    async def start_unix(
        self,
        path: str | os.PathLike[str],
        *,
        mode: int = 0o660,
        owner: int | str | None = None,
        group: int | str | None = None,
    ) -> None:
        """Listen on the Unix socket ``path`` (as Postfix reaches an LMTP server), with
        the backlog and the implicit TLS of :meth:`start`.

        A stale socket file at ``path`` is replaced; anything else there (a regular
        file, a directory, a symbolic link, or a socket a server listens on) is left
        alone and an :exc:`OSError` raised (:exc:`FileExistsError` if not a socket).
        The new socket file gets permissions ``mode`` and, unless ``None``, the user
        ``owner`` and the group ``group`` (names or numeric ids; changing the owner
        takes root) before the first client can connect. :meth:`close` removes it
        (if it is still the file this listener made). Make it in a directory that only
        the server's user may write to, as Postfix's ``private/``: the file is changed
        by name."""
        if self._server is not None:
            raise RuntimeError("the listener is already started")
        name = os.fspath(path)
        if not isinstance(name, str) or not name or name.startswith("\0"):
            raise ValueError(f"not a file system path for a Unix socket: {name!r}")
        if not 0 <= mode <= 0o7777:
            raise ValueError(f"not a file mode: {mode:#o}")
        uid = -1 if owner is None else _user_id(owner)
        gid = -1 if group is None else _group_id(group)
        loop = asyncio.get_running_loop()
        tls = self.ssl_context
        _clear_stale(name)
        self._closing = False
        # Bound but not listening yet: a client is refused until the mode and owner are
        # set.
        server = await loop.create_unix_server(
            lambda: self._factory(self, loop),
            name,
            backlog=self.limits.backlog,
            ssl=tls,
            ssl_handshake_timeout=self.limits.tls_handshake_timeout if tls else None,
            start_serving=False,
        )
        inode = _identity(name)
        try:
            if inode is None:
                raise OSError(errno.ENOENT, "the socket file vanished after bind", name)
            if uid != -1 or gid != -1:
                os.chown(name, uid, gid, follow_symlinks=False)
            os.chmod(name, mode)
            if _identity(name) != inode:
                raise OSError(errno.EEXIST, "the socket file was replaced after bind", name)
            await server.start_serving()
        except BaseException:
            server.close()
            if inode is not None and _identity(name) == inode:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name)
            raise
        self._server = server
        self._path = name
        self._inode = inode
        log.info("%s listening on %s (mode %o)", self.name, name, mode)

    @property
    def path(self) -> str | None:
        """The path of the Unix socket listened on (``None`` when not listening on
        one)."""
        return self._path

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (empty when not listening)."""
        if self._server is None:
            return ()
        return tuple(self._server.sockets)

    def connections_from(self, address: str) -> int:
        """Sessions served now for a source address key."""
        return self._per_address.get(address, 0)

    def _admit(self, session: StreamSession) -> Refusal | None:
        limits = self.limits
        if self._closing:
            return "shutdown"
        if len(self.sessions) >= limits.max_connections:
            return "connections"
        count = self._per_address.get(session.address, 0)
        if count >= limits.max_connections_per_address:
            return "address"
        self._per_address[session.address] = count + 1
        self.sessions.add(session)
        return None

    def _release(self, session: StreamSession) -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            count = self._per_address.get(session.address, 0) - 1
            if count > 0:
                self._per_address[session.address] = count
            else:
                self._per_address.pop(session.address, None)

    async def close(self, grace: float | None = None) -> None:
        """Stop listening; let sessions finish what they are doing for ``grace`` seconds
        (default ``limits.shutdown_grace``): each ends with the protocol's shutdown reply
        at its next transaction boundary. Then the others get that reply as soon as they
        wait for the client, and after ``limits.shutdown_timeout`` more seconds those
        still busy are cancelled."""
        server = self._server
        if server is None:
            return
        self._server = None
        self._closing = True
        server.close()
        self._remove_socket_file()
        grace = self.limits.shutdown_grace if grace is None else grace
        for session in list(self.sessions):
            session.stop("drain")
        pending = {s.task for s in self.sessions if s.task is not None}
        if pending and grace > 0:
            _, pending = await asyncio.wait(pending, timeout=grace)
        if pending:
            for session in list(self.sessions):
                session.stop("shutdown")
            _, pending = await asyncio.wait(pending, timeout=self.limits.shutdown_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await server.wait_closed()

    def _remove_socket_file(self) -> None:
        """Remove the Unix socket file this listener made, if it is still there (not
        replaced by another server's)."""
        path, inode = self._path, self._inode
        self._path = self._inode = None
        if path is None or inode is None:
            return
        try:
            if _identity(path) == inode:
                os.unlink(path)
        except OSError as exc:  # removed already (Python 3.13's asyncio does it)
            if not isinstance(exc, FileNotFoundError):
                log.warning("%s: cannot remove %s: %s", self.name, path, exc)
