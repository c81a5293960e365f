"""Client commands from frames: the server side of the command grammar (RFC 9051 §9).

``parse_command`` reads one whole ``Frame`` (the
command's lines and the literals between them) into one of the values of
``mailagents.imap._commands``, or raises ``CommandSyntaxError``, which the server
core answers with ``tag BAD message`` (``* BAD`` when not even the tag could be read).
Nothing else escapes, whatever the octets (a property the tests check).

The grammar is followed exactly: command names and keywords in any case, exactly one
SP between items, nothing after the last one (RFC 9051 §9: "SP" is one space, and the
line ends with the command). A command name this parser does not know is not a syntax
error but ``UnknownCommand``, so the server says what
it does not support. ``CommandLimits`` bounds what a single command can make the
server hold: items in a list, nesting of search keys (read without recursion, so
10,000 nested parentheses are refused cleanly) and ranges in a sequence set.

Charset handling (``SEARCH CHARSET``) is the server's; this module only reads.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from mailagents._mutf7 import decode_mutf7
from mailagents._protocol import LocalProtocolError
from mailagents.imap._commands import (
    LIST_RETURN_OPTIONS,
    LIST_SELECTION_OPTIONS,
    SEARCH_RETURN_OPTIONS,
    STATUS_ITEMS,
    Append,
    AppendMessage,
    Authenticate,
    Capability,
    Check,
    Close,
    Command,
    Compress,
    Copy,
    Create,
    Delete,
    Enable,
    Examine,
    Expunge,
    Fetch,
    Id,
    Idle,
    List,
    Login,
    Logout,
    Lsub,
    Move,
    Namespace,
    Noop,
    QResync,
    Rename,
    Search,
    Select,
    Sort,
    StartTLS,
    Status,
    Store,
    StoreAction,
    Subscribe,
    Thread,
    UnknownCommand,
    Unselect,
    Unsubscribe,
)
from mailagents.imap._fetch_items import (
    ATTRIBUTE_NAMES,
    MACROS,
    FetchAttribute,
    FetchBinarySize,
    FetchBody,
    FetchItem,
    FetchMacro,
    Section,
)
from mailagents.imap._frame import Frame, Streamed
from mailagents.imap._grammar import GrammarError, Reader
from mailagents.imap._search import (
    DATE_KEYS,
    FLAG_KEYS,
    SORT_KEYS,
    TEXT_KEYS,
    And,
    DateKey,
    FlagKey,
    HeaderKey,
    KeywordKey,
    ModSeqKey,
    Not,
    Or,
    SearchKey,
    SetKey,
    SizeKey,
    SortCriterion,
    TextKey,
)
from mailagents.imap._seqset import SequenceSet

__all__ = ["CommandLimits", "CommandSyntaxError", "parse_command", "read_section"]

T = TypeVar("T")


class CommandSyntaxError(Exception):
    """A command that does not follow the grammar (or exceeds a limit).

    ``tag`` is the command's tag when it could be read (answer ``tag BAD message``),
    else ``None`` (answer ``* BAD message``); ``message`` says what was wrong.
    """

    def __init__(self, message: str, tag: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.tag = tag


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandLimits:
    """What one command may make the server hold.

    ``max_items``: entries in any one list (FETCH items, flags, STATUS items, keys of
    a parenthesised search list, LIST patterns, ID pairs, APPEND messages);
    ``max_depth``: nesting of search keys (each NOT, OR and parenthesised list is one
    level); ``max_ranges``: ranges in one sequence set.
    """

    max_items: int = 1000
    max_depth: int = 100
    max_ranges: int = 50_000

    def __post_init__(self) -> None:
        if self.max_items < 1 or self.max_depth < 1 or self.max_ranges < 1:
            raise LocalProtocolError("CommandLimits must all be at least 1")


class _Error(Exception):
    """A limit or a rule above the primitives (turned into CommandSyntaxError)."""


_FETCH_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.")
_DIGITS = frozenset(b"0123456789")
# list-char = ATOM-CHAR / list-wildcards / resp-specials (RFC 9051 §9).
_LIST_CHARS = frozenset(set(range(0x21, 0x7F)) - set(b'(){"\\'))
_BASE64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


class _Parser:
    __slots__ = ("limits", "r", "utf8")

    def __init__(self, frame: Frame, utf8: bool, limits: CommandLimits) -> None:
        self.r = Reader(frame, utf8=utf8)
        self.utf8 = utf8
        self.limits = limits

    # -- helpers -------------------------------------------------------------------

    def take(self, allowed: frozenset[int]) -> bytes:
        """The longest run of octets from ``allowed`` at the cursor."""
        r = self.r
        out = bytearray()
        while (c := r.peek()) is not None and c in allowed:
            r.accept(bytes((c,)))
            out.append(c)
        return bytes(out)

    def keyword(self) -> str:
        return self.r.atom().upper()

    def items(self, item: Callable[[], T], *, allow_empty: bool = False) -> tuple[T, ...]:
        """``"(" item *(SP item) ")"`` within ``max_items``."""
        r = self.r
        r.expect(b"(")
        if r.accept(b")"):
            if not allow_empty:
                raise _Error("an empty list where at least one item is required")
            return ()
        out: list[T] = []
        while True:
            if len(out) >= self.limits.max_items:
                raise _Error(f"more than {self.limits.max_items} items in a list")
            out.append(item())
            if r.accept(b")"):
                return tuple(out)
            r.sp()

    def seqset(self) -> SequenceSet:
        s = self.r.sequence_set()
        if len(s.ranges) > self.limits.max_ranges:
            raise _Error(f"more than {self.limits.max_ranges} ranges in a sequence set")
        return s

    def text_string(self) -> str:
        value = self.r.string()
        if isinstance(value, Streamed):
            raise _Error("a streamed literal where text is expected")
        return value.decode("utf-8", "surrogateescape")

    def list_mailbox(self) -> str:
        """``list-mailbox = 1*list-char / string`` (RFC 9051 §9), decoded like a
        mailbox name. ``~`` is a list-char (a literal8 is no ``string``)."""
        r = self.r
        c = r.peek()
        if c == ord('"') or c == ord("{"):
            value = r.string()
            if isinstance(value, Streamed):
                raise _Error("a streamed literal as a mailbox pattern")
            raw = value
        else:
            raw = self.take(_LIST_CHARS)
            if not raw:
                raise _Error("a mailbox pattern expected")
        try:
            if self.utf8 or any(b >= 0x80 for b in raw):
                return raw.decode("utf-8")
            return decode_mutf7(raw.decode("ascii"))
        except ValueError:
            raise _Error(f"mailbox pattern not in its encoding: {raw[:50]!r}") from None

    def modseq(self, *, zero: bool) -> int:
        value = self.r.number64()
        if value == 0 and not zero:
            raise _Error("a mod-sequence value is at least 1 (RFC 7162 §7)")
        return value

    # -- the command line ------------------------------------------------------------

    def command(self, tag: str) -> Command:
        r = self.r
        name = self.keyword()
        if name == "UID":
            r.sp()
            sub = self.keyword()
            handler = _UID_COMMANDS.get(sub)
            if handler is None:
                raise _Error("UID takes COPY, MOVE, FETCH, SEARCH, STORE, EXPUNGE, SORT, THREAD")
            command = handler(self, tag, True)
        else:
            simple = _SIMPLE.get(name)
            if simple is not None:
                r.end()
                return simple(tag=tag)
            uid_handler = _UID_COMMANDS.get(name)
            if uid_handler is not None:
                command = uid_handler(self, tag, False)
            else:
                other = _COMMANDS.get(name)
                if other is None:
                    return UnknownCommand(tag=tag, name=name)
                command = other(self, tag)
        r.end()
        return command

    # -- not selected ---------------------------------------------------------------

    def authenticate(self, tag: str) -> Command:
        r = self.r
        r.sp()
        mechanism = self.keyword()
        initial: bytes | None = None
        if not r.at_end():
            r.sp()
            if r.accept(b"="):
                if r.peek() is not None:
                    raise _Error("'=' stands alone as the empty initial response")
                initial = b""
            else:
                data = self.take(_BASE64_CHARS)
                try:
                    initial = binascii.a2b_base64(data, strict_mode=True)
                except binascii.Error:
                    raise _Error("the initial response is not base64 (RFC 4959)") from None
                if not data:
                    raise _Error("an initial response expected")
        return Authenticate(tag=tag, mechanism=mechanism, initial_response=initial)

    def login(self, tag: str) -> Command:
        r = self.r
        r.sp()
        user = r.astring()
        r.sp()
        password = r.astring()
        return Login(tag=tag, user=user, password=password)

    def enable(self, tag: str) -> Command:
        r = self.r
        caps: list[str] = []
        while not r.at_end():
            if len(caps) >= self.limits.max_items:
                raise _Error(f"more than {self.limits.max_items} capabilities")
            r.sp()
            caps.append(self.keyword())
        if not caps:
            raise _Error("ENABLE names at least one capability")
        return Enable(tag=tag, capabilities=tuple(caps))

    def id_(self, tag: str) -> Command:
        r = self.r
        r.sp()
        if r.accept(b"NIL"):
            return Id(tag=tag, parameters=None)

        def pair() -> tuple[str, str | None]:
            field = self.text_string()
            r.sp()
            value = r.nstring()
            if isinstance(value, Streamed):
                raise _Error("a streamed literal as an ID value")
            return field, None if value is None else value.decode("utf-8", "surrogateescape")

        return Id(tag=tag, parameters=self.items(pair, allow_empty=True))

    def compress(self, tag: str) -> Command:
        self.r.sp()
        return Compress(tag=tag, mechanism=self.keyword())

    # -- mailboxes ---------------------------------------------------------------------

    def _select_params(self) -> tuple[bool, QResync | None]:
        """``select-params`` (RFC 7162 §7): ``SP "(" select-param *(SP select-param) ")"``."""
        r = self.r
        condstore = False
        qresync: QResync | None = None
        if r.at_end():
            return condstore, qresync
        r.sp()

        def param() -> None:
            nonlocal condstore, qresync
            name = self.keyword()
            if name == "CONDSTORE":
                condstore = True
            elif name == "QRESYNC" and qresync is None:
                r.sp()
                qresync = self._qresync()
            else:
                raise _Error(f"unknown or repeated SELECT parameter {name}")

        self.items(param)
        return condstore, qresync

    def _qresync(self) -> QResync:
        r = self.r
        r.expect(b"(")
        uidvalidity = r.nz_number()
        r.sp()
        modseq = self.modseq(zero=False)
        known: SequenceSet | None = None
        match: tuple[SequenceSet, SequenceSet] | None = None
        if r.accept(b")"):
            return QResync(uidvalidity=uidvalidity, modseq=modseq)
        r.sp()
        if r.peek() != ord("("):
            known = self.seqset()
            if r.accept(b")"):
                return QResync(uidvalidity=uidvalidity, modseq=modseq, known_uids=known)
            r.sp()
        # seq-match-data = "(" known-sequence-set SP known-uid-set ")"
        r.expect(b"(")
        first = self.seqset()
        r.sp()
        match = (first, self.seqset())
        r.expect(b")")
        r.expect(b")")
        return QResync(uidvalidity=uidvalidity, modseq=modseq, known_uids=known, seq_match=match)

    def select(self, tag: str) -> Command:
        self.r.sp()
        mailbox = self.r.mailbox()
        condstore, qresync = self._select_params()
        return Select(tag=tag, mailbox=mailbox, condstore=condstore, qresync=qresync)

    def examine(self, tag: str) -> Command:
        self.r.sp()
        mailbox = self.r.mailbox()
        condstore, qresync = self._select_params()
        return Examine(tag=tag, mailbox=mailbox, condstore=condstore, qresync=qresync)

    def create(self, tag: str) -> Command:
        r = self.r
        r.sp()
        mailbox = r.mailbox()
        uses: tuple[str, ...] = ()
        if not r.at_end():
            r.sp()
            seen = False

            def param() -> None:
                nonlocal uses, seen
                if self.keyword() != "USE" or seen:
                    raise _Error("CREATE takes one USE parameter (RFC 6154 §3)")
                seen = True
                r.sp()
                uses = self.items(self._use_attr, allow_empty=True)

            self.items(param)
        return Create(tag=tag, mailbox=mailbox, special_use=uses)

    def _use_attr(self) -> str:
        attr = self.r.flag()
        if not attr.startswith("\\"):
            raise _Error("a special-use attribute is \\atom (RFC 6154 §6)")
        return attr

    def _one_mailbox(self) -> str:
        self.r.sp()
        return self.r.mailbox()

    def delete(self, tag: str) -> Command:
        return Delete(tag=tag, mailbox=self._one_mailbox())

    def rename(self, tag: str) -> Command:
        old = self._one_mailbox()
        return Rename(tag=tag, mailbox=old, new_name=self._one_mailbox())

    def subscribe(self, tag: str) -> Command:
        return Subscribe(tag=tag, mailbox=self._one_mailbox())

    def unsubscribe(self, tag: str) -> Command:
        return Unsubscribe(tag=tag, mailbox=self._one_mailbox())

    def _option(self, allowed: frozenset[str], what: str) -> str:
        name = self.keyword()
        if name not in allowed:
            raise _Error(f"unknown {what} {name}")
        return name

    def list_(self, tag: str) -> Command:
        """RFC 5258 §6: ``list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat
        [SP list-return-opts]``; ``mbox-or-pat = list-mailbox / patterns``."""
        r = self.r
        r.sp()
        selection: tuple[str, ...] = ()
        if r.peek() == ord("("):
            selection = self.items(
                lambda: self._option(LIST_SELECTION_OPTIONS, "LIST selection option"),
                allow_empty=True,
            )
            r.sp()
        reference = r.mailbox()
        r.sp()
        # mbox-or-pat = list-mailbox / patterns (RFC 5258 §6)
        patterns = self.items(self.list_mailbox) if r.peek() == ord("(") else (self.list_mailbox(),)
        returns: list[str] = []
        status: tuple[str, ...] | None = None
        if not r.at_end():
            r.sp()
            r.expect(b"RETURN")
            r.sp()

            def option() -> None:
                nonlocal status
                name = self.keyword()
                if name == "STATUS" and status is None:
                    r.sp()
                    status = self.items(self._status_item)
                elif name in LIST_RETURN_OPTIONS:
                    returns.append(name)
                else:
                    raise _Error(f"unknown or repeated LIST return option {name}")

            self.items(option, allow_empty=True)
        return List(
            tag=tag,
            reference=reference,
            patterns=patterns,
            selection=selection,
            return_options=tuple(returns),
            status=status,
        )

    def lsub(self, tag: str) -> Command:
        r = self.r
        r.sp()
        reference = r.mailbox()
        r.sp()
        return Lsub(tag=tag, reference=reference, pattern=self.list_mailbox())

    def _status_item(self) -> str:
        return self._option(STATUS_ITEMS, "STATUS item")

    def status(self, tag: str) -> Command:
        mailbox = self._one_mailbox()
        self.r.sp()
        return Status(tag=tag, mailbox=mailbox, items=self.items(self._status_item))

    def append(self, tag: str) -> Command:
        """RFC 3502 §6.3.11 (MULTIAPPEND): ``append = "APPEND" SP mailbox 1*append-message``,
        ``append-message = append-opts SP append-data``, ``append-opts = [SP flag-list]
        [SP date-time]``, ``append-data = literal / literal8`` (RFC 3516 §4.4)
        ``/ utf8-literal``, ``utf8-literal = "UTF8" SP "(" literal8 ")"`` (RFC 6855 §4)."""
        r = self.r
        mailbox = self._one_mailbox()
        messages: list[AppendMessage] = []
        while True:
            if len(messages) >= self.limits.max_items:
                raise _Error(f"more than {self.limits.max_items} messages in one APPEND")
            r.sp()
            flags: tuple[str, ...] = ()
            if r.peek() == ord("("):
                flags = self.items(r.flag, allow_empty=True)
                r.sp()
            date = None
            if r.peek() == ord('"'):
                date = r.date_time()
                r.sp()
            utf8 = r.accept(b"UTF8 (")
            allowed = (ord("~"),) if utf8 else (ord("{"), ord("~"))
            if r.peek() not in allowed:
                raise _Error("APPEND takes the message as a literal (UTF8 as a literal8)")
            data = r.string()
            if utf8:
                r.expect(b")")
            messages.append(
                AppendMessage(
                    flags=flags, internal_date=date, data=data, binary=r.last_literal8, utf8=utf8
                )
            )
            if r.at_end():
                return Append(tag=tag, mailbox=mailbox, messages=tuple(messages))

    # -- the selected state --------------------------------------------------------------

    def expunge(self, tag: str, uid: bool) -> Command:
        if not uid:
            return Expunge(tag=tag)
        self.r.sp()
        return Expunge(tag=tag, uid=True, sequence_set=self.seqset())

    def copy(self, tag: str, uid: bool) -> Command:
        self.r.sp()
        s = self.seqset()
        return Copy(tag=tag, uid=uid, sequence_set=s, mailbox=self._one_mailbox())

    def move(self, tag: str, uid: bool) -> Command:
        self.r.sp()
        s = self.seqset()
        return Move(tag=tag, uid=uid, sequence_set=s, mailbox=self._one_mailbox())

    def fetch(self, tag: str, uid: bool) -> Command:
        r = self.r
        r.sp()
        s = self.seqset()
        r.sp()
        items: tuple[FetchItem, ...] | FetchMacro
        if r.peek() == ord("("):
            items = self.items(self.fetch_att)
        else:
            name = self._fetch_name()
            macro = name in MACROS and r.peek() != ord("[")
            items = name if macro else (self.fetch_att(name),)  # type: ignore[assignment]
        changedsince: int | None = None
        vanished = False
        if not r.at_end():
            r.sp()

            def modifier() -> None:
                nonlocal changedsince, vanished
                name = self.keyword()
                if name == "CHANGEDSINCE" and changedsince is None:
                    r.sp()
                    changedsince = self.modseq(zero=False)
                elif name == "VANISHED" and not vanished:
                    vanished = True
                else:
                    raise _Error(f"unknown or repeated FETCH modifier {name}")

            self.items(modifier)
        return Fetch(
            tag=tag,
            uid=uid,
            sequence_set=s,
            items=items,
            changedsince=changedsince,
            vanished=vanished,
        )

    def _fetch_name(self) -> str:
        return self.take(_FETCH_NAME_CHARS).decode("ascii").upper()

    def fetch_att(self, name: str | None = None) -> FetchItem:
        """One ``fetch-att`` (RFC 9051 §9); ``name`` when already read."""
        r = self.r
        if name is None:
            name = self._fetch_name()
        bracket = r.peek() == ord("[")
        if name in ("BODY", "BODY.PEEK") and bracket:
            section = read_section(r, self.limits.max_items)
            return FetchBody(section=section, partial=self._partial(), peek=name == "BODY.PEEK")
        if name in ("BINARY", "BINARY.PEEK") and bracket:
            part = self._binary_section()
            return FetchBody(
                section=Section(part=part),
                partial=self._partial(),
                peek=name == "BINARY.PEEK",
                binary=True,
            )
        if name == "BINARY.SIZE" and bracket:
            return FetchBinarySize(part=self._binary_section())
        if name in ATTRIBUTE_NAMES and not bracket:
            return FetchAttribute(name=name)
        raise _Error(f"unknown FETCH item {name or 'missing'}")

    def _binary_section(self) -> tuple[int, ...]:
        """``section-binary = "[" [section-part] "]"`` (RFC 3516 §4.1)."""
        r = self.r
        r.expect(b"[")
        part: list[int] = []
        if not r.accept(b"]"):
            while True:
                part.append(r.nz_number())
                if r.accept(b"]"):
                    break
                r.expect(b".")
        return tuple(part)

    def _partial(self) -> tuple[int, int] | None:
        """``partial = "<" number64 "." nz-number64 ">"`` (RFC 9051 §9)."""
        r = self.r
        if not r.accept(b"<"):
            return None
        origin = r.number64()
        r.expect(b".")
        length = r.number64()
        if length == 0:
            raise _Error("a partial FETCH's length is at least 1")
        r.expect(b">")
        return origin, length

    def store(self, tag: str, uid: bool) -> Command:
        """``store = "STORE" SP sequence-set [store-modifiers] SP store-att-flags``
        (RFC 7162 §7); ``store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP
        (flag-list / (flag *(SP flag)))``."""
        r = self.r
        r.sp()
        s = self.seqset()
        r.sp()
        unchangedsince: int | None = None
        if r.peek() == ord("("):

            def modifier() -> None:
                nonlocal unchangedsince
                if self.keyword() != "UNCHANGEDSINCE" or unchangedsince is not None:
                    raise _Error("STORE takes one modifier, UNCHANGEDSINCE (RFC 7162)")
                r.sp()
                unchangedsince = self.modseq(zero=True)

            self.items(modifier)
            r.sp()
        action: StoreAction = "replace"
        if r.accept(b"+"):
            action = "add"
        elif r.accept(b"-"):
            action = "remove"
        name = self.take(_FETCH_NAME_CHARS).upper()
        if name not in (b"FLAGS", b"FLAGS.SILENT"):
            raise _Error("STORE takes FLAGS, +FLAGS or -FLAGS")
        r.sp()
        if r.peek() == ord("("):
            flags = self.items(r.flag, allow_empty=True)
        else:
            found = [r.flag()]
            while not r.at_end():
                if len(found) >= self.limits.max_items:
                    raise _Error(f"more than {self.limits.max_items} flags")
                r.sp()
                found.append(r.flag())
            flags = tuple(found)
        return Store(
            tag=tag,
            uid=uid,
            sequence_set=s,
            action=action,
            silent=name == b"FLAGS.SILENT",
            flags=flags,
            unchangedsince=unchangedsince,
        )

    def search(self, tag: str, uid: bool) -> Command:
        """``search = "SEARCH" [search-return-opts] SP search-program`` (RFC 9051 §9);
        ``search-program = ["CHARSET" SP charset SP] search-key *(SP search-key)``."""
        r = self.r
        r.sp()
        returns: tuple[str, ...] | None = None
        if r.accept(b"RETURN "):
            returns = self.items(
                lambda: self._option(SEARCH_RETURN_OPTIONS, "SEARCH return option"),
                allow_empty=True,
            )
            r.sp()
        charset: str | None = None
        if r.accept(b"CHARSET "):
            charset = r.astring()
            r.sp()
        return Search(
            tag=tag, uid=uid, return_options=returns, charset=charset, criteria=self.keys()
        )

    def sort(self, tag: str, uid: bool) -> Command:
        """RFC 5256 §5: ``sort = ["UID" SP] "SORT" SP sort-criteria SP search-criteria``."""
        r = self.r
        r.sp()

        def criterion() -> SortCriterion:
            reverse = r.accept(b"REVERSE ")
            return SortCriterion(key=self._option(SORT_KEYS, "sort key"), reverse=reverse)

        criteria = self.items(criterion)
        r.sp()
        charset = r.astring()
        r.sp()
        return Sort(tag=tag, uid=uid, criteria=criteria, charset=charset, search=self.keys())

    def thread(self, tag: str, uid: bool) -> Command:
        """RFC 5256 §5: ``thread = ["UID" SP] "THREAD" SP thread-alg SP search-criteria``."""
        r = self.r
        r.sp()
        algorithm = self.keyword()
        r.sp()
        charset = r.astring()
        r.sp()
        return Thread(tag=tag, uid=uid, algorithm=algorithm, charset=charset, search=self.keys())

    # -- search keys, without recursion ----------------------------------------------

    def keys(self) -> tuple[SearchKey, ...]:
        """``search-key *(SP search-key)`` up to the end of the frame.

        ``NOT``, ``OR`` and parenthesised lists are kept on an explicit stack, so the
        depth is bounded by ``max_depth`` and never by Python's recursion limit.
        """
        r = self.r
        limits = self.limits
        top: list[SearchKey] = []
        # Each open node: ("not", []), ("or", [left?]) or ("and", [keys...]).
        stack: list[tuple[str, list[SearchKey]]] = []
        while True:
            if r.peek() == ord("("):
                r.expect(b"(")
                self._push(stack, "and")
                continue
            start = r.peek()
            if start is not None and (start in _DIGITS or start in b"*$"):
                key: SearchKey = SetKey(set=self.seqset())
            else:
                name = self.keyword()
                if name == "NOT":
                    r.sp()
                    self._push(stack, "not")
                    continue
                if name == "OR":
                    r.sp()
                    self._push(stack, "or")
                    continue
                key = self._leaf(name)
            # Close every node this key completes, then find where the next key goes.
            while True:
                if not stack:
                    if len(top) >= limits.max_items:
                        raise _Error(f"more than {limits.max_items} search keys")
                    top.append(key)
                    if r.at_end():
                        return tuple(top)
                    r.sp()
                    break
                kind, found = stack[-1]
                if kind == "not":
                    stack.pop()
                    key = Not(key=key)
                    continue
                found.append(key)
                if kind == "or":
                    if len(found) == 2:
                        stack.pop()
                        key = Or(left=found[0], right=found[1])
                        continue
                    r.sp()
                    break
                if r.accept(b")"):
                    stack.pop()
                    key = And(keys=tuple(found))
                    continue
                if len(found) >= limits.max_items:
                    raise _Error(f"more than {limits.max_items} keys in a search list")
                r.sp()
                break

    def _push(self, stack: list[tuple[str, list[SearchKey]]], kind: str) -> None:
        if len(stack) + 1 >= self.limits.max_depth:
            raise _Error(f"search keys nested deeper than {self.limits.max_depth}")
        stack.append((kind, []))

    def _leaf(self, name: str) -> SearchKey:
        r = self.r
        if name in FLAG_KEYS:
            return FlagKey(name=name)
        if name not in _ARGUMENT_KEYS:
            raise _Error(f"unknown search key {name}")
        r.sp()
        if name in TEXT_KEYS:
            return TextKey(name=name, value=r.astring())  # type: ignore[arg-type]
        if name in DATE_KEYS:
            return DateKey(name=name, date=r.date())  # type: ignore[arg-type]
        if name in ("LARGER", "SMALLER"):
            return SizeKey(name=name, size=r.number64())  # type: ignore[arg-type]
        if name in ("KEYWORD", "UNKEYWORD"):
            return KeywordKey(name=name, keyword=r.atom())  # type: ignore[arg-type]
        if name == "HEADER":
            field = r.astring()
            r.sp()
            return HeaderKey(field=field, value=r.astring())
        if name == "UID":
            return SetKey(set=self.seqset(), uid=True)
        if name == "MODSEQ":
            # RFC 7162 §7: "MODSEQ" [search-modseq-ext] SP mod-sequence-valzer;
            # search-modseq-ext = SP entry-name SP entry-type-req.
            if r.peek() in (ord('"'), ord("{")):
                entry = self.text_string()
                r.sp()
                kind = r.atom().lower()
                if kind not in ("priv", "shared", "all"):
                    raise _Error("MODSEQ entry type is priv, shared or all (RFC 7162)")
                r.sp()
                return ModSeqKey(
                    modseq=self.modseq(zero=True),
                    entry=entry,
                    entry_type=kind,  # type: ignore[arg-type]
                )
            return ModSeqKey(modseq=self.modseq(zero=True))
        raise AssertionError(name)  # pragma: no cover - _ARGUMENT_KEYS lists them all


_ARGUMENT_KEYS = (
    TEXT_KEYS
    | DATE_KEYS
    | {
        "LARGER",
        "SMALLER",
        "KEYWORD",
        "UNKEYWORD",
        "HEADER",
        "UID",
        "MODSEQ",
    }
)


def read_section(r: Reader, max_fields: int = 1000) -> Section:
    """Read a ``section`` (``[`` ... ``]``, RFC 9051 §9) at the reader's cursor: the
    part shared by ``BODY[...]`` in commands and in FETCH responses. Raises
    ``GrammarError`` (``CommandSyntaxError`` is the parser's wrapping of it)."""
    r.expect(b"[")
    part: list[int] = []
    text: str | None = None
    fields: list[str] = []
    if r.accept(b"]"):
        return Section()
    while True:
        c = r.peek()
        if c is not None and c in _DIGITS:
            part.append(r.nz_number())
            if r.accept(b"."):
                continue
            break
        text = r.atom().upper()
        break
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        r.sp()
        r.expect(b"(")
        while True:
            if len(fields) >= max_fields:
                raise GrammarError(f"more than {max_fields} header field names")
            fields.append(r.astring())
            if r.accept(b")"):
                break
            r.sp()
    elif text not in (None, "HEADER", "TEXT", "MIME"):
        raise GrammarError(f"unknown section text {text}")
    r.expect(b"]")
    try:
        return Section(part=tuple(part), text=text, fields=tuple(fields))  # type: ignore[arg-type]
    except LocalProtocolError as exc:
        raise GrammarError(str(exc)) from None


_SIMPLE: dict[str, Callable[..., Command]] = {
    "CAPABILITY": Capability,
    "NOOP": Noop,
    "LOGOUT": Logout,
    "STARTTLS": StartTLS,
    "NAMESPACE": Namespace,
    "IDLE": Idle,
    "CHECK": Check,
    "CLOSE": Close,
    "UNSELECT": Unselect,
}

_COMMANDS: dict[str, Callable[[_Parser, str], Command]] = {
    "AUTHENTICATE": _Parser.authenticate,
    "LOGIN": _Parser.login,
    "ENABLE": _Parser.enable,
    "ID": _Parser.id_,
    "COMPRESS": _Parser.compress,
    "SELECT": _Parser.select,
    "EXAMINE": _Parser.examine,
    "CREATE": _Parser.create,
    "DELETE": _Parser.delete,
    "RENAME": _Parser.rename,
    "SUBSCRIBE": _Parser.subscribe,
    "UNSUBSCRIBE": _Parser.unsubscribe,
    "LIST": _Parser.list_,
    "LSUB": _Parser.lsub,
    "STATUS": _Parser.status,
    "APPEND": _Parser.append,
}

_UID_COMMANDS: dict[str, Callable[[_Parser, str, bool], Command]] = {
    "EXPUNGE": _Parser.expunge,
    "COPY": _Parser.copy,
    "MOVE": _Parser.move,
    "FETCH": _Parser.fetch,
    "STORE": _Parser.store,
    "SEARCH": _Parser.search,
    "SORT": _Parser.sort,
    "THREAD": _Parser.thread,
}


def parse_command(
    frame: Frame, *, utf8: bool = False, limits: CommandLimits = CommandLimits()
) -> Command:
    """Read one client command from ``frame`` (RFC 9051 §9 ``command``).

    ``utf8``: UTF8=ACCEPT or IMAP4rev2 is enabled, so mailbox names are UTF-8 rather
    than modified UTF-7 (RFC 6855 §3, RFC 9051 §6.3.1). Raises
    ``CommandSyntaxError`` for anything that is not a command of the grammar
    (and for ``limits`` exceeded); an unknown command name gives
    ``UnknownCommand``.
    """
    parser = _Parser(frame, utf8, limits)
    try:
        tag = parser.r.tag()
    except GrammarError as exc:
        raise CommandSyntaxError(f"no tag: {exc.message}") from None
    try:
        parser.r.sp()
        return parser.command(tag)
    except GrammarError as exc:
        raise CommandSyntaxError(exc.message, tag) from None
    except (_Error, LocalProtocolError) as exc:
        raise CommandSyntaxError(str(exc), tag) from None
