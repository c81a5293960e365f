"""What the asyncio IMAP client returns, assembled from the responses a command
collected (see :mod:`mailagents.aio.imap_client`)."""

from __future__ import annotations

from dataclasses import dataclass

from mailagents.imap._client_events import Completed
from mailagents.imap._fetch_data import FetchData
from mailagents.imap._response_codes import (
    AppendUidCode,
    CopyUidCode,
    HighestModSeqCode,
    PermanentFlagsCode,
    UidNextCode,
    UidValidityCode,
    UnseenCode,
)
from mailagents.imap._responses import (
    ESearchData,
    ExistsData,
    FlagsData,
    RecentData,
    SearchData,
    SortData,
    StatusResponse,
    VanishedData,
)
from mailagents.imap._seqset import SequenceSet

__all__ = [
    "SearchResult",
    "SelectResult",
    "appenduid",
    "copyuid",
    "search_result",
    "select_result",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectResult:
    """What SELECT or EXAMINE said about the mailbox (RFC 9051 §6.3.2, RFC 7162).

    ``None`` for what the server did not say. ``vanished`` and ``fetched`` are the
    QRESYNC resynchronisation (RFC 7162 §3.2.5.1): the UIDs expunged since the state
    given, kept as ranges, and the FETCH responses of messages whose flags changed."""

    mailbox: str
    read_only: bool
    exists: int | None = None
    recent: int | None = None
    flags: tuple[str, ...] = ()
    permanent_flags: tuple[str, ...] | None = None
    uidvalidity: int | None = None
    uidnext: int | None = None
    unseen: int | None = None
    highestmodseq: int | None = None
    nomodseq: bool = False
    vanished: tuple[SequenceSet, ...] = ()
    fetched: tuple[FetchData, ...] = ()
    response: StatusResponse


def select_result(mailbox: str, done: Completed) -> SelectResult:
    """Assemble :class:`SelectResult` from a SELECT's or EXAMINE's responses."""
    values: dict[str, object] = {}
    vanished: list[SequenceSet] = []
    fetched: list[FetchData] = []
    flags: tuple[str, ...] = ()
    nomodseq = False
    for response in (*done.data, done.response):
        if isinstance(response, ExistsData):
            values["exists"] = response.count
        elif isinstance(response, RecentData):
            values["recent"] = response.count
        elif isinstance(response, FlagsData):
            flags = response.flags
        elif isinstance(response, VanishedData):
            vanished.append(response.uids)
        elif isinstance(response, FetchData):
            fetched.append(response)
        elif isinstance(response, StatusResponse):
            code = response.code
            if isinstance(code, UidValidityCode):
                values["uidvalidity"] = code.uidvalidity
            elif isinstance(code, UidNextCode):
                values["uidnext"] = code.uidnext
            elif isinstance(code, UnseenCode):
                values["unseen"] = code.number
            elif isinstance(code, PermanentFlagsCode):
                values["permanent_flags"] = code.flags
            elif isinstance(code, HighestModSeqCode):
                values["highestmodseq"] = code.modseq
            elif code is not None and code.name == "NOMODSEQ":
                nomodseq = True
    code = done.response.code
    read_only = done.command == "EXAMINE" or (code is not None and code.name == "READ-ONLY")
    return SelectResult(
        mailbox=mailbox,
        read_only=read_only,
        flags=flags,
        nomodseq=nomodseq,
        vanished=tuple(vanished),
        fetched=tuple(fetched),
        response=done.response,
        **values,  # type: ignore[arg-type]
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchResult:
    """What SEARCH (or SORT) found: ``numbers`` (message numbers, or UIDs with
    ``uid``) as a set of ranges, never expanded (``None`` when ESEARCH was asked
    for other results only); ESEARCH's ``min``, ``max``, ``count`` (RFC 4731);
    ``modseq`` the highest mod-sequence of the matches (RFC 7162 §3.1.5);
    ``order`` the numbers in the server's order for SORT."""

    uid: bool
    numbers: SequenceSet | None = None
    min: int | None = None
    max: int | None = None
    count: int | None = None
    modseq: int | None = None
    order: tuple[int, ...] = ()


def search_result(done: Completed) -> SearchResult:
    """Assemble :class:`SearchResult` from a SEARCH's (or SORT's) responses."""
    uid = done.command.startswith("UID ")
    numbers: list[int] = []
    order: tuple[int, ...] = ()
    modseq: int | None = None
    for response in done.data:
        if isinstance(response, ESearchData):
            return SearchResult(
                uid=response.uid or uid,
                numbers=response.all,
                min=response.min,
                max=response.max,
                count=response.count,
                modseq=response.modseq,
            )
        if isinstance(response, SearchData | SortData):
            numbers.extend(response.numbers)
            if isinstance(response, SortData):
                order = order + response.numbers
            if response.modseq is not None:
                modseq = response.modseq
    found = SequenceSet.from_numbers(numbers) if numbers else None
    return SearchResult(uid=uid, numbers=found, count=len(numbers), modseq=modseq, order=order)


def copyuid(done: Completed) -> CopyUidCode | None:
    """The ``COPYUID`` code of a COPY or MOVE (RFC 4315 §3; MOVE sends it in an
    untagged OK, RFC 6851 §4.3), ranges as sent; ``None`` without UIDPLUS."""
    for response in (done.response, *done.data):
        if isinstance(response, StatusResponse) and isinstance(response.code, CopyUidCode):
            return response.code
    return None


def appenduid(done: Completed) -> AppendUidCode | None:
    """The ``APPENDUID`` code of an APPEND (RFC 4315 §3), or ``None``."""
    code = done.response.code
    return code if isinstance(code, AppendUidCode) else None
