"""Client commands to frames: the client side of the command grammar (RFC 9051 §9).

``write_command`` is the inverse of
``parse_command``: for every command value,
``parse_command(write_command(c)) == c`` (the tests check it for every option). The
``Writer`` of ``mailagents.imap._grammar`` picks each string's form, so text holding
CR or LF always goes as a literal and can never end the command line early (the
command-injection class of bugs).

The options say what the server offers: ``literal_plus``/``literal_minus`` (RFC 7888),
``utf8`` (UTF8=ACCEPT enabled, RFC 6855: mailbox names in UTF-8, 8-bit quoted strings)
and ``binary`` (RFC 3516: octets with NUL may go as literal8).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from typing import Any

from mailagents._mutf7 import encode_mutf7
from mailagents._protocol import LocalProtocolError
from mailagents.imap._commands import (
    Append,
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
    Subscribe,
    Thread,
    UnknownCommand,
    Unselect,
    Unsubscribe,
)
from mailagents.imap._fetch_items import FetchAttribute, FetchBinarySize, FetchBody, Section
from mailagents.imap._frame import Frame
from mailagents.imap._grammar import Writer, WriterError
from mailagents.imap._search import (
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
    TextKey,
)
from mailagents.imap._seqset import SequenceSet

__all__ = ["write_command", "write_search_keys", "write_section"]

# tag = 1*<any ASTRING-CHAR except "+"> (RFC 9051 §9)
_TAG = re.compile(r'[^(){ \x00-\x1f\x7f%*"\\+\x80-\U0010ffff]+')
# list-char = ATOM-CHAR / list-wildcards / resp-specials
_LIST_MAILBOX = re.compile(rb'[^(){ \x00-\x1f\x7f"\\\x80-\xff]+')


def _keyword(w: Writer, text: str) -> None:
    w.raw(text.encode("ascii"))


def _set(w: Writer, s: SequenceSet) -> None:
    w.sequence_set(s)


def _mailbox(w: Writer, name: str) -> None:
    w.sp()
    w.mailbox(name)


def _list_mailbox(w: Writer, name: str) -> None:
    """``list-mailbox = 1*list-char / string``: the wildcards ``%`` and ``*`` go bare
    (quoted they would work too; bare is what clients send)."""
    try:
        data = name.encode("utf-8") if w.utf8 else encode_mutf7(name).encode("ascii")
    except UnicodeError as exc:
        raise WriterError(f"mailbox pattern cannot be encoded: {name!r}") from exc
    if _LIST_MAILBOX.fullmatch(data):
        w.raw(data)
    else:
        w.string(data)


def _items(w: Writer, items: tuple[Any, ...], write: Callable[[Writer, Any], None]) -> None:
    w.open()
    for i, item in enumerate(items):
        if i:
            w.sp()
        write(w, item)
    w.close()


# -- search keys ---------------------------------------------------------------------


def write_search_keys(w: Writer, keys: tuple[SearchKey, ...]) -> None:
    """``search-key *(SP search-key)``, iteratively (any depth can be written)."""
    todo: list[SearchKey | str] = []
    for i, key in enumerate(reversed(keys)):
        if i:
            todo.append(" ")
        todo.append(key)
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            _keyword(w, item)
        elif isinstance(item, Not):
            _keyword(w, "NOT ")
            todo.append(item.key)
        elif isinstance(item, Or):
            _keyword(w, "OR ")
            todo.extend((item.right, " ", item.left))
        elif isinstance(item, And):
            w.open()
            todo.append(")")
            for i, key in enumerate(reversed(item.keys)):
                if i:
                    todo.append(" ")
                todo.append(key)
        else:
            _leaf(w, item)


def _leaf(w: Writer, key: SearchKey) -> None:
    if isinstance(key, FlagKey):
        _keyword(w, key.name)
    elif isinstance(key, TextKey):
        _keyword(w, key.name + " ")
        w.astring(key.value)
    elif isinstance(key, HeaderKey):
        _keyword(w, "HEADER ")
        w.astring(key.field)
        w.sp()
        w.astring(key.value)
    elif isinstance(key, DateKey):
        _keyword(w, key.name + " ")
        w.date(key.date)
    elif isinstance(key, SizeKey):
        _keyword(w, key.name + " ")
        w.number(key.size)
    elif isinstance(key, KeywordKey):
        _keyword(w, key.name + " ")
        w.atom(key.keyword)
    elif isinstance(key, SetKey):
        if key.uid:
            _keyword(w, "UID ")
        _set(w, key.set)
    elif isinstance(key, ModSeqKey):
        _keyword(w, "MODSEQ ")
        if key.entry is not None and key.entry_type is not None:
            w.string(key.entry)
            w.sp()
            _keyword(w, key.entry_type)
            w.sp()
        w.number(key.modseq)
    else:  # pragma: no cover - the union is exhausted above
        raise LocalProtocolError(f"not a search key: {key!r}")


# -- FETCH items ------------------------------------------------------------------------


def write_section(w: Writer, section: Section) -> None:
    """``"[" section-spec "]"`` (RFC 9051 §9), header names as astrings."""
    w.raw(b"[")
    head = ".".join(str(n) for n in section.part)
    if section.text is not None:
        head = f"{head}.{section.text}" if head else section.text
    _keyword(w, head)
    if section.fields:
        w.sp()
        _items(w, section.fields, Writer.astring)
    w.raw(b"]")


def _fetch_item(w: Writer, item: FetchAttribute | FetchBody | FetchBinarySize) -> None:
    if isinstance(item, FetchAttribute):
        _keyword(w, item.name)
    elif isinstance(item, FetchBinarySize):
        _keyword(w, str(item))
    else:
        name = "BINARY" if item.binary else "BODY"
        _keyword(w, name + ".PEEK" if item.peek else name)
        write_section(w, item.section)
        if item.partial is not None:
            _keyword(w, f"<{item.partial[0]}.{item.partial[1]}>")


# -- the commands -----------------------------------------------------------------------


def _select(w: Writer, c: Select | Examine) -> None:
    _mailbox(w, c.mailbox)
    params: list[Callable[[], None]] = []
    if c.condstore:
        params.append(lambda: _keyword(w, "CONDSTORE"))
    q = c.qresync
    if q is not None:
        params.append(lambda: _qresync(w, q))
    if params:
        w.sp()
        w.open()
        for i, param in enumerate(params):
            if i:
                w.sp()
            param()
        w.close()


def _qresync(w: Writer, q: QResync) -> None:
    _keyword(w, f"QRESYNC ({q.uidvalidity} {q.modseq}")
    if q.known_uids is not None:
        w.sp()
        _set(w, q.known_uids)
    if q.seq_match is not None:
        w.sp()
        w.open()
        _set(w, q.seq_match[0])
        w.sp()
        _set(w, q.seq_match[1])
        w.close()
    w.close()


def _authenticate(w: Writer, c: Authenticate) -> None:
    w.sp()
    w.atom(c.mechanism)
    if c.initial_response is not None:
        w.sp()
        if c.initial_response:
            w.raw(binascii.b2a_base64(c.initial_response, newline=False))
        else:
            w.raw(b"=")


def _login(w: Writer, c: Login) -> None:
    w.sp()
    w.astring(c.user)
    w.sp()
    w.astring(c.password)


def _enable(w: Writer, c: Enable) -> None:
    for cap in c.capabilities:
        w.sp()
        w.atom(cap)


def _id(w: Writer, c: Id) -> None:
    w.sp()
    if c.parameters is None:
        _keyword(w, "NIL")
        return

    def pair(w: Writer, p: tuple[str, str | None]) -> None:
        w.string(p[0])
        w.sp()
        w.nstring(p[1])

    _items(w, c.parameters, pair)


def _compress(w: Writer, c: Compress) -> None:
    w.sp()
    w.atom(c.mechanism)


def _create(w: Writer, c: Create) -> None:
    _mailbox(w, c.mailbox)
    if c.special_use:
        _keyword(w, " (USE ")
        w.flag_list(c.special_use)
        w.close()


def _one_mailbox(w: Writer, c: Delete | Subscribe | Unsubscribe) -> None:
    _mailbox(w, c.mailbox)


def _rename(w: Writer, c: Rename) -> None:
    _mailbox(w, c.mailbox)
    _mailbox(w, c.new_name)


def _list(w: Writer, c: List) -> None:
    w.sp()
    if c.selection:
        _items(w, c.selection, _keyword)
        w.sp()
    w.mailbox(c.reference)
    w.sp()
    if len(c.patterns) == 1:
        _list_mailbox(w, c.patterns[0])
    else:
        _items(w, c.patterns, _list_mailbox)
    options: list[str] = list(c.return_options)
    if options or c.status is not None:
        _keyword(w, " RETURN ")
        w.open()
        _keyword(w, " ".join(options))
        if c.status is not None:
            if options:
                w.sp()
            _keyword(w, "STATUS ")
            _items(w, c.status, _keyword)
        w.close()


def _lsub(w: Writer, c: Lsub) -> None:
    _mailbox(w, c.reference)
    w.sp()
    _list_mailbox(w, c.pattern)


def _status(w: Writer, c: Status) -> None:
    _mailbox(w, c.mailbox)
    w.sp()
    _items(w, c.items, _keyword)


def _append(w: Writer, c: Append) -> None:
    _mailbox(w, c.mailbox)
    for message in c.messages:
        w.sp()
        if message.flags:
            w.flag_list(message.flags)
            w.sp()
        if message.internal_date is not None:
            w.date_time(message.internal_date)
            w.sp()
        if message.utf8:
            w.raw(b"UTF8 (")  # RFC 6855 §4
        w.literal(message.data, binary=message.binary)
        if message.utf8:
            w.close()


def _expunge(w: Writer, c: Expunge) -> None:
    if c.sequence_set is not None:
        w.sp()
        _set(w, c.sequence_set)


def _copy(w: Writer, c: Copy | Move) -> None:
    w.sp()
    _set(w, c.sequence_set)
    _mailbox(w, c.mailbox)


def _fetch(w: Writer, c: Fetch) -> None:
    w.sp()
    _set(w, c.sequence_set)
    w.sp()
    if isinstance(c.items, str):
        _keyword(w, c.items)
    else:
        _items(w, c.items, _fetch_item)
    if c.changedsince is not None:
        _keyword(w, f" (CHANGEDSINCE {c.changedsince}{' VANISHED' if c.vanished else ''})")


def _store(w: Writer, c: Store) -> None:
    w.sp()
    _set(w, c.sequence_set)
    w.sp()
    if c.unchangedsince is not None:
        _keyword(w, f"(UNCHANGEDSINCE {c.unchangedsince}) ")
    sign = {"replace": "", "add": "+", "remove": "-"}[c.action]
    _keyword(w, f"{sign}FLAGS{'.SILENT' if c.silent else ''} ")
    w.flag_list(c.flags)


def _search(w: Writer, c: Search) -> None:
    w.sp()
    if c.return_options is not None:
        _keyword(w, "RETURN ")
        _items(w, c.return_options, _keyword)
        w.sp()
    if c.charset is not None:
        _keyword(w, "CHARSET ")
        w.astring(c.charset)
        w.sp()
    write_search_keys(w, c.criteria)


def _sort(w: Writer, c: Sort) -> None:
    w.sp()
    _items(
        w,
        c.criteria,
        lambda w, s: _keyword(w, ("REVERSE " if s.reverse else "") + s.key),
    )
    w.sp()
    w.astring(c.charset)
    w.sp()
    write_search_keys(w, c.search)


def _thread(w: Writer, c: Thread) -> None:
    w.sp()
    w.atom(c.algorithm)
    w.sp()
    w.astring(c.charset)
    w.sp()
    write_search_keys(w, c.search)


def _nothing(w: Writer, c: Command) -> None:
    pass


_WRITERS: dict[type, tuple[str, Callable[[Writer, Any], None]]] = {
    Capability: ("CAPABILITY", _nothing),
    Noop: ("NOOP", _nothing),
    Logout: ("LOGOUT", _nothing),
    StartTLS: ("STARTTLS", _nothing),
    Namespace: ("NAMESPACE", _nothing),
    Idle: ("IDLE", _nothing),
    Check: ("CHECK", _nothing),
    Close: ("CLOSE", _nothing),
    Unselect: ("UNSELECT", _nothing),
    Authenticate: ("AUTHENTICATE", _authenticate),
    Login: ("LOGIN", _login),
    Enable: ("ENABLE", _enable),
    Id: ("ID", _id),
    Compress: ("COMPRESS", _compress),
    Select: ("SELECT", _select),
    Examine: ("EXAMINE", _select),
    Create: ("CREATE", _create),
    Delete: ("DELETE", _one_mailbox),
    Rename: ("RENAME", _rename),
    Subscribe: ("SUBSCRIBE", _one_mailbox),
    Unsubscribe: ("UNSUBSCRIBE", _one_mailbox),
    List: ("LIST", _list),
    Lsub: ("LSUB", _lsub),
    Status: ("STATUS", _status),
    Append: ("APPEND", _append),
    Expunge: ("EXPUNGE", _expunge),
    Copy: ("COPY", _copy),
    Move: ("MOVE", _copy),
    Fetch: ("FETCH", _fetch),
    Store: ("STORE", _store),
    Search: ("SEARCH", _search),
    Sort: ("SORT", _sort),
    Thread: ("THREAD", _thread),
}


def write_command(
    command: Command,
    *,
    literal_plus: bool = False,
    literal_minus: bool = False,
    utf8: bool = False,
    binary: bool = False,
) -> Frame:
    """The frame that sends ``command`` (RFC 9051 §9 ``command``).

    ``literal_plus``/``literal_minus``: the server announced LITERAL+/LITERAL- (RFC
    7888), so literals (those up to 4096 octets with LITERAL-) need no continuation;
    ``utf8``: UTF8=ACCEPT is enabled (RFC 6855); ``binary``: BINARY is offered (RFC
    3516) and octets holding NUL may go as literal8. A value that cannot be written
    (a tag or atom with specials, a mailbox name with lone surrogates) raises
    ``WriterError``, a ``LocalProtocolError``.
    """
    w = Writer(literal_plus=literal_plus, literal_minus=literal_minus, utf8=utf8, binary=binary)
    if not _TAG.fullmatch(command.tag):
        raise WriterError(f"not a tag: {command.tag!r}")
    _keyword(w, command.tag + " ")
    if isinstance(command, UnknownCommand):
        w.atom(command.name)
        return w.frame()
    name, write = _WRITERS[type(command)]
    if getattr(command, "uid", False):
        _keyword(w, "UID ")
    _keyword(w, name)
    write(w, command)
    return w.frame()
