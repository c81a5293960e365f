"""The LMTP server (mailagents/agents/lmtp.py, RFC 2033) in front of the MDA, over TCP
and a Unix socket: RCPT checked at once, one reply per accepted recipient after DATA or
BDAT LAST, in RCPT order, each after its copy is durable; the Received: field."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import pytest

from mailagents.agents import MDA, LMTPServer, LocalRecipients
from mailagents.delivery import Handoff, RecipientResult
from mailagents.store import MaildirStore

MESSAGE = b"From: a@remote.test\r\nSubject: hi\r\n\r\nHello.\r\n"
USERS = {"alice@example.test": None, "bob@example.test": 10, "carol@example.test": None}
ALIASES = {"postmaster": ["alice@example.test"]}


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


class Client:
    """A minimal LMTP client that reads exactly the replies it expects."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = (await self.reader.readline()).decode()
            assert line.endswith("\r\n"), line
            lines.append(line[4:].rstrip())
            if line[3] == " ":
                return int(line[:3]), "\n".join(lines)

    async def command(self, line: bytes) -> tuple[int, str]:
        self.writer.write(line + b"\r\n")
        return await self.reply()

    async def transaction(
        self, rcpts: list[str], message: bytes = MESSAGE, bdat: bool = False
    ) -> tuple[list[int], list[tuple[int, str]]]:
        assert (await self.command(b"MAIL FROM:<a@remote.test>"))[0] == 250
        rcpt_codes = [(await self.command(b"RCPT TO:<%s>" % r.encode()))[0] for r in rcpts]
        accepted = rcpt_codes.count(250)
        if bdat:
            self.writer.write(b"BDAT %d LAST\r\n" % len(message) + message)
        else:
            assert (await self.command(b"DATA"))[0] == 354
            self.writer.write(message + b".\r\n")
        return rcpt_codes, [await self.reply() for _ in range(accepted)]

    async def close(self) -> None:
        await self.command(b"QUIT")
        self.writer.close()
        await self.writer.wait_closed()


async def lhlo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Client:
    client = Client(reader, writer)
    assert (await client.reply())[0] == 220
    code, text = await client.command(b"LHLO client.test")
    assert code == 250 and "PIPELINING" in text and "ENHANCEDSTATUSCODES" in text
    return client


def make_mda(tmp_path: Path) -> MDA:
    recipients = LocalRecipients(USERS, ALIASES, local_domains={"example.test"})
    return MDA(str(tmp_path / "mail" / "{user}"), recipients, fsync=False)


def inbox(tmp_path: Path, user: str) -> list[bytes]:
    path = tmp_path / "mail" / user
    if not path.exists():
        return []
    with MaildirStore(path) as store, store.folder("INBOX") as box:
        return [box.read_message(m.uid) for m in box.messages()]


@pytest.mark.parametrize("bdat", [False, True])
def test_one_reply_per_recipient_in_rcpt_order(tmp_path: Path, bdat: bool) -> None:
    mda = make_mda(tmp_path)

    async def main() -> None:
        async with LMTPServer("lmtp.example.test", mda, close_deliver=True) as lmtp:
            await lmtp.serve("127.0.0.1", 0)
            client = await lhlo(*await asyncio.open_connection("127.0.0.1", lmtp.port))
            # bob's quota (10 octets) is not full yet, but this message passes it.
            rcpts, replies = await client.transaction(
                ["alice@example.test", "nobody@example.test", "bob@example.test",
                 "carol@example.test"], bdat=bdat)
            assert rcpts == [250, 550, 250, 250]
            assert [code for code, _ in replies] == [250, 452, 250]
            assert "<alice@example.test>" in replies[0][1]
            assert replies[1][1].startswith("4.2.2")
            await client.close()

    run(main())
    [alice] = inbox(tmp_path, "alice@example.test")
    assert inbox(tmp_path, "bob@example.test") == []
    assert len(inbox(tmp_path, "carol@example.test")) == 1
    assert alice.startswith(b"Return-Path: <a@remote.test>\r\nDelivered-To: alice@example.test\r\n"
                            b"Received: from client.test ([127.0.0.1])\r\n\tby lmtp.example.test")
    assert re.search(rb"with LMTP id [0-9a-f]{16};", alice)
    assert alice.endswith(MESSAGE)


def test_over_a_unix_socket(tmp_path: Path) -> None:
    mda = make_mda(tmp_path)
    path = tmp_path / "lmtp.sock"
    if len(os.fsencode(path)) > 100:
        pytest.skip("the temporary path is too long for a Unix socket")

    async def main() -> None:
        async with LMTPServer("lmtp.example.test", mda, close_deliver=True) as lmtp:
            await lmtp.serve_unix(path, mode=0o600)
            assert os.stat(path).st_mode & 0o777 == 0o600
            client = await lhlo(*await asyncio.open_unix_connection(str(path)))
            rcpts, replies = await client.transaction(["postmaster@example.test",
                                                       "carol@example.test"])
            assert rcpts == [250, 250] and [c for c, _ in replies] == [250, 250]
            await client.close()
        assert not path.exists()

    run(main())
    [alice] = inbox(tmp_path, "alice@example.test")
    assert b"Received: from client.test (via a Unix socket uid " in alice
    assert b"with LMTP id" in alice


def test_a_failing_delivery_is_451_for_each_recipient(tmp_path: Path) -> None:
    calls: list[Handoff] = []

    async def deliver(handoff: Handoff) -> list[RecipientResult]:
        calls.append(handoff)
        raise OSError("disk on fire")

    async def short(handoff: Handoff) -> list[RecipientResult]:
        return []

    async def main() -> None:
        for callable_ in (deliver, short):
            async with LMTPServer("lmtp.example.test", callable_) as lmtp:
                await lmtp.serve("127.0.0.1", 0)
                client = await lhlo(*await asyncio.open_connection("127.0.0.1", lmtp.port))
                rcpts, replies = await client.transaction(["x@a.test", "y@b.test"])
                assert rcpts == [250, 250]  # no check: every recipient accepted
                assert [c for c, _ in replies] == [451, 451]
                await client.close()

    run(main())
    assert len(calls) == 1


def test_serving_twice_and_port_before_serving(tmp_path: Path) -> None:
    mda = make_mda(tmp_path)

    async def main() -> None:
        lmtp = LMTPServer("lmtp.example.test", mda, close_deliver=True)
        with pytest.raises(RuntimeError):
            _ = lmtp.port
        await lmtp.serve("127.0.0.1", 0)
        with pytest.raises(RuntimeError):
            await lmtp.serve("127.0.0.1", 0)
        await lmtp.close()

    run(main())
