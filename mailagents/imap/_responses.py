"""Server responses as data (RFC 9051 §7 and the extensions of issue 14).

One class per kind of response. Status responses, tagged and untagged, are one class,
``StatusResponse`` (``tag`` ``None`` for ``*``); ``+`` is ``Continuation``;
every untagged data response has a ``...Data`` class, and a response this library does
not know is kept as ``UntaggedData`` rather than refused (RFC 9051 §7: clients
must ignore, not choke on, responses they do not understand). The response codes live
in ``mailagents.imap._response_codes``, FETCH in ``mailagents.imap._fetch_data``.

Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from mailagents._protocol import LocalProtocolError
from mailagents.imap._fetch_data import ExtValue, FetchData
from mailagents.imap._response_codes import Code
from mailagents.imap._seqset import SequenceSet

__all__ = [
    "CapabilityData",
    "Continuation",
    "ESearchData",
    "EnabledData",
    "ExistsData",
    "ExpungeData",
    "FlagsData",
    "IdData",
    "ListData",
    "Namespace",
    "NamespaceData",
    "RecentData",
    "Response",
    "SearchData",
    "SortData",
    "Status",
    "StatusData",
    "StatusResponse",
    "Thread",
    "ThreadData",
    "UntaggedData",
    "VanishedData",
]

Status: TypeAlias = Literal["OK", "NO", "BAD", "PREAUTH", "BYE"]
"""The status of a status response; tagged ones are OK, NO or BAD only."""

_STATUSES = frozenset({"OK", "NO", "BAD", "PREAUTH", "BYE"})


def _no_crlf(text: str) -> None:
    if "\r" in text or "\n" in text or "\x00" in text:
        raise LocalProtocolError("response text must not contain CR, LF or NUL")


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusResponse:
    """``tag OK/NO/BAD [code] text`` or ``* OK/NO/BAD/PREAUTH/BYE [code] text``
    (RFC 9051 §7.1): ``tag`` is ``None`` for an untagged response."""

    status: Status
    tag: str | None = None
    code: Code | None = None
    text: str = ""

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise LocalProtocolError(f"not a status: {self.status!r}")
        if self.tag is not None and self.status not in ("OK", "NO", "BAD"):
            raise LocalProtocolError(f"a tagged response is OK, NO or BAD, not {self.status}")
        _no_crlf(self.text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Continuation:
    """``+ text`` or ``+ base64`` (RFC 9051 §7.6). ``data`` is set (decoded) for an
    AUTHENTICATE challenge, when the parser was told to expect one; otherwise the
    line is ``resp-text`` (``code`` and ``text``)."""

    text: str = ""
    code: Code | None = None
    data: bytes | None = None

    def __post_init__(self) -> None:
        _no_crlf(self.text)
        if self.data is not None and (self.text or self.code is not None):
            raise LocalProtocolError("a continuation holds text or data, not both")


@dataclass(frozen=True, slots=True, kw_only=True)
class CapabilityData:
    """``* CAPABILITY ...`` (RFC 9051 §7.2.2), as sent."""

    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class EnabledData:
    """``* ENABLED ...`` (RFC 5161 §3.2): what the ENABLE command turned on."""

    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class FlagsData:
    """``* FLAGS (...)``: the flags defined in the mailbox (RFC 9051 §7.3.5)."""

    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ListData:
    """``* LIST (attributes) delimiter mailbox [extended]`` (RFC 9051 §7.3.1), or
    ``* LSUB ...`` (RFC 3501 §7.2.3) with ``lsub``.

    ``delimiter`` is ``None`` for NIL (a flat name space). LIST-EXTENDED (RFC 5258
    §9): ``child_info`` holds CHILDINFO's selection options, ``old_name`` the OLDNAME
    of a renamed mailbox (RFC 9051 §7.3.1), ``extended`` every other item as read.
    """

    flags: tuple[str, ...]
    delimiter: str | None
    mailbox: str
    child_info: tuple[str, ...] | None = None
    old_name: str | None = None
    extended: tuple[tuple[str, ExtValue], ...] = ()
    lsub: bool = False

    def __post_init__(self) -> None:
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise LocalProtocolError("a hierarchy delimiter is one character")


_STATUS_ITEMS = (
    "MESSAGES",
    "UIDNEXT",
    "UIDVALIDITY",
    "UNSEEN",
    "DELETED",
    "SIZE",
    "RECENT",
    "HIGHESTMODSEQ",
    "APPENDLIMIT",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusData:
    """``* STATUS mailbox (name value ...)`` (RFC 9051 §7.3.4): ``items`` in wire
    order, names upper case. The values of MESSAGES, UIDNEXT, UIDVALIDITY, UNSEEN,
    DELETED, SIZE, RECENT (RFC 3501), HIGHESTMODSEQ (RFC 7162) are numbers; APPENDLIMIT
    (RFC 7889) a number or ``None`` (NIL: no limit); others are kept as read."""

    mailbox: str
    items: tuple[tuple[str, ExtValue], ...] = ()

    def get(self, name: str) -> ExtValue:
        """The value of item ``name`` (any case), ``None`` when absent."""
        key = name.upper()
        for item, value in self.items:
            if item == key:
                return value
        return None

    def _int(self, name: str) -> int | None:
        value = self.get(name)
        return value if isinstance(value, int) else None

    @property
    def messages(self) -> int | None:
        """MESSAGES."""
        return self._int("MESSAGES")

    @property
    def uidnext(self) -> int | None:
        """UIDNEXT."""
        return self._int("UIDNEXT")

    @property
    def uidvalidity(self) -> int | None:
        """UIDVALIDITY."""
        return self._int("UIDVALIDITY")

    @property
    def unseen(self) -> int | None:
        """UNSEEN."""
        return self._int("UNSEEN")

    @property
    def deleted(self) -> int | None:
        """DELETED (RFC 9051)."""
        return self._int("DELETED")

    @property
    def size(self) -> int | None:
        """SIZE (RFC 9051)."""
        return self._int("SIZE")

    @property
    def recent(self) -> int | None:
        """RECENT (RFC 3501 only)."""
        return self._int("RECENT")

    @property
    def highestmodseq(self) -> int | None:
        """HIGHESTMODSEQ (RFC 7162)."""
        return self._int("HIGHESTMODSEQ")

    @property
    def appendlimit(self) -> int | None:
        """APPENDLIMIT (RFC 7889; ``None`` also for NIL)."""
        return self._int("APPENDLIMIT")


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchData:
    """``* SEARCH n ...`` (RFC 3501 §7.2.5), with CONDSTORE's ``(MODSEQ n)``
    (RFC 7162 §3.1.5)."""

    numbers: tuple[int, ...] = ()
    modseq: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ESearchData:
    """``* ESEARCH [(TAG "t")] [UID] ...`` (RFC 9051 §7.3.4, RFC 4731 §3.1): the
    result options; ``modseq`` is RFC 7162 §3.2's; other items stay in ``extensions``."""

    tag: str | None = None
    uid: bool = False
    min: int | None = None
    max: int | None = None
    count: int | None = None
    all: SequenceSet | None = None
    modseq: int | None = None
    extensions: tuple[tuple[str, ExtValue], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SortData:
    """``* SORT n ...`` (RFC 5256 §4), with ``(MODSEQ n)`` (RFC 7162 §3.1.5)."""

    numbers: tuple[int, ...] = ()
    modseq: int | None = None


Thread: TypeAlias = "tuple[int | Thread, ...]"
"""One ``thread-list`` (RFC 5256 §4): message numbers in thread order, then (if it
branches) two or more nested threads. ``(3 6 (4 23)(44 7 96))`` is
``(3, 6, (4, 23), (44, 7, 96))``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadData:
    """``* THREAD (..)(..)`` (RFC 5256 §4): the threads, maybe none."""

    threads: tuple[Thread, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ExistsData:
    """``* n EXISTS`` (RFC 9051 §7.4.1)."""

    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecentData:
    """``* n RECENT`` (RFC 3501 §7.3.2)."""

    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpungeData:
    """``* n EXPUNGE`` (RFC 9051 §7.5.1): the sequence number of the removed message."""

    number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class VanishedData:
    """``* VANISHED [(EARLIER)] uids`` (RFC 7162 §3.2.10), UIDs as ranges."""

    uids: SequenceSet
    earlier: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace:
    """One ``Namespace-Descr`` (RFC 2342 §5, RFC 9051 §7.3.5): the prefix (as sent,
    modified UTF-7 unless UTF8=ACCEPT), its delimiter, extension items."""

    prefix: str
    delimiter: str | None = None
    extensions: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NamespaceData:
    """``* NAMESPACE personal other shared`` (RFC 2342 §5): each ``None`` for NIL."""

    personal: tuple[Namespace, ...] | None = None
    other: tuple[Namespace, ...] | None = None
    shared: tuple[Namespace, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class IdData:
    """``* ID (name value ...)`` or ``* ID NIL`` (RFC 2971 §3.2)."""

    params: tuple[tuple[str, str | None], ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UntaggedData:
    """An untagged response this library does not know: ``* [number] NAME items``,
    ``items`` as read."""

    name: str
    number: int | None = None
    items: tuple[ExtValue, ...] = ()


Response: TypeAlias = (
    StatusResponse
    | Continuation
    | CapabilityData
    | EnabledData
    | FlagsData
    | ListData
    | StatusData
    | SearchData
    | ESearchData
    | SortData
    | ThreadData
    | ExistsData
    | RecentData
    | ExpungeData
    | VanishedData
    | FetchData
    | NamespaceData
    | IdData
    | UntaggedData
)
"""Any server response."""
