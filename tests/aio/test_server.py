"""The lifecycle the SMTP and POP3 servers share (mailagents/aio/_server.py)."""

from __future__ import annotations

import asyncio

import pytest

from mailagents.aio import ListenerLimits, POP3Handler, POP3Server, SMTPHandler, SMTPServer
from mailagents.aio._server import ListeningServer, server_limits


def test_shortcuts_override_the_limits() -> None:
    base = ListenerLimits(tls_handshake_timeout=30.0, max_connections=7)
    assert server_limits(base, None, None) is base
    short = server_limits(base, 10.0, None)
    assert (short.idle_timeout, short.command_timeout) == (10.0, 10.0)
    assert short.tls_handshake_timeout == 10.0 and short.max_connections == 7
    long = server_limits(base, 100.0, 3)
    assert long.tls_handshake_timeout == 30.0 and long.max_connections == 3


def test_both_servers_apply_their_shortcuts() -> None:
    smtp = SMTPServer(SMTPHandler(), command_timeout=5.0, max_connections=2)
    pop3 = POP3Server(POP3Handler(), idle_timeout=6.0, max_connections=3)
    assert (smtp.command_timeout, smtp.max_connections) == (5.0, 2)
    assert (pop3.idle_timeout, pop3.limits.max_connections) == (6.0, 3)
    assert smtp._listener.limits is smtp.limits and pop3._listener.limits is pop3.limits
    with pytest.raises(ValueError):
        SMTPServer(SMTPHandler(), implicit_tls=True)
    with pytest.raises(ValueError):
        POP3Server(POP3Handler(), implicit_tls=True)


@pytest.mark.parametrize("make", [lambda: SMTPServer(SMTPHandler()),
                                  lambda: POP3Server(POP3Handler())], ids=["smtp", "pop3"])
def test_lifecycle(make: object) -> None:
    async def main() -> None:
        server = make()  # type: ignore[operator]
        assert isinstance(server, ListeningServer)
        assert server.sockets == () and server.connections == 0
        with pytest.raises(RuntimeError):
            server.port  # noqa: B018 - not listening yet
        async with server as same:
            assert same is server and server.port > 0 and len(server.sockets) >= 1
            with pytest.raises(RuntimeError):
                await server.start()
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            greeting = await reader.readline()
            assert greeting[:3] in (b"220", b"+OK")
            assert server.connections == 1
            writer.close()
            await writer.wait_closed()
        assert server.sockets == ()
        await server.close()  # closing twice is harmless

    asyncio.run(asyncio.wait_for(main(), 10.0))
