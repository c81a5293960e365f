"""mailagents.agents.MRA against our own MAA (POP3 and IMAP over a Maildir), into a
MaildirDelivery: the keep and delete modes, a second pass that fetches nothing, the
state file. Every test is bounded in time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailagents.agents import MAA, MRA, Account, MaildirDelivery
from mailagents.aio import make_self_signed
from mailagents.store import MaildirStore
from mailagents.userdb import PasswordFile

T = TypeVar("T")
TIMEOUT = 30.0


def remote_inbox(root: Path) -> MaildirStore:
    return MaildirStore(root / "remote" / "alice" / "Maildir", fsync=False)


def local_messages(root: Path) -> list[bytes]:
    path = root / "local" / "bob@local.test" / "Maildir"
    with MaildirStore(path) as store, store.folder("INBOX") as inbox:
        return [inbox.read_message(m.uid) for m in inbox.messages()]


def put(root: Path, *numbers: int) -> None:
    with remote_inbox(root) as store, store.folder("INBOX") as inbox:
        for n in numbers:
            inbox.append_bytes(message(n))


def message(n: int) -> bytes:
    return f"Message-ID: <{n}@remote.test>\r\nSubject: m{n}\r\n\r\nbody {n}\r\n".encode()


def with_maa(root: Path, body: Callable[[MAA], Awaitable[T]]) -> T:
    users = PasswordFile(root / "users", scrypt_n=2**8)
    users.set_password("alice", "pw")
    cert = make_self_signed(["localhost"])

    async def main() -> T:
        maa = MAA("h", users, str(root / "remote" / "{user}" / "Maildir"),
                  ssl_context=cert.server_context(), allow_plaintext=True, fsync=False)
        async with maa:
            await maa.serve("127.0.0.1", 0, None, 0, None)
            return await body(maa)

    try:
        return asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    finally:
        users.close()


def account(maa: MAA, protocol: str, **options: Any) -> Account:
    port = maa.pop3_port if protocol == "pop3" else maa.imap_port
    options.setdefault("name", f"{protocol}-{options.get('after', 'keep')}")
    return Account(protocol=protocol, host="127.0.0.1", port=port, user="alice",  # type: ignore[arg-type]
                   password="pw", recipients=("bob@local.test",), tls="none", **options)


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
@pytest.mark.parametrize("after", ["keep", "delete"])
def test_fetch_then_nothing_new(tmp_path: Path, protocol: str, after: str) -> None:
    put(tmp_path, 1, 2, 3)

    async def body(maa: MAA) -> None:
        delivery = MaildirDelivery(str(tmp_path / "local" / "{user}" / "Maildir"))
        mra = MRA([account(maa, protocol, after=after)], delivery,
                  state_dir=tmp_path / "state", fsync=False)
        try:
            first, = await mra.run_once()
            assert first.error is None and len(first.fetched) == 3
            assert first.removed == (3 if after == "delete" else 0)
            again, = await mra.run_once()
            assert again.fetched == () and again.error is None
            put(tmp_path, 4)
            third, = await mra.run_once()
            assert len(third.fetched) == 1
        finally:
            delivery.close()

    with_maa(tmp_path, body)
    bodies = sorted(m.split(b"\r\n\r\n", 1)[1] for m in local_messages(tmp_path))
    assert bodies == [f"body {n}\r\n".encode() for n in (1, 2, 3, 4)]
    with remote_inbox(tmp_path) as store, store.folder("INBOX") as inbox:
        assert len(inbox.messages()) == (0 if after == "delete" else 4)
