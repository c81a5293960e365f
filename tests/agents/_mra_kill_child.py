"""The child side of tests/agents/test_mra_kill.py: one MRA pass (``MRA.run_once``) in
a process of its own, forked from a server that has already imported mailagents, which
tells the parent what it is doing and can stop at a chosen point to be killed there.

Events sent on the connection, in order: ``("B", account, message_id)`` before a
message is handed to the destination, ``("H", account, message_id)`` once the
destination said it is durable, ``("S", account)`` once the account's state file was
saved, ``("D", account)`` after a removal was asked of the server (POP3 DELE, IMAP
STORE ``\\Deleted``, UID EXPUNGE or MOVE), ``("R", errors)`` at the end of the pass. With
``pause = (kind, n)``, the child sends ``("P",)`` after the n-th event of that kind and
waits there (its event loop blocked) for the SIGKILL that follows.
"""

from __future__ import annotations

import asyncio
import os
import re
from multiprocessing.connection import Connection
from typing import Any

from mailagents.agents import MRA, Account, MaildirDelivery, _mra_state
from mailagents.aio.imap_client import IMAPClient
from mailagents.aio.pop3_client import POP3Client
from mailagents.delivery import Handoff, RecipientResult

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


def run_pass(spec: dict[str, Any], conn: Connection) -> None:
    """One pass as ``spec`` says (accounts, local, state_dir, pause)."""
    seen: dict[str, int] = {}
    pause: tuple[str, int] | None = spec.get("pause")

    def event(*item: Any) -> None:
        conn.send(item)
        kind = item[0]
        seen[kind] = seen.get(kind, 0) + 1
        if pause is not None and pause == (kind, seen[kind]):
            conn.send(("P",))
            conn.recv()  # never answered: the parent kills us here
            os._exit(3)  # pragma: no cover - the parent went away

    by_path = {
        _mra_state.state_path(spec["state_dir"], a["name"]): a["name"]
        for a in spec["accounts"]
    }
    original_save = _mra_state.AccountMemory.save

    def save(self: _mra_state.AccountMemory) -> None:
        original_save(self)
        event("S", by_path[self.path])

    _mra_state.AccountMemory.save = save  # type: ignore[method-assign]

    original_dele = POP3Client.dele

    async def dele(self: POP3Client, number: int) -> None:
        await original_dele(self, number)
        event("D", "pop3")

    POP3Client.dele = dele  # type: ignore[method-assign]

    original_store = IMAPClient.store
    original_expunge = IMAPClient.expunge

    async def store(self: IMAPClient, *args: Any, **kwargs: Any) -> Any:
        done = await original_store(self, *args, **kwargs)
        event("D", "imap")
        return done

    async def expunge(self: IMAPClient, *args: Any, **kwargs: Any) -> Any:
        done = await original_expunge(self, *args, **kwargs)
        event("D", "imap")
        return done

    original_move = IMAPClient.move

    async def move(self: IMAPClient, *args: Any, **kwargs: Any) -> Any:
        done = await original_move(self, *args, **kwargs)
        event("D", "imap")
        return done

    IMAPClient.move = move  # type: ignore[method-assign]
    IMAPClient.store = store  # type: ignore[method-assign]
    IMAPClient.expunge = expunge  # type: ignore[method-assign]

    async def main() -> None:
        local = MaildirDelivery(spec["local"], fsync=False)

        async def deliver(handoff: Handoff) -> list[RecipientResult]:
            account = handoff.id.split("/", 1)[0]
            found = _MESSAGE_ID.search(handoff.message.header)
            message_id = found.group(1).decode() if found else "?"
            event("B", account, message_id)
            results = list(await local(handoff))
            if all(r.delivered for r in results):
                event("H", account, message_id)
            return results

        accounts = [Account(**a) for a in spec["accounts"]]
        mra = MRA(accounts, deliver, state_dir=spec["state_dir"], fsync=False)
        try:
            reports = await asyncio.wait_for(mra.run_once(), 60)
        finally:
            local.close()
        event("R", [r.error for r in reports if r.error])

    asyncio.run(main())
