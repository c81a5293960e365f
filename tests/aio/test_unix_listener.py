"""The listener on a Unix socket (mailagents.aio._listener.Listener.start_unix, through
SMTPServer and POP3Server): LMTP as Postfix reaches it, the socket file's mode, owner,
replacement and removal, and clients counted per process (SO_PEERCRED) rather than all
local clients in one bucket. Every wait is bounded; every server is closed."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import ssl
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailagents import sasl
from mailagents.aio import (
    ListenerLimits,
    POP3Handler,
    POP3Server,
    POP3Session,
    Session,
    SMTPHandler,
    SMTPServer,
    make_self_signed,
)
from mailagents.aio._listener import Listener
from mailagents.aio._throttle import peer_credentials, unix_key, unix_peer
from mailagents.pop3 import Maildrop, MaildropEntry, OpenMaildrop
from mailagents.pop3 import ServerConfig as POP3Config
from mailagents.smtp import Accept, Envelope, LMTPReplies, Reject, ServerConfig

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets")

T = TypeVar("T")
TIMEOUT = 20.0
LMTP = ServerConfig(hostname="lmtp.test", lmtp=True)
QUICK = ListenerLimits(shutdown_grace=0.5, shutdown_timeout=0.5)
PEERCRED = hasattr(socket, "SO_PEERCRED")


def run(coro: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def socket_path(tmp_path: Path, name: str = "lmtp.sock") -> Path:
    # sun_path holds about 100 octets: a deep pytest tmp_path may not fit.
    path = tmp_path / name
    if len(os.fsencode(path)) < 100:
        return path
    short = Path(os.environ.get("TMPDIR", "/tmp")) / f"ma-{os.getpid()}-{id(tmp_path)}"
    short.mkdir(exist_ok=True)
    return short / name


async def reply(reader: asyncio.StreamReader) -> list[bytes]:
    """One SMTP reply, its lines without CRLF."""
    lines = []
    while True:
        line = await reader.readline()
        assert line.endswith(b"\r\n"), line
        lines.append(line[:-2])
        if line[3:4] != b"-":
            return lines


async def command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes
) -> list[bytes]:
    writer.write(line + b"\r\n")
    return await reply(reader)


@contextlib.asynccontextmanager
async def unix_client(
    path: Path, **kwargs: Any
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_unix_connection(str(path), **kwargs)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def lmtp_server(
    path: Path, handler: SMTPHandler | None = None, **kwargs: Any
) -> AsyncIterator[SMTPServer]:
    limits = kwargs.pop("limits", QUICK)
    server = SMTPServer(handler or SMTPHandler(), LMTP, limits=limits)
    await server.start_unix(path, **kwargs)
    try:
        yield server
    finally:
        await server.close()


class Recorder(SMTPHandler):
    """Accepts everything and remembers each message's session peer."""

    def __init__(self) -> None:
        self.peers: list[tuple[Any, ...]] = []

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        self.peers.append(session.peer)
        return Accept()


async def lmtp_transaction(path: Path) -> list[list[bytes]]:
    """An LMTP transaction for two recipients; the replies."""
    async with unix_client(path) as (reader, writer):
        replies = [await reply(reader)]
        replies.append(await command(reader, writer, b"LHLO client.test"))
        replies.append(await command(reader, writer, b"MAIL FROM:<a@example.test>"))
        replies.append(await command(reader, writer, b"RCPT TO:<b@example.test>"))
        replies.append(await command(reader, writer, b"RCPT TO:<c@example.test>"))
        replies.append(await command(reader, writer, b"DATA"))
        writer.write(b"Subject: hi\r\n\r\nHello.\r\n.\r\n")
        replies.append(await reply(reader))  # one reply per recipient (RFC 2033 §4.2)
        replies.append(await reply(reader))
        replies.append(await command(reader, writer, b"QUIT"))
        return replies


# ---------------------------------------------------------------- LMTP over the socket


def test_lmtp_transaction_over_a_unix_socket(tmp_path: Path) -> None:
    path = socket_path(tmp_path)

    async def main() -> list[list[bytes]]:
        async with lmtp_server(path) as server:
            assert server.path == str(path)
            return await lmtp_transaction(path)

    replies = run(main())
    codes = [lines[-1][:3] for lines in replies]
    assert codes == [b"220", b"250", b"250", b"250", b"250", b"354", b"250", b"250", b"221"]
    assert replies[0][0].startswith(b"220 lmtp.test")
    assert not path.exists()


def test_session_peer_is_the_client_process(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    handler = Recorder()

    async def main() -> None:
        async with lmtp_server(path, handler):
            await lmtp_transaction(path)

    run(main())
    if PEERCRED:
        assert handler.peers == [("unix", os.getpid(), os.getuid())]
    else:
        assert handler.peers == [("unix",)]


def test_implicit_tls_over_a_unix_socket(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    cert = make_self_signed(["lmtp.test"])

    async def main() -> list[bytes]:
        server = SMTPServer(SMTPHandler(), LMTP, ssl_context=cert.server_context(),
                            implicit_tls=True, limits=QUICK)
        await server.start_unix(path)
        try:
            async with unix_client(path, ssl=cert.client_context(),
                                   server_hostname="lmtp.test") as (reader, writer):
                greeting = await reply(reader)
                assert (await command(reader, writer, b"LHLO client.test"))[-1][:3] == b"250"
                if PEERCRED:  # the credentials are read through the TLS transport
                    assert [s.peer for s in server._listener.sessions] == [
                        ("unix", os.getpid(), os.getuid())
                    ]
                return greeting
        finally:
            await server.close()

    assert run(main())[0].startswith(b"220 ")


def test_runs_on_uvloop(tmp_path: Path) -> None:
    uvloop = pytest.importorskip("uvloop")
    path = socket_path(tmp_path)
    handler = Recorder()

    async def main() -> list[list[bytes]]:
        async with lmtp_server(path, handler, mode=0o600) as server:
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            assert server.path == str(path)
            return await lmtp_transaction(path)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        replies = runner.run(asyncio.wait_for(main(), TIMEOUT))
    assert replies[-1][-1][:3] == b"221"
    assert not path.exists()
    if PEERCRED:
        assert handler.peers == [("unix", os.getpid(), os.getuid())]


# ------------------------------------------------------------------ the socket file


@pytest.mark.parametrize("mode", [0o660, 0o600])
def test_socket_file_mode(tmp_path: Path, mode: int) -> None:
    path = socket_path(tmp_path)

    async def main() -> int:
        async with lmtp_server(path, mode=mode):
            assert stat.S_ISSOCK(os.lstat(path).st_mode)
            return stat.S_IMODE(os.stat(path).st_mode)

    assert run(main()) == mode


def test_default_mode_is_0660(tmp_path: Path) -> None:
    path = socket_path(tmp_path)

    async def main() -> int:
        async with lmtp_server(path):
            return stat.S_IMODE(os.stat(path).st_mode)

    assert run(main()) == 0o660


def test_owner_and_group_by_numeric_id_and_by_name(tmp_path: Path) -> None:
    import grp
    import pwd

    uid, gid = os.getuid(), os.getgid()
    user, group = pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name

    async def main() -> list[tuple[int, int]]:
        owners: list[tuple[int, int]] = []
        for owner, grp_ in ((uid, None), (None, gid), (user, group), (str(uid), str(gid))):
            path = socket_path(tmp_path, f"o{len(owners)}.sock")
            async with lmtp_server(path, owner=owner, group=grp_):
                st = os.stat(path)
                owners.append((st.st_uid, st.st_gid))
        return owners

    assert run(main()) == [(uid, gid)] * 4


def test_unknown_owner_or_group_creates_nothing(tmp_path: Path) -> None:
    path = socket_path(tmp_path)

    async def main() -> None:
        server = SMTPServer(SMTPHandler(), LMTP, limits=QUICK)
        with pytest.raises(LookupError, match="no such user"):
            await server.start_unix(path, owner="no-such-user-mailagents")
        with pytest.raises(LookupError, match="no such group"):
            await server.start_unix(path, group="no-such-group-mailagents")
        with pytest.raises(ValueError):
            await server.start_unix(path, mode=0o10000)
        assert server.sockets == () and server.path is None
        await server.close()

    run(main())
    assert not os.path.lexists(path)


def test_a_regular_file_is_refused_and_left_intact(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    path.write_bytes(b"precious\n")
    os.chmod(path, 0o644)

    async def main() -> None:
        server = SMTPServer(SMTPHandler(), LMTP, limits=QUICK)
        with pytest.raises(FileExistsError, match="not a socket"):
            await server.start_unix(path)
        assert server.sockets == ()
        await server.close()

    run(main())
    assert path.read_bytes() == b"precious\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_a_directory_or_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    directory = socket_path(tmp_path, "dir.sock")
    directory.mkdir()
    target = socket_path(tmp_path, "target.sock")
    link = socket_path(tmp_path, "link.sock")

    async def main() -> None:
        server = SMTPServer(SMTPHandler(), LMTP, limits=QUICK)
        with pytest.raises(FileExistsError):
            await server.start_unix(directory)
        async with lmtp_server(target):
            link.symlink_to(target)  # even a link to a socket is not ours to remove
            with pytest.raises(FileExistsError):
                await server.start_unix(link)
        await server.close()

    run(main())
    assert directory.is_dir()
    assert link.is_symlink()


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # a server that died without removing its socket
    stale.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)

    async def main() -> list[list[bytes]]:
        async with lmtp_server(path):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
            return await lmtp_transaction(path)

    assert run(main())[-1][-1][:3] == b"221"
    assert not os.path.lexists(path)


def test_a_socket_another_server_listens_on_is_not_taken(tmp_path: Path) -> None:
    path = socket_path(tmp_path)

    async def main() -> list[list[bytes]]:
        async with lmtp_server(path) as first:
            second = SMTPServer(SMTPHandler(), LMTP, limits=QUICK)
            with pytest.raises(OSError) as info:
                await second.start_unix(path)
            assert info.value.errno == errno.EADDRINUSE
            await second.close()
            assert first.path == str(path)
            return await lmtp_transaction(path)  # the first still serves

    assert run(main())[-1][-1][:3] == b"221"


def test_the_socket_file_is_removed_at_close(tmp_path: Path) -> None:
    path = socket_path(tmp_path)

    async def main() -> None:
        server = SMTPServer(SMTPHandler(), LMTP, limits=QUICK)
        await server.start_unix(path)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        await server.close()
        assert not os.path.lexists(path)
        assert server.path is None and server.sockets == ()
        with pytest.raises(FileNotFoundError):
            await asyncio.open_unix_connection(str(path))
        # Closed, it may listen again.
        await server.start_unix(path)
        assert server.path == str(path)
        await server.close()

    run(main())
    assert not os.path.lexists(path)


def test_a_file_that_replaced_ours_is_not_removed_at_close(tmp_path: Path) -> None:
    path = socket_path(tmp_path)

    async def main() -> None:
        async with lmtp_server(path):
            os.unlink(path)
            path.write_bytes(b"someone else's\n")

    run(main())
    assert path.read_bytes() == b"someone else's\n"


def test_port_raises_and_path_gives_the_path(tmp_path: Path) -> None:
    path = socket_path(tmp_path)

    async def main() -> None:
        server = SMTPServer(SMTPHandler(), LMTP, limits=QUICK)
        assert server.path is None
        await server.start_unix(path)
        try:
            assert server.path == str(path)
            assert len(server.sockets) == 1
            with pytest.raises(RuntimeError, match="Unix socket"):
                server.port  # noqa: B018
            with pytest.raises(RuntimeError, match="already started"):
                await server.start()
            with pytest.raises(RuntimeError, match="already started"):
                await server.start_unix(socket_path(tmp_path, "other.sock"))
        finally:
            await server.close()
        # On TCP there is a port and no path.
        await server.start()
        try:
            assert server.path is None and server.port > 0
            with pytest.raises(RuntimeError, match="already started"):
                await server.start_unix(path)
        finally:
            await server.close()

    run(main())
    assert not os.path.lexists(path)


def test_listener_refuses_a_second_start_and_an_abstract_name(tmp_path: Path) -> None:
    path = socket_path(tmp_path)

    async def main() -> None:
        listener = Listener(lambda lst, loop: None, QUICK)  # type: ignore[arg-type,return-value]
        with pytest.raises(ValueError, match="file system path"):
            await listener.start_unix("\0mailagents-abstract")
        await listener.start_unix(path)
        try:
            assert listener.path == str(path)
            with pytest.raises(RuntimeError):
                await listener.start_unix(path)
            with pytest.raises(RuntimeError):
                await listener.start()
        finally:
            await listener.close()
        assert listener.path is None

    run(main())


# ------------------------------------------------------- counted per client process


def test_keys_per_process_and_per_unknown_connection() -> None:
    assert unix_key((100, 1000, 1000)) == "unix:pid=100"
    assert unix_key((100, 1000, 1000)) != unix_key((101, 1000, 1000))  # same uid
    first, second = unix_key(None), unix_key(None)
    assert first.startswith("unix:#") and second.startswith("unix:#")
    assert first != second


@pytest.mark.skipif(not PEERCRED, reason="no SO_PEERCRED")
def test_peer_credentials_of_a_socket_pair() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert peer_credentials(left) == (os.getpid(), os.getuid(), os.getgid())


def test_peer_credentials_unknown() -> None:
    class NoCredentials:
        family = socket.AF_UNIX

        def getsockopt(self, *args: Any) -> bytes:
            raise OSError(errno.ENOPROTOOPT, "no")

    assert peer_credentials(NoCredentials()) is None

    class Transport(asyncio.BaseTransport):
        def __init__(self, sock: Any) -> None:
            super().__init__()
            self.sock = sock

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return self.sock if name == "socket" else default

    local = unix_peer(Transport(NoCredentials()))
    assert local is not None
    peer, key = local
    assert peer == ("unix",) and key.startswith("unix:#")
    assert unix_peer(Transport(None)) is None
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with tcp:
        assert unix_peer(Transport(tcp)) is None


CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
data = b""
while not data.endswith(b"\\r\\n"):
    chunk = s.recv(1024)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
s.sendall(b"QUIT\\r\\n")
s.recv(1024)
s.close()
"""


async def subprocess_greeting(path: Path) -> str:
    """The greeting another process gets on ``path``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, str(path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 15)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.skipif(not PEERCRED, reason="no SO_PEERCRED: every connection counts alone")
def test_one_connection_per_process_does_not_lump_local_clients(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    limits = ListenerLimits(max_connections_per_address=1, shutdown_grace=0.5,
                            shutdown_timeout=0.5)

    async def main() -> tuple[list[bytes], str, list[bytes]]:
        async with lmtp_server(path, limits=limits) as server:
            async with unix_client(path) as (reader, writer):
                first = await reply(reader)
                assert server._listener.connections_from(f"unix:pid={os.getpid()}") == 1
                # Another process (as each Postfix lmtp client is) gets its own bucket.
                other = await subprocess_greeting(path)
                # A second connection from this process is beyond its limit.
                async with unix_client(path) as (reader2, _):
                    refused = await reply(reader2)
                    assert await reader2.read() == b""
                assert (await command(reader, writer, b"NOOP"))[-1][:3] == b"250"
            return first, other, refused

    first, other, refused = run(main())
    assert first[0].startswith(b"220 ")
    assert other.startswith("220 ")
    assert refused[-1].startswith(b"421 ") and b"Too many connections" in refused[-1]


@pytest.mark.skipif(not PEERCRED, reason="no SO_PEERCRED")
def test_session_is_counted_under_its_process(tmp_path: Path) -> None:
    # The key of max_connections_per_address and of the failed-login throttle.
    path = socket_path(tmp_path)
    keys: list[str] = []

    async def main() -> None:
        async with lmtp_server(path) as server:
            listener = server._listener
            async with unix_client(path) as (reader, _):
                await reply(reader)
                keys.extend(session.address for session in listener.sessions)

    run(main())
    assert keys == [f"unix:pid={os.getpid()}"]


# ------------------------------------------------------------------------ POP3


class OneUser(POP3Handler):
    """``user``/``secret`` with one message; remembers the sessions' peers."""

    def __init__(self) -> None:
        self.peers: list[tuple[object, ...]] = []

    async def on_credentials(
        self, session: POP3Session, request: sasl.NeedCredentials
    ) -> sasl.Answer:
        if request.authcid == "user" and request.password is not None:
            return sasl.PasswordVerdict(valid=request.password == "secret")
        return sasl.NoSuchUser()

    async def on_open(self, session: POP3Session, event: OpenMaildrop) -> Maildrop:
        self.peers.append(session.peer)
        return Maildrop(messages=(MaildropEntry(size=10, uid="one"),))


def test_pop3_over_a_unix_socket(tmp_path: Path) -> None:
    path = socket_path(tmp_path, "pop3.sock")
    config = POP3Config(hostname="pop.test", allow_plaintext_login=True)

    handler = OneUser()

    async def main() -> list[bytes]:
        server = POP3Server(handler, config, limits=QUICK)
        await server.start_unix(path, mode=0o600)
        try:
            assert server.path == str(path)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            with pytest.raises(RuntimeError):
                server.port  # noqa: B018
            async with unix_client(path) as (reader, writer):
                lines = [await reader.readline()]
                for line in (b"USER user", b"PASS secret", b"STAT", b"QUIT"):
                    writer.write(line + b"\r\n")
                    lines.append(await reader.readline())
                return lines
        finally:
            await server.close()

    lines = run(main())
    assert all(line.startswith(b"+OK") for line in lines), lines
    assert lines[3].startswith(b"+OK 1 10")
    assert not os.path.lexists(path)
    # The handler sees the listener's peer (it saw the raw peername, '' here).
    [peer] = handler.peers
    assert peer[0] == "unix"
    if PEERCRED:
        assert peer[1:] == (os.getpid(), os.getuid())

