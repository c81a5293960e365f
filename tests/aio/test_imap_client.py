"""Tests of mailagents.aio.imap_client: the asyncio IMAP client against scripted
servers on 127.0.0.1 (what the client sends is checked line by line)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest

from mailagents.aio.imap_client import (
    IMAPAuthenticationError,
    IMAPClient,
    IMAPCommandError,
    IMAPConnectionClosed,
    IMAPProtocolError,
    IMAPTimeout,
    IMAPTimeouts,
    IMAPTLSError,
)
from mailagents.aio.tls import SelfSignedCertificate, client_context, make_self_signed
from mailagents.imap._client import ClientState
from mailagents.imap._response_codes import CopyUidCode
from mailagents.imap._responses import ExistsData, ExpungeData
from mailagents.imap._search import FlagKey
from mailagents.imap._seqset import SequenceSet

T = TypeVar("T")
HOST = "127.0.0.1"
TIMEOUT = 20.0
CERT: SelfSignedCertificate = make_self_signed(["localhost"])
CAPS = b"IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN UIDPLUS MOVE IDLE ESEARCH"
Script = Callable[["Peer"], Awaitable[None]]


def run(coro: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Peer:
    """The server side of one connection, as a script sees it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.seen: list[bytes] = []

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self) -> bytes:
        line = await self.reader.readline()
        self.seen.append(line)
        return line

    async def expect(self, command: bytes) -> str:
        """Read a command line, check what follows its tag, return the tag."""
        line = await self.line()
        tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
        assert rest == command, line
        return tag.decode()

    async def answer(self, command: bytes, *responses: bytes) -> str:
        """Expect ``command``; send the responses ("%s" becomes the tag)."""
        tag = await self.expect(command)
        for response in responses:
            text = response.replace(b"%s", tag.encode())
            await self.send(text)
        return tag


@contextlib.asynccontextmanager
async def server(script: Script) -> AsyncIterator[tuple[int, list[Peer]]]:
    peers: list[Peer] = []
    failures: list[BaseException] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(reader, writer)
        peers.append(peer)
        try:
            await script(peer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except BaseException as exc:  # an assertion in the script
            failures.append(exc)
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, HOST, 0)
    try:
        yield srv.sockets[0].getsockname()[1], peers
    finally:
        srv.close()
    if failures:
        raise failures[0]


def connect(port: int, **options: Any) -> Any:
    options.setdefault("starttls", False)
    options.setdefault("timeouts", IMAPTimeouts.uniform(5))
    return IMAPClient.connect(HOST, port, **options)


GREET = b"* OK [CAPABILITY " + CAPS + b"] ready\r\n"


async def logged_in(peer: Peer) -> None:
    await peer.send(GREET)
    await peer.answer(b"LOGIN joe secret", b"%s OK [CAPABILITY " + CAPS + b"] in\r\n")


def test_login_select_fetch_logout() -> None:
    async def script(peer: Peer) -> None:
        await logged_in(peer)
        await peer.answer(
            b"SELECT INBOX",
            b"* 3 EXISTS\r\n* FLAGS (\\Seen \\Deleted)\r\n",
            b"* OK [UIDVALIDITY 42] v\r\n* OK [UIDNEXT 7] n\r\n",
            b"* OK [PERMANENTFLAGS (\\Seen \\*)] p\r\n",
            b"%s OK [READ-WRITE] selected\r\n",
        )
        await peer.answer(
            b"FETCH 1:3 (UID FLAGS)",
            b"* 1 FETCH (UID 4 FLAGS (\\Seen))\r\n* 4 EXISTS\r\n",
            b"* 2 FETCH (UID 5 FLAGS ())\r\n%s OK done\r\n",
        )
        await peer.answer(b"LOGOUT", b"* BYE bye\r\n%s OK out\r\n")

    async def main() -> None:
        updates: list[object] = []
        async with server(script) as (port, _), connect(port, on_update=updates.append) as client:
            await client.login("joe", "secret", mechanism="LOGIN", allow_plaintext=True)
            assert client.state is ClientState.AUTHENTICATED
            box = await client.select("INBOX")
            assert (box.exists, box.uidvalidity, box.uidnext) == (3, 42, 7)
            assert box.flags == ("\\Seen", "\\Deleted")
            assert box.permanent_flags == ("\\Seen", "\\*")
            assert not box.read_only and client.selected == "INBOX"
            fetched = await client.fetch("1:3", "(UID FLAGS)")
            assert [f.uid for f in fetched] == [4, 5]
            assert updates == [ExistsData(count=4)]
            bye = await client.logout()
            assert bye is not None and bye.text == "bye"
            assert client.closed

    run(main())


def test_plaintext_login_is_refused_without_tls() -> None:
    async def script(peer: Peer) -> None:
        await peer.send(GREET)
        await peer.answer(b"LOGOUT", b"%s OK out\r\n")

    async def main() -> None:
        async with server(script) as (port, peers):
            async with connect(port) as client:
                with pytest.raises(IMAPAuthenticationError, match="clear"):
                    await client.login("joe", "secret")
            assert all(b"secret" not in line for line in peers[0].seen)

    run(main())


def test_authenticate_plain_with_sasl_ir() -> None:
    async def script(peer: Peer) -> None:
        await peer.send(GREET)
        await peer.answer(b"AUTHENTICATE PLAIN AGpvZQBzZWNyZXQ=", b"%s OK in\r\n")
        await peer.answer(b"CAPABILITY", b"* CAPABILITY IMAP4rev1 IDLE\r\n%s OK\r\n")
        await peer.answer(b"LOGOUT", b"%s OK out\r\n")

    async def main() -> None:
        async with server(script) as (port, _), connect(port) as client:
            await client.login("joe", "secret", mechanism="PLAIN", allow_plaintext=True)
            assert client.capabilities == {"IMAP4REV1", "IDLE"}

    run(main())


def test_a_refused_login_raises_with_the_code() -> None:
    async def script(peer: Peer) -> None:
        await peer.send(GREET)
        await peer.answer(b"LOGIN joe bad", b"%s NO [AUTHENTICATIONFAILED] no\r\n")
        await peer.answer(b"LOGOUT", b"%s OK out\r\n")

    async def main() -> None:
        async with server(script) as (port, _), connect(port) as client:
            with pytest.raises(IMAPAuthenticationError) as info:
                await client.login("joe", "bad", mechanism="LOGIN", allow_plaintext=True)
            response = info.value.response
            assert response is not None and response.code is not None
            assert response.code.name == "AUTHENTICATIONFAILED"

    run(main())


def test_no_raises_a_command_error_and_the_session_goes_on() -> None:
    async def script(peer: Peer) -> None:
        await logged_in(peer)
        await peer.answer(b"COPY 1 nowhere", b"%s NO [TRYCREATE] no such mailbox\r\n")
        await peer.answer(
            b"UID COPY 1:4294967295 Archive",
            b"%s OK [COPYUID 9 1:4294967295 1:4294967295] copied\r\n",
        )
        await peer.answer(b"LOGOUT", b"%s OK out\r\n")

    async def main() -> None:
        async with server(script) as (port, _), connect(port) as client:
            await client.login("joe", "secret", mechanism="LOGIN", allow_plaintext=True)
            with pytest.raises(IMAPCommandError) as info:
                await client.copy(1, "nowhere")
            assert info.value.status == "NO"
            assert getattr(info.value.code, "name", None) == "TRYCREATE"
            assert "TRYCREATE" in str(info.value)
            code = await client.copy("1:4294967295", "Archive", uid=True)
            # Kept as one range, never expanded to four billion numbers.
            assert code == CopyUidCode(
                uidvalidity=9,
                source=SequenceSet(ranges=((1, 4294967295),)),
                destination=SequenceSet(ranges=((1, 4294967295),)),
            )

    run(main())


def test_move_and_expunge_and_search() -> None:
    async def script(peer: Peer) -> None:
        await logged_in(peer)
        await peer.answer(
            b"MOVE 2 Trash",
            b"* OK [COPYUID 9 5 11] moved\r\n* 2 EXPUNGE\r\n%s OK done\r\n",
        )
        await peer.answer(b"EXPUNGE", b"* 1 EXPUNGE\r\n* 1 EXPUNGE\r\n%s OK done\r\n")
        await peer.answer(b"UID SEARCH ALL", b"* SEARCH 3 4 5 9\r\n%s OK done\r\n")
        await peer.answer(
            b"SEARCH RETURN (COUNT MIN) SEEN",
            b'* ESEARCH (TAG "%s") MIN 2 COUNT 7\r\n%s OK done\r\n',
        )
        await peer.answer(b"LOGOUT", b"%s OK out\r\n")

    async def main() -> None:
        updates: list[object] = []
        async with server(script) as (port, _), connect(port, on_update=updates.append) as client:
            await client.login("joe", "secret", mechanism="LOGIN", allow_plaintext=True)
            code = await client.move(2, "Trash")
            assert isinstance(code, CopyUidCode) and code.uidvalidity == 9
            assert updates == [ExpungeData(number=2)]
            expunged = await client.expunge()
            assert expunged == (ExpungeData(number=1), ExpungeData(number=1))
            found = await client.search(uid=True)
            assert found.uid and str(found.numbers) == "3:5,9" and found.count == 4
            counted = await client.search(FlagKey(name="SEEN"), return_options=["COUNT", "MIN"])
            assert (counted.count, counted.min, counted.numbers) == (7, 2, None)

    run(main())


def test_append_streams_a_file_after_the_go_ahead() -> None:
    message = b"Subject: big\r\n\r\n" + b"y" * 200_000 + b"\r\n"

    async def script(peer: Peer) -> None:
        await peer.send(b"* OK [CAPABILITY IMAP4rev1 UIDPLUS] ready\r\n")
        await peer.answer(b"LOGIN joe secret", b"%s OK in\r\n")
        await peer.answer(b"CAPABILITY", b"* CAPABILITY IMAP4rev1 UIDPLUS\r\n%s OK\r\n")
        tag = await peer.expect(b"APPEND INBOX (\\Seen) {%d}" % len(message))
        await peer.send(b"+ go\r\n")
        data = await peer.reader.readexactly(len(message) + 2)
        assert data == message + b"\r\n"
        await peer.send(tag.encode() + b" OK [APPENDUID 38505 3955] appended\r\n")
        await peer.answer(b"LOGOUT", b"%s OK out\r\n")

    async def main() -> None:
        async with server(script) as (port, _), connect(port) as client:
            await client.login("joe", "secret", mechanism="LOGIN", allow_plaintext=True)
            code = await client.append("INBOX", io.BytesIO(message), flags=["\\Seen"])
            assert code is not None and code.uidvalidity == 38505
            assert str(code.uids) == "3955"

    run(main())


def test_fetch_message_streams_a_big_body_to_a_file() -> None:
    body = b"Subject: big\r\n\r\n" + b"z" * 3_000_000 + b"\r\n"

    async def script(peer: Peer) -> None:
        await logged_in(peer)
        await peer.answer(
            b"UID FETCH 7 (BODY.PEEK[])",
            b"* 1 FETCH (UID 7 BODY[] {%d}\r\n" % len(body) + body + b")\r\n%s OK done\r\n",
        )
        await peer.answer(b"LOGOUT", b"%s OK out\r\n")

    async def main() -> None:
        sink = io.BytesIO()
        async with server(script) as (port, _), connect(port) as client:
            await client.login("joe", "secret", mechanism="LOGIN", allow_plaintext=True)
            [fetched] = await client.fetch_message(7, sink, uid=True)
            assert fetched.uid == 7
        assert sink.getvalue() == body

    run(main())


def test_idle_yields_updates_and_ends_with_done() -> None:
    async def script(peer: Peer) -> None:
        await logged_in(peer)
        tag = await peer.answer(b"IDLE", b"+ idling\r\n", b"* 5 EXISTS\r\n* 3 EXPUNGE\r\n")
        assert await peer.line() == b"DONE\r\n"
        await peer.send(tag.encode() + b" OK IDLE done\r\n")
        await peer.answer(b"LOGOUT", b"%s OK out\r\n")

    async def main() -> None:
        seen: list[object] = []
        async with server(script) as (port, _), connect(port) as client:
            await client.login("joe", "secret", mechanism="LOGIN", allow_plaintext=True)
            async with client.idle() as news:
                async for response in news:
                    seen.append(response)
                    if len(seen) == 2:
                        break
        assert seen == [ExistsData(count=5), ExpungeData(number=3)]

    run(main())


def test_idle_is_renewed() -> None:
    async def script(peer: Peer) -> None:
        await logged_in(peer)
        for _ in range(2):
            tag = await peer.answer(b"IDLE", b"+ idling\r\n")
            assert await peer.line() == b"DONE\r\n"
            await peer.send(tag.encode() + b" OK IDLE done\r\n")
        tag = await peer.answer(b"IDLE", b"+ idling\r\n* 9 EXISTS\r\n")
        assert await peer.line() == b"DONE\r\n"
        await peer.send(tag.encode() + b" OK IDLE done\r\n")
        await peer.answer(b"LOGOUT", b"%s OK out\r\n")

    async def main() -> None:
        timeouts = IMAPTimeouts(command=5, idle=0.2)
        async with server(script) as (port, _), connect(port, timeouts=timeouts) as client:
            await client.login("joe", "secret", mechanism="LOGIN", allow_plaintext=True)
            async with client.idle() as news:
                async for response in news:
                    assert response == ExistsData(count=9)
                    break

    run(main())


def test_starttls_injection_is_an_attack() -> None:
    async def script(peer: Peer) -> None:
        await peer.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi\r\n")
        tag = await peer.expect(b"STARTTLS")
        await peer.send(tag.encode() + b" OK go\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
        await peer.reader.read()

    async def main() -> None:
        async with server(script) as (port, _):
            with pytest.raises(IMAPProtocolError, match="STARTTLS"):
                await connect(port, starttls=True)

    run(main())


def test_starttls_then_capability_again() -> None:
    async def script(peer: Peer) -> None:
        await peer.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi\r\n")
        tag = await peer.expect(b"STARTTLS")
        await peer.send(tag.encode() + b" OK go\r\n")
        await peer.writer.start_tls(CERT.server_context())
        await peer.answer(b"CAPABILITY", b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n%s OK\r\n")
        await peer.answer(b"LOGIN joe secret", b"%s OK in\r\n")
        await peer.answer(b"CAPABILITY", b"* CAPABILITY IMAP4rev1\r\n%s OK\r\n")
        await peer.answer(b"LOGOUT", b"%s OK out\r\n")

    async def main() -> None:
        context = client_context(verify=False)
        async with (
            server(script) as (port, _),
            connect(port, starttls=True, ssl_context=context) as client,
        ):
            assert client.tls_active
            assert client.capabilities == {"IMAP4REV1", "AUTH=PLAIN"}
            await client.login("joe", "secret", mechanism="LOGIN")

    run(main())


@pytest.mark.parametrize(
    "greeting",
    [b"* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n", b"* OK [CAPABILITY IMAP4rev1] hi\r\n"],
)
def test_starttls_required_but_impossible(greeting: bytes) -> None:
    async def script(peer: Peer) -> None:
        await peer.send(greeting)
        await peer.reader.read()

    async def main() -> None:
        async with server(script) as (port, _):
            with pytest.raises(IMAPTLSError):
                await connect(port, starttls=True)

    run(main())


def test_a_bye_greeting() -> None:
    async def script(peer: Peer) -> None:
        await peer.send(b"* BYE too many connections\r\n")

    async def main() -> None:
        async with server(script) as (port, _):
            with pytest.raises(IMAPConnectionClosed, match="too many"):
                await connect(port)

    run(main())


def test_a_silent_server_times_out() -> None:
    async def script(peer: Peer) -> None:
        await logged_in(peer)
        await peer.expect(b"NOOP")
        await peer.reader.read()

    async def main() -> None:
        async with server(script) as (port, _):
            client = await connect(port, timeouts=IMAPTimeouts(command=0.3))
            await client.login("joe", "secret", mechanism="LOGIN", allow_plaintext=True)
            with pytest.raises(IMAPTimeout):
                await client.noop()
            assert client.closed

    run(main())


def test_a_server_that_closes_mid_session() -> None:
    async def script(peer: Peer) -> None:
        await logged_in(peer)
        await peer.expect(b"NOOP")
        await peer.send(b"* BYE shutting down\r\n")

    async def main() -> None:
        async with server(script) as (port, _):
            client = await connect(port)
            await client.login("joe", "secret", mechanism="LOGIN", allow_plaintext=True)
            with pytest.raises(IMAPConnectionClosed, match="shutting down") as info:
                await client.noop()
            assert info.value.response is not None

    run(main())


def test_a_malformed_response_is_a_protocol_error() -> None:
    async def script(peer: Peer) -> None:
        await logged_in(peer)
        await peer.answer(b"NOOP", b"* 3 EXISTS (\r\n")
        await peer.reader.read()

    async def main() -> None:
        async with server(script) as (port, _):
            client = await connect(port)
            await client.login("joe", "secret", mechanism="LOGIN", allow_plaintext=True)
            with pytest.raises(IMAPProtocolError):
                await client.noop()
            assert client.closed

    run(main())


def test_execute_takes_command_text() -> None:
    async def script(peer: Peer) -> None:
        await logged_in(peer)
        await peer.answer(b"UID FETCH 1:* (FLAGS)", b"%s OK nothing\r\n")
        await peer.answer(b"LOGOUT", b"%s OK out\r\n")

    async def main() -> None:
        async with server(script) as (port, _), connect(port) as client:
            await client.login("joe", "secret", mechanism="LOGIN", allow_plaintext=True)
            done = await client.execute("UID FETCH 1:* (FLAGS)")
            assert done.ok and done.command == "UID FETCH"
            with pytest.raises(ValueError):
                await client.execute("NOT A COMMAND (")

    run(main())


def test_command_text_keeps_a_modified_utf7_name() -> None:
    # Regression: command text was read as if UTF8=ACCEPT were on, so the name
    # "&ZeVnLIqe-" (modified UTF-7 for 日本語) went out encoded twice, "&-ZeVnLIqe-".
    async def script(peer: Peer) -> None:
        await logged_in(peer)
        await peer.answer(b"STATUS &ZeVnLIqe- (MESSAGES)", b"%s OK done\r\n")
        await peer.answer(b"LOGOUT", b"%s OK out\r\n")

    async def main() -> None:
        async with server(script) as (port, _), connect(port) as client:
            await client.login("joe", "secret", mechanism="LOGIN", allow_plaintext=True)
            assert (await client.execute("STATUS &ZeVnLIqe- (MESSAGES)")).ok
            with pytest.raises(ValueError):  # text is the wire form: no 8-bit atom
                await client.execute("STATUS 日本語 (UIDNEXT)")

    run(main())


def test_compress_deflate_both_ways() -> None:
    from mailagents.aio._codec import DeflateCodec

    async def script(peer: Peer) -> None:
        await peer.send(b"* PREAUTH [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] hi\r\n")
        tag = await peer.expect(b"COMPRESS DEFLATE")
        codec = DeflateCodec()
        # The OK in the clear, and compressed data right behind it in the same write.
        await peer.send(tag.encode() + b" OK compressing\r\n" + codec.encode(b"* 7 EXISTS\r\n"))
        data = b""
        while b"\r\n" not in data:
            codec.feed(await peer.reader.read(4096))
            data += codec.read(65536)
        noop, _, rest = data.partition(b" ")
        assert rest == b"NOOP\r\n", data
        await peer.send(codec.encode(noop + b" OK " + b"z" * 60_000 + b"\r\n"))
        await peer.reader.read()

    async def main() -> None:
        updates: list[object] = []
        async with server(script) as (port, _):
            client = await connect(port, on_update=updates.append)
            await client.compress()
            done = await client.noop()
            assert done.response.text == "z" * 60_000
            assert updates == [ExistsData(count=7)]
            assert client.core.compressed
            await client.close()

    run(main())


def test_a_corrupt_compressed_stream_is_a_protocol_error() -> None:
    async def script(peer: Peer) -> None:
        await peer.send(b"* PREAUTH [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] hi\r\n")
        tag = await peer.expect(b"COMPRESS DEFLATE")
        await peer.send(tag.encode() + b" OK compressing\r\n\xff\xff\xff\xff garbage")
        await peer.reader.read()

    async def main() -> None:
        async with server(script) as (port, _):
            client = await connect(port)
            await client.compress()
            with pytest.raises(IMAPProtocolError, match="compressed"):
                await client.noop()
            assert client.closed

    run(main())


def test_an_endless_line_is_cut_off() -> None:
    async def script(peer: Peer) -> None:
        await logged_in(peer)
        await peer.expect(b"NOOP")
        with contextlib.suppress(ConnectionError):
            for _ in range(200):
                await peer.send(b"x" * 65536)

    async def main() -> None:
        async with server(script) as (port, _):
            client = await connect(port)
            await client.login("joe", "secret", mechanism="LOGIN", allow_plaintext=True)
            with pytest.raises(IMAPProtocolError, match="line"):
                await client.noop()

    run(main())


def test_a_sink_that_fails_closes_the_connection() -> None:
    async def script(peer: Peer) -> None:
        await logged_in(peer)
        await peer.answer(
            b"FETCH 1 (BODY.PEEK[])",
            b"* 1 FETCH (BODY[] {2000000}\r\n" + b"x" * 2_000_000 + b")\r\n%s OK\r\n",
        )
        await peer.reader.read()

    def sink(data: bytes) -> None:
        raise OSError("disk full")

    async def main() -> None:
        async with server(script) as (port, _):
            client = await connect(port)
            await client.login("joe", "secret", mechanism="LOGIN", allow_plaintext=True)
            with pytest.raises(OSError, match="disk full"):
                await client.fetch_message(1, sink)
            assert client.closed

    run(main())


def test_a_server_that_cannot_prove_itself_is_dropped() -> None:
    async def script(peer: Peer) -> None:
        await peer.send(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=SCRAM-SHA-256] hi\r\n")
        line = await peer.line()
        tag = line.split(b" ")[0]
        assert line.split(b" ")[1:3] == [b"AUTHENTICATE", b"SCRAM-SHA-256"]
        await peer.send(b"+ cj1ub3QtdGhlLXNhbWUtbm9uY2Uscz1jMkZzZEE9PSxpPTQwOTY=\r\n")
        assert await peer.line() == b"*\r\n"
        await peer.send(tag + b" BAD cancelled\r\n")
        await peer.reader.read()

    async def main() -> None:
        async with server(script) as (port, _):
            client = await connect(port)
            with pytest.raises(IMAPAuthenticationError, match="prove") as info:
                await client.login("joe", "secret")  # SCRAM: no password on the wire
            assert info.value.error
            assert client.closed

    run(main())
