"""The fast path of a POP3 retrieval in mailagents.aio.pop3: a small message leaves in
one transport write, a big one still streams. Every wait is bounded."""

from __future__ import annotations

from typing import Any

import pytest

from mailagents.aio import pop3 as aio_pop3
from tests.aio.test_pop3_server import Client, Memory, message, run, served

# ------------------------------------------------------- one write per small message


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write of the POP3 sessions, in order."""
    seen: list[bytes] = []
    real = aio_pop3._Connection.write

    def write(self: Any, data: bytes) -> None:
        seen.append(data)
        real(self, data)

    monkeypatch.setattr(aio_pop3._Connection, "write", write)
    return seen


def test_a_small_message_leaves_in_one_write(writes: list[bytes]) -> None:
    small = message(1, b".dot\r\nline\r\n" * 50)
    handler = Memory([small], chunk=100)  # many chunks from the handler

    def client(port: int) -> None:
        c = Client.connect(port)
        c.login()
        writes.clear()
        c.send(b"RETR 1\r\n")
        assert c.line() == b"+OK %d octets" % len(small)
        lines = c.multi()
        assert b"".join(line + b"\r\n" for line in lines) == small.replace(b"\r\n.", b"\r\n..")
        c.ask("QUIT")
        c.close()

    run(served(handler, client))
    retr = writes[0]
    assert retr.startswith(b"+OK") and retr.endswith(b"\r\n.\r\n")
    assert retr.count(b"\r\n..dot") == 50


def test_a_big_message_still_streams(writes: list[bytes]) -> None:
    big = message(1, b"y" * 998 + b"\r\n") * 1000  # about 1 MB
    handler = Memory([big], chunk=64 * 1024)

    def client(port: int) -> None:
        c = Client.connect(port)
        c.login()
        writes.clear()
        c.send(b"RETR 1\r\n")
        assert c.line().startswith(b"+OK")
        assert b"".join(line + b"\r\n" for line in c.multi()) == big
        c.ask("QUIT")
        c.close()

    run(served(handler, client))
    retr = [w for w in writes if not w.startswith(b"+OK pop.test")]
    assert len(retr) > 10  # chunk by chunk, never the whole message at once
    assert max(len(w) for w in retr) < 2 * aio_pop3._COALESCE + 64 * 1024
    assert retr[-1].endswith(b"\r\n.\r\n")
