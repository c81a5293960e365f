"""The IMAP client commands as data (RFC 9051 §6, RFC 3501 §6 and the extensions).

One frozen dataclass per command, each with the ``tag`` it was sent with. The parser
(``mailagents.imap._command_parser.parse_command``, server side) turns a frame into
one of them and the writer (``write_command``, client side) does the reverse; a
command round-trips exactly, so the values hold what the grammar distinguishes and
nothing more (``FETCH 1 FLAGS`` and ``FETCH 1 (FLAGS)`` are the same value, the macros
``ALL``/``FAST``/``FULL`` are kept as written).

Names of commands and keywords are case-insensitive on the wire and upper case here;
mailbox names are decoded (modified UTF-7, or UTF-8 once UTF8=ACCEPT or IMAP4rev2 is
enabled) and ``INBOX`` is always upper case (the writer sends any case of it as
``INBOX``, the parser reads any case as ``"INBOX"``); flags and other atoms are kept
as written.
The ``UID`` prefix (RFC 9051 §6.4.9) is the ``uid`` field of the commands it applies
to. A command the parser does not know is ``UnknownCommand``, so that the server
can answer ``BAD`` without treating it as a syntax error.

Pure data, no I/O.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal, TypeAlias

from mailagents._protocol import LocalProtocolError
from mailagents.imap._fetch_items import FetchItem, FetchMacro
from mailagents.imap._frame import Streamed
from mailagents.imap._search import SearchKey, SortCriterion
from mailagents.imap._seqset import SequenceSet

__all__ = [
    "LIST_RETURN_OPTIONS",
    "LIST_SELECTION_OPTIONS",
    "SEARCH_RETURN_OPTIONS",
    "STATUS_ITEMS",
    "Append",
    "AppendMessage",
    "Authenticate",
    "Capability",
    "Check",
    "Close",
    "Command",
    "Compress",
    "Copy",
    "Create",
    "Delete",
    "Enable",
    "Examine",
    "Expunge",
    "Fetch",
    "Id",
    "Idle",
    "List",
    "Login",
    "Logout",
    "Lsub",
    "Move",
    "Namespace",
    "Noop",
    "QResync",
    "Rename",
    "Search",
    "Select",
    "Sort",
    "StartTLS",
    "Status",
    "Store",
    "Subscribe",
    "Thread",
    "UnknownCommand",
    "Unselect",
    "Unsubscribe",
]

STATUS_ITEMS: frozenset[str] = frozenset(
    {
        "MESSAGES",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "DELETED",
        "SIZE",
        "RECENT",
        "HIGHESTMODSEQ",
        "APPENDLIMIT",
        "MAILBOXID",
    }
)
"""``status-att`` of RFC 9051 §9, ``RECENT`` (RFC 3501), ``HIGHESTMODSEQ`` (RFC 7162
§3.1.9), ``APPENDLIMIT`` (RFC 7889 §3), ``MAILBOXID`` (RFC 8474 §4.1)."""

LIST_SELECTION_OPTIONS: frozenset[str] = frozenset(
    {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}
)
"""The LIST selection options of RFC 5258 §3.1 and RFC 6154 §5.1."""

LIST_RETURN_OPTIONS: frozenset[str] = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE"})
"""The LIST return options of RFC 5258 §3.2 and RFC 6154 §5.2 (``STATUS``, RFC 5819, is
``List.status``)."""

SEARCH_RETURN_OPTIONS: frozenset[str] = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
"""``search-return-opt`` of RFC 9051 §9 (ESEARCH, RFC 4731; ``SAVE``, RFC 5182)."""

_NUMBER_MAX = 4294967295
_NUMBER64_MAX = 2**63 - 1


def _mailbox(name: str, what: str) -> None:
    if "\x00" in name:
        raise LocalProtocolError(f"{what} must not hold NUL")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{what} must be encodable (no lone surrogates)") from None


def _upper_atoms(items: tuple[str, ...], allowed: frozenset[str] | None, what: str) -> None:
    for item in items:
        if allowed is not None and item not in allowed:
            raise LocalProtocolError(f"{item!r} is not a {what}")
        if allowed is None and (not item or item != item.upper()):
            raise LocalProtocolError(f"{what} {item!r} must be a non-empty upper-case atom")


def _modseq(value: int | None, what: str, *, zero: bool) -> None:
    if value is not None and not (0 if zero else 1) <= value <= _NUMBER64_MAX:
        raise LocalProtocolError(f"{what} is out of range (RFC 7162 §7 mod-sequence-value)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Capability:
    """``CAPABILITY`` (RFC 9051 §6.1.1)."""

    tag: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Noop:
    """``NOOP`` (RFC 9051 §6.1.2)."""

    tag: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Logout:
    """``LOGOUT`` (RFC 9051 §6.1.3)."""

    tag: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTLS:
    """``STARTTLS`` (RFC 9051 §6.2.1)."""

    tag: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticate:
    """``AUTHENTICATE mechanism [initial-response]`` (RFC 9051 §6.2.2, SASL-IR RFC 4959).

    ``mechanism`` is upper case; ``initial_response`` the decoded octets of the
    initial response, ``b""`` for ``=`` (an empty response), ``None`` when absent.
    The exchange that follows is the session's business, not part of the command.
    """

    tag: str
    mechanism: str
    initial_response: bytes | None = None

    def __post_init__(self) -> None:
        _upper_atoms((self.mechanism,), None, "SASL mechanism")


@dataclass(frozen=True, slots=True, kw_only=True)
class Login:
    """``LOGIN userid password`` (RFC 9051 §6.2.3); both ``astring``, decoded as UTF-8
    with ``surrogateescape``."""

    tag: str
    user: str
    password: str

    def __post_init__(self) -> None:
        if "\x00" in self.user or "\x00" in self.password:
            raise LocalProtocolError("LOGIN user and password must not hold NUL")


@dataclass(frozen=True, slots=True, kw_only=True)
class Enable:
    """``ENABLE capability...`` (RFC 9051 §6.3.1, RFC 5161); names upper case."""

    tag: str
    capabilities: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.capabilities:
            raise LocalProtocolError("ENABLE names at least one capability")
        _upper_atoms(self.capabilities, None, "capability")


@dataclass(frozen=True, slots=True, kw_only=True)
class QResync:
    """The ``QRESYNC`` SELECT/EXAMINE parameter (RFC 7162 §3.2.5); ``known_uids`` and
    ``seq_match`` are the optional parts of its grammar::

        "QRESYNC" SP "(" uidvalidity SP mod-sequence-value [SP known-uids]
                    [SP seq-match-data] ")"
        seq-match-data = "(" known-sequence-set SP known-uid-set ")"
    """

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.uidvalidity <= _NUMBER_MAX:
            raise LocalProtocolError("QResync.uidvalidity is an nz-number")
        _modseq(self.modseq, "QResync.modseq", zero=False)
        for s in (self.known_uids, *(self.seq_match or ())):
            if s is not None and (s.saved or any(None in r for r in s.ranges)):
                raise LocalProtocolError("QRESYNC sets hold numbers only (no * or $)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Select:
    """``SELECT mailbox [(CONDSTORE) / (QRESYNC (...))]`` (RFC 9051 §6.3.2, RFC 7162
    §3.1.8 and §3.2.5)."""

    tag: str
    mailbox: str
    condstore: bool = False
    qresync: QResync | None = None

    def __post_init__(self) -> None:
        _mailbox(self.mailbox, "mailbox")


@dataclass(frozen=True, slots=True, kw_only=True)
class Examine:
    """``EXAMINE`` (RFC 9051 §6.3.3): ``Select`` read-only, with the same
    parameters."""

    tag: str
    mailbox: str
    condstore: bool = False
    qresync: QResync | None = None

    def __post_init__(self) -> None:
        _mailbox(self.mailbox, "mailbox")


@dataclass(frozen=True, slots=True, kw_only=True)
class Create:
    """``CREATE mailbox [(USE (\\Drafts ...))]`` (RFC 9051 §6.3.4, RFC 6154 §3);
    ``special_use`` holds the attributes as written."""

    tag: str
    mailbox: str
    special_use: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _mailbox(self.mailbox, "mailbox")
        if any(not a.startswith("\\") or len(a) < 2 for a in self.special_use):
            raise LocalProtocolError("special-use attributes are \\atom (RFC 6154 §6)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete:
    """``DELETE mailbox`` (RFC 9051 §6.3.5)."""

    tag: str
    mailbox: str

    def __post_init__(self) -> None:
        _mailbox(self.mailbox, "mailbox")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rename:
    """``RENAME existing new`` (RFC 9051 §6.3.6)."""

    tag: str
    mailbox: str
    new_name: str

    def __post_init__(self) -> None:
        _mailbox(self.mailbox, "mailbox")
        _mailbox(self.new_name, "new mailbox name")


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribe:
    """``SUBSCRIBE mailbox`` (RFC 9051 §6.3.7)."""

    tag: str
    mailbox: str

    def __post_init__(self) -> None:
        _mailbox(self.mailbox, "mailbox")


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribe:
    """``UNSUBSCRIBE mailbox`` (RFC 9051 §6.3.8)."""

    tag: str
    mailbox: str

    def __post_init__(self) -> None:
        _mailbox(self.mailbox, "mailbox")


@dataclass(frozen=True, slots=True, kw_only=True)
class List:
    """``LIST [(selection)] reference patterns [RETURN (options)]`` (RFC 9051 §6.3.9,
    LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819, SPECIAL-USE RFC 6154).

    ``patterns`` holds one pattern or several (``("INBOX" "Drafts")``, RFC 5258 §3);
    ``selection`` the selection options (``LIST_SELECTION_OPTIONS``, upper case),
    ``return_options`` the return options but ``STATUS``, whose items are ``status``
    (``None`` when not asked for). RFC 5258 §3.1: ``RECURSIVEMATCH`` never stands alone.
    An empty list (``LIST () "" %``, ``RETURN ()``) reads as no options at all: RFC
    5258 §3 gives it no meaning of its own.
    """

    tag: str
    reference: str
    patterns: tuple[str, ...]
    selection: tuple[str, ...] = ()
    return_options: tuple[str, ...] = ()
    status: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _mailbox(self.reference, "reference")
        if not self.patterns:
            raise LocalProtocolError("LIST needs at least one pattern")
        for p in self.patterns:
            _mailbox(p, "pattern")
        _upper_atoms(self.selection, LIST_SELECTION_OPTIONS, "LIST selection option")
        if self.selection == ("RECURSIVEMATCH",) or (
            "RECURSIVEMATCH" in self.selection
            and not {"SUBSCRIBED", "SPECIAL-USE"} & set(self.selection)
        ):
            raise LocalProtocolError("RECURSIVEMATCH needs a base selection option (RFC 5258)")
        _upper_atoms(self.return_options, LIST_RETURN_OPTIONS, "LIST return option")
        if self.status is not None:
            if not self.status:
                raise LocalProtocolError("RETURN STATUS names at least one item")
            _upper_atoms(self.status, STATUS_ITEMS, "STATUS item")


@dataclass(frozen=True, slots=True, kw_only=True)
class Lsub:
    """``LSUB reference pattern`` (RFC 3501 §6.3.9; IMAP4rev1 only)."""

    tag: str
    reference: str
    pattern: str

    def __post_init__(self) -> None:
        _mailbox(self.reference, "reference")
        _mailbox(self.pattern, "pattern")


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace:
    """``NAMESPACE`` (RFC 9051 §6.3.10, RFC 2342)."""

    tag: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """``STATUS mailbox (items)`` (RFC 9051 §6.3.11); ``items`` from
    ``STATUS_ITEMS``, upper case, in the order asked."""

    tag: str
    mailbox: str
    items: tuple[str, ...]

    def __post_init__(self) -> None:
        _mailbox(self.mailbox, "mailbox")
        if not self.items:
            raise LocalProtocolError("STATUS names at least one item")
        _upper_atoms(self.items, STATUS_ITEMS, "STATUS item")


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendMessage:
    """One message of an APPEND (several with MULTIAPPEND, RFC 3502): its ``flags``,
    ``internal_date`` (aware) and octets; ``binary`` when sent as ``literal8``
    (``~{n}``, RFC 3516 §4.4), ``data`` a ``Streamed`` when the octets went out as
    chunk events. ``utf8``: sent with RFC 6855's UTF8 data extension,
    ``UTF8 (~{n}...)``, which is always a ``literal8`` (RFC 6855 §4; RFC 9755 drops
    the form, a server still takes it)."""

    flags: tuple[str, ...] = ()
    internal_date: datetime.datetime | None = None
    data: bytes | Streamed
    binary: bool = False
    utf8: bool = False

    def __post_init__(self) -> None:
        if self.utf8 and not self.binary:
            raise LocalProtocolError("the UTF8 data extension takes a literal8 (binary=True)")
        if self.internal_date is not None and self.internal_date.utcoffset() is None:
            raise LocalProtocolError("AppendMessage.internal_date must be timezone-aware")
        if isinstance(self.data, Streamed):
            if self.data.binary != self.binary:
                raise LocalProtocolError("AppendMessage.binary must match the Streamed literal")
        elif not self.binary and b"\x00" in self.data:
            raise LocalProtocolError("a message holding NUL goes as literal8 (binary=True)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Append:
    """``APPEND mailbox [flags] [date-time] literal ...`` (RFC 9051 §6.3.12, MULTIAPPEND
    RFC 3502 for more than one message)."""

    tag: str
    mailbox: str
    messages: tuple[AppendMessage, ...]

    def __post_init__(self) -> None:
        _mailbox(self.mailbox, "mailbox")
        if not self.messages:
            raise LocalProtocolError("APPEND carries at least one message")


@dataclass(frozen=True, slots=True, kw_only=True)
class Idle:
    """``IDLE`` (RFC 9051 §6.3.13, RFC 2177); the ``DONE`` line that ends it is the
    framing's business."""

    tag: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """``CHECK`` (RFC 3501 §6.4.1; IMAP4rev1 only)."""

    tag: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Close:
    """``CLOSE`` (RFC 9051 §6.4.1)."""

    tag: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unselect:
    """``UNSELECT`` (RFC 9051 §6.4.2, RFC 3691)."""

    tag: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Expunge:
    """``EXPUNGE`` (RFC 9051 §6.4.3), or with ``uid`` ``UID EXPUNGE set`` (RFC 9051
    §6.4.9, UIDPLUS RFC 4315 §2.1), which needs ``sequence_set``."""

    tag: str
    uid: bool = False
    sequence_set: SequenceSet | None = None

    def __post_init__(self) -> None:
        if self.uid != (self.sequence_set is not None):
            raise LocalProtocolError("UID EXPUNGE and only UID EXPUNGE takes a set")


@dataclass(frozen=True, slots=True, kw_only=True)
class Search:
    """``[UID] SEARCH [RETURN (options)] [CHARSET charset] criteria`` (RFC 9051 §6.4.4).

    ``return_options`` is ``None`` for a plain SEARCH (an IMAP4rev1 ``* SEARCH``
    answer), and a tuple (``()`` for ``RETURN ()``, which means ``ALL``) for ESEARCH
    (RFC 4731, SAVE RFC 5182); ``criteria`` are ANDed.
    """

    tag: str
    uid: bool = False
    return_options: tuple[str, ...] | None = None
    charset: str | None = None
    criteria: tuple[SearchKey, ...]

    def __post_init__(self) -> None:
        if not self.criteria:
            raise LocalProtocolError("SEARCH needs at least one search key")
        if self.return_options is not None:
            _upper_atoms(self.return_options, SEARCH_RETURN_OPTIONS, "SEARCH return option")
        if self.charset is not None and not self.charset:
            raise LocalProtocolError("Search.charset must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetch:
    """``[UID] FETCH set items [(CHANGEDSINCE n [VANISHED])]`` (RFC 9051 §6.4.5, RFC
    7162 §3.1.4.1 and §3.2.6).

    ``items`` is a macro (``"ALL"``, ``"FAST"``, ``"FULL"``) as written, or the data
    items; ``VANISHED`` needs ``uid`` and ``changedsince`` (RFC 7162 §3.2.6).
    """

    tag: str
    uid: bool = False
    sequence_set: SequenceSet
    items: tuple[FetchItem, ...] | FetchMacro
    changedsince: int | None = None
    vanished: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.items, str):
            if self.items not in ("ALL", "FAST", "FULL"):
                raise LocalProtocolError(f"{self.items!r} is not a FETCH macro")
        elif not self.items:
            raise LocalProtocolError("FETCH names at least one item")
        _modseq(self.changedsince, "CHANGEDSINCE", zero=False)
        if self.vanished and (not self.uid or self.changedsince is None):
            raise LocalProtocolError("VANISHED needs UID FETCH and CHANGEDSINCE (RFC 7162)")


StoreAction: TypeAlias = Literal["replace", "add", "remove"]
"""``FLAGS`` (replace), ``+FLAGS`` (add) or ``-FLAGS`` (remove)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Store:
    """``[UID] STORE set [(UNCHANGEDSINCE n)] [+|-]FLAGS[.SILENT] flags`` (RFC 9051
    §6.4.6, RFC 7162 §3.1.3)."""

    tag: str
    uid: bool = False
    sequence_set: SequenceSet
    action: StoreAction = "replace"
    silent: bool = False
    flags: tuple[str, ...] = ()
    unchangedsince: int | None = None

    def __post_init__(self) -> None:
        if self.action not in ("replace", "add", "remove"):
            raise LocalProtocolError("Store.action is replace, add or remove")
        _modseq(self.unchangedsince, "UNCHANGEDSINCE", zero=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Copy:
    """``[UID] COPY set mailbox`` (RFC 9051 §6.4.7)."""

    tag: str
    uid: bool = False
    sequence_set: SequenceSet
    mailbox: str

    def __post_init__(self) -> None:
        _mailbox(self.mailbox, "mailbox")


@dataclass(frozen=True, slots=True, kw_only=True)
class Move:
    """``[UID] MOVE set mailbox`` (RFC 9051 §6.4.8, RFC 6851)."""

    tag: str
    uid: bool = False
    sequence_set: SequenceSet
    mailbox: str

    def __post_init__(self) -> None:
        _mailbox(self.mailbox, "mailbox")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sort:
    """``[UID] SORT (criteria) charset search-key...`` (RFC 5256 §3)."""

    tag: str
    uid: bool = False
    criteria: tuple[SortCriterion, ...]
    charset: str
    search: tuple[SearchKey, ...]

    def __post_init__(self) -> None:
        if not self.criteria or not self.search:
            raise LocalProtocolError("SORT needs sort criteria and search keys")
        if not self.charset:
            raise LocalProtocolError("Sort.charset must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class Thread:
    """``[UID] THREAD algorithm charset search-key...`` (RFC 5256 §3); ``algorithm``
    upper case (``ORDEREDSUBJECT``, ``REFERENCES``, ``REFS``...)."""

    tag: str
    uid: bool = False
    algorithm: str
    charset: str
    search: tuple[SearchKey, ...]

    def __post_init__(self) -> None:
        _upper_atoms((self.algorithm,), None, "THREAD algorithm")
        if not self.search:
            raise LocalProtocolError("THREAD needs search keys")
        if not self.charset:
            raise LocalProtocolError("Thread.charset must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class Id:
    """``ID (field value ...)`` or ``ID NIL`` (RFC 2971 §3.1): ``parameters`` is
    ``None`` for NIL, else the pairs in order (a value ``None`` for NIL)."""

    tag: str
    parameters: tuple[tuple[str, str | None], ...] | None = None

    def __post_init__(self) -> None:
        for field, value in self.parameters or ():
            if "\x00" in field or (value is not None and "\x00" in value):
                raise LocalProtocolError("ID fields and values must not hold NUL")


@dataclass(frozen=True, slots=True, kw_only=True)
class Compress:
    """``COMPRESS mechanism`` (RFC 4978 §3; ``DEFLATE`` is the only one defined)."""

    tag: str
    mechanism: str = "DEFLATE"

    def __post_init__(self) -> None:
        _upper_atoms((self.mechanism,), None, "compression mechanism")


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownCommand:
    """A command this parser does not know (``name`` upper case); the server answers
    ``tag BAD``."""

    tag: str
    name: str


Command: TypeAlias = (
    Capability
    | Noop
    | Logout
    | StartTLS
    | Authenticate
    | Login
    | Enable
    | Select
    | Examine
    | Create
    | Delete
    | Rename
    | Subscribe
    | Unsubscribe
    | List
    | Lsub
    | Namespace
    | Status
    | Append
    | Idle
    | Check
    | Close
    | Unselect
    | Expunge
    | Search
    | Fetch
    | Store
    | Copy
    | Move
    | Sort
    | Thread
    | Id
    | Compress
    | UnknownCommand
)
"""Any client command."""
