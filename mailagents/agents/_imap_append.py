"""APPEND for the store-backed IMAP handler (RFC 9051 §6.3.12, MULTIAPPEND's several
messages in turn, APPENDUID of RFC 4315 §3): refused before the octets come when the
mailbox is missing or a limit would be passed (``confirm_append``), spooled as the
octets arrive (the flags and date come with the command, after them), then appended
into the folder from the spool, in the store's executor."""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

from mailagents.agents._imap_folders import FolderCommands, normal_name
from mailagents.aio.imap import IMAPSession
from mailagents.imap import commands as c
from mailagents.imap._events import AppendChunk, AppendRequested, AppendStart, Complete, Continue
from mailagents.imap._frame import Streamed
from mailagents.imap._seqset import SequenceSet
from mailagents.store import (
    FolderNotFoundError,
    MessageTooBigError,
    QuotaExceededError,
    StoreError,
)

__all__ = ["AppendCommands", "eight_bit_header"]

log = logging.getLogger("mailagents.agents._imap_session")

_SPOOL_MEMORY = 1024 * 1024
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_EIGHT_BIT = re.compile(rb"[\x80-\xff]")


def eight_bit_header(chunks: Iterable[bytes]) -> bool:
    """Whether the message whose octets come in ``chunks`` has an octet above 0x7F in
    its header (up to the first empty line; a message without one is all header)."""
    tail = b"\n"  # so that a message beginning with an empty line has no header
    for chunk in chunks:
        block = tail + chunk
        end = _HEADER_END.search(block)
        head = block if end is None else block[: end.start()]
        if _EIGHT_BIT.search(head):
            return True
        if end is not None:
            return False
        tail = block[-3:]  # an empty line cut between two chunks is still found
    return False


def _spool_chunks(spool: IO[bytes]) -> Iterator[bytes]:
    spool.seek(0)
    while chunk := spool.read(65536):
        yield chunk


def _spool_eight_bit(spool: IO[bytes]) -> bool:
    return eight_bit_header(_spool_chunks(spool))


class AppendCommands(FolderCommands):
    """APPEND, streamed through a spool file per message (see the module text)."""

    async def on_append_requested(
        self, session: IMAPSession, event: AppendRequested
    ) -> Continue | Complete:
        """Refuse before the octets come: a missing mailbox (``TRYCREATE``), a message
        over the APPENDLIMIT (``TOOBIG``, RFC 7889) or the quota (``OVERQUOTA``)."""
        if event.mailbox is None:
            return Continue()
        name = normal_name(event.mailbox)
        store = await self.store_of(session)
        try:
            await store.run(store.status, name)
            limit = store.append_limit(name)
            if limit is not None and event.size > limit:
                return Complete(status="NO", code="TOOBIG", text="Message too big")
            await store.run(store.check_room, name, event.size)
        except FolderNotFoundError:
            return Complete(status="NO", code="TRYCREATE", text="No such mailbox")
        except QuotaExceededError:
            return Complete(status="NO", code="OVERQUOTA", text="Over quota")
        except StoreError:
            return Complete(status="NO", code="CANNOT", text="Cannot append there")
        return Continue()

    def _spools(self, session: IMAPSession) -> dict[int, IO[bytes]]:
        spools: dict[int, IO[bytes]] = session.data.setdefault("imap.spools", {})
        return spools

    async def on_append_start(self, session: IMAPSession, event: AppendStart) -> None:
        """Spool the message (flags and date come with the command, after it)."""
        spools = self._spools(session)
        old = spools.pop(event.index, None)
        if old is not None:
            old.close()
        spools[event.index] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115

    async def on_append_chunk(self, session: IMAPSession, event: AppendChunk) -> None:
        """Write to the spool (in the executor once it is on disk)."""
        spool = self._spools(session).get(event.index)
        if spool is None:
            return
        store = await self.store_of(session)
        try:
            if spool.tell() + len(event.data) <= _SPOOL_MEMORY:
                spool.write(event.data)  # still in memory: no disk, no executor
            else:
                await store.run(spool.write, event.data)
        except OSError:
            log.exception("%s: APPEND spool failed", session.peer)
            self._spools(session).pop(event.index, None)
            spool.close()  # the command is then refused: never a cut message kept

    async def cmd_append(self, session: IMAPSession, command: c.Append) -> Complete:
        """APPEND (RFC 9051 §6.3.12; MULTIAPPEND's several messages in turn) with
        APPENDUID (RFC 4315 §3)."""
        spools = self._spools(session)
        try:
            return await self._append(session, command, spools)
        finally:
            for spool in spools.values():
                spool.close()
            spools.clear()

    async def _utf8_refusal(
        self, session: IMAPSession, command: c.Append, spools: dict[int, IO[bytes]]
    ) -> Complete | None:
        """RFC 6855 §4 (and RFC 9755 §4): with UTF8=ACCEPT announced but not enabled
        (nor IMAP4rev2, which includes it), a message with 8-bit octets in its header
        is refused with NO; the UTF8 data extension needs UTF8=ACCEPT announced."""
        offered = {e.upper() for e in session.core.config.extensions}
        accept = bool(offered & {"UTF8=ACCEPT", "UTF8=ONLY"})
        if not accept:
            if any(m.utf8 for m in command.messages):
                return Complete(status="BAD", text="UTF8 APPEND data needs UTF8=ACCEPT")
            return None
        if session.core.enabled & {"UTF8=ACCEPT", "IMAP4REV2"}:
            return None
        store = await self.store_of(session)
        for message in command.messages:
            data = message.data
            if isinstance(data, Streamed):
                spool = spools.get(data.index)
                if spool is None:
                    continue  # answered "Message lost" below
                eight = await store.run(_spool_eight_bit, spool)
            else:
                eight = eight_bit_header((data,))
            if eight:
                return Complete(status="NO", text="8-bit header fields need ENABLE UTF8=ACCEPT")
        return None

    async def _append(
        self, session: IMAPSession, command: c.Append, spools: dict[int, IO[bytes]]
    ) -> Complete:
        refused = await self._utf8_refusal(session, command, spools)
        if refused is not None:
            return refused
        name = normal_name(command.mailbox)
        store = await self.store_of(session)
        box = self.mailbox(session)
        selected = box is not None and box.name == name
        try:
            # Into the selected mailbox through its own handle (opening another would
            # read the whole folder again); its sync below tells the view.
            folder = box.folder if box is not None and selected else await store.run(
                store.folder, name
            )
        except FolderNotFoundError:
            return Complete(status="NO", code="TRYCREATE", text="No such mailbox")
        uids: list[int] = []
        uidvalidity = 0
        try:
            for message in command.messages:
                data = message.data
                flags = [f for f in message.flags if f.upper() != "\\RECENT"]
                if isinstance(data, Streamed):
                    spool = spools.get(data.index)
                    if spool is None:
                        return Complete(status="NO", text="Message lost")
                    result = await store.run(_append_spool, folder, spool, flags,
                                             message.internal_date)  # fmt: skip
                else:
                    result = await store.run(
                        folder.append_bytes, data, flags=flags, internaldate=message.internal_date
                    )
                uidvalidity = result.uidvalidity
                if result.uid is not None:
                    uids.append(result.uid)
        except MessageTooBigError:
            return Complete(status="NO", code="TOOBIG", text="Message too big")
        except QuotaExceededError:
            return Complete(status="NO", code="OVERQUOTA", text="Over quota")
        except ValueError as exc:
            return Complete(status="BAD", text=f"Invalid flag or date: {exc}"[:200])
        finally:
            if not selected:
                await store.run(folder.close)
        if box is not None and selected:
            await box.sync()
        if uids and len(uids) == len(command.messages):
            return Complete(code=f"APPENDUID {uidvalidity} {SequenceSet.from_numbers(uids)}")
        return Complete()


def _append_spool(folder: Any, spool: IO[bytes], flags: list[str], date: Any) -> Any:
    spool.seek(0)
    writer = folder.append(flags=flags, internaldate=date)
    try:
        while chunk := spool.read(65536):
            writer.write(chunk)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise
