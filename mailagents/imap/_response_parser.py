"""Server responses from frames (RFC 9051 §7, formal syntax in §9, and the extensions
of issue 14).

``parse_response`` reads one ``Frame`` (one whole
response, its literals included) into one of the classes of
``mailagents.imap._responses``. Status responses are read with a regex on their
line (their text is free); every data response is first turned into a tree of values
by ``mailagents.imap._response_tree`` (one regex per line, an explicit stack) and
then interpreted. Whatever the input, the parser returns a response or raises
``ResponseSyntaxError``; an untagged response it does not know is kept as
``UntaggedData`` (RFC 9051 §7 allows extensions).

Pure functions, no I/O.
"""

from __future__ import annotations

import binascii
import datetime
import re
from collections.abc import Callable
from typing import Any

from mailagents._mutf7 import decode_mutf7
from mailagents._protocol import LocalProtocolError
from mailagents.imap._body_model import Body, MultipartBody
from mailagents.imap._fetch_data import BodySection, ExtValue, FetchData, SectionName
from mailagents.imap._fetch_items import Section
from mailagents.imap._frame import Frame, Streamed
from mailagents.imap._grammar import MONTHS
from mailagents.imap._response_body import body_of, envelope_of, nstr, number_of, string_of
from mailagents.imap._response_codes import (
    AppendUidCode,
    BadCharsetCode,
    CapabilityCode,
    Code,
    CopyUidCode,
    HighestModSeqCode,
    ModifiedCode,
    PermanentFlagsCode,
    ResponseCode,
    UidNextCode,
    UidValidityCode,
    UnseenCode,
)
from mailagents.imap._response_tree import ResponseSyntaxError, fast_tree, read_tree, text_tree
from mailagents.imap._responses import (
    CapabilityData,
    Continuation,
    EnabledData,
    ESearchData,
    ExistsData,
    ExpungeData,
    FlagsData,
    IdData,
    ListData,
    Namespace,
    NamespaceData,
    RecentData,
    Response,
    SearchData,
    SortData,
    StatusData,
    StatusResponse,
    Thread,
    ThreadData,
    UntaggedData,
    VanishedData,
)
from mailagents.imap._seqset import SequenceSet

__all__ = ["ResponseSyntaxError", "parse_response"]

_MAX64 = 2**63 - 1
_TAG = r'[^(){ \x00-\x1f\x7f%*"\\+\x80-\U0010ffff]+'
# No IGNORECASE on the whole: with it, the tag's negated class would refuse "I" and "K"
# (their case variants U+0131 and U+212A lie in the excluded range).
_STATUS = re.compile(rf"(\*|{_TAG}) ((?i:OK|NO|BAD|PREAUTH|BYE))(?: (.*))?", re.DOTALL)
_CODE = re.compile(r"\[([^\]]*)\](?: |$)")
_CODE_NAME = re.compile(r'[^(){ \x00-\x1f\x7f%*"\\\]\x80-\U0010ffff]+')
_UNTAGGED = re.compile(r"\* (?:([0-9]+) )?([^ ()\[\]]+)(?: |$)")
_DATE_TIME = re.compile(
    r" ?([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{4})"
)
_MONTH = {m.upper(): i for i, m in enumerate(MONTHS, 1)}
_ZONES: dict[str, datetime.timezone] = {}
_SECTION = re.compile(
    r"(?P<part>[0-9]+(?:\.[0-9]+)*)?"
    r"(?:(?(part)\.)(?P<text>HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME))?",
    re.IGNORECASE,
)
_ORIGIN = re.compile(r"<([0-9]{1,19})>")
_SEQSET_CHARS = re.compile(r"[0-9:,*$]+")
_STATUS_NUMBERS = frozenset(
    {"MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "RECENT", "APPENDLIMIT"}
)
_RESULT_NAMES = frozenset({"MIN", "MAX", "COUNT", "ALL", "MODSEQ"})


def parse_response(
    frame: Frame,
    *,
    utf8: bool = False,
    challenge: bool = False,
    max_depth: int = 100,
    max_items: int = 100_000,
) -> Response:
    """The response a frame holds.

    ``utf8`` once UTF8=ACCEPT is enabled (RFC 6855: mailbox names are UTF-8, not
    modified UTF-7); ``challenge`` while an AUTHENTICATE exchange waits for the
    server, so that ``+ base64`` is decoded into ``Continuation.data`` (RFC 9051
    §7.6). ``max_depth`` bounds the nesting of lists (a BODYSTRUCTURE 10,000 deep is
    an error, not a ``RecursionError``), ``max_items`` the number of items.
    """
    try:
        return _parse(frame, utf8, challenge, max_depth, max_items)
    except ResponseSyntaxError:
        raise
    except (
        IndexError,
        KeyError,
        TypeError,
        ValueError,
        LocalProtocolError,
        RecursionError,
    ) as exc:
        raise ResponseSyntaxError(f"malformed response: {exc}") from exc


def _parse(frame: Frame, utf8: bool, challenge: bool, max_depth: int, max_items: int) -> Response:
    first = frame.lines[0].decode("utf-8", "surrogateescape")
    if first[:1] == "+":
        return _continuation(frame, first, challenge)
    if first[:2] == "* ":
        m = _UNTAGGED.match(first)
        if m is None:
            raise ResponseSyntaxError("an untagged response without a name")
        number, name = m.groups()
        name = name.upper()
        if number is None and name in ("OK", "NO", "BAD", "PREAUTH", "BYE"):
            return _status(frame, first)
        rest = first[m.end() :]
        if number is not None and name == "FETCH":
            fetched = _fast_fetch(number_of(number), frame, rest, max_depth, max_items)
            if fetched is not None:
                return fetched
        tree = read_tree(frame, rest, max_depth=max_depth, max_items=max_items)
        if number is not None:
            n = number_of(number)
            if name == "FETCH":
                if len(tree) != 1 or type(tree[0]) is not list:
                    raise ResponseSyntaxError("FETCH data is one list")
                return _fetch(n, tree[0])
            if tree:
                if name in ("EXISTS", "RECENT", "EXPUNGE"):
                    raise ResponseSyntaxError(f"{name} takes nothing after it")
                return UntaggedData(name=name, number=n, items=_ext_items(tree))
            if name == "EXISTS":
                return ExistsData(count=n)
            if name == "RECENT":
                return RecentData(count=n)
            if name == "EXPUNGE":
                if n == 0:
                    raise ResponseSyntaxError("EXPUNGE of message 0")
                return ExpungeData(number=n)
            return UntaggedData(name=name, number=n)
        handler = _UNTAGGED_HANDLERS.get(name)
        if handler is None:
            return UntaggedData(name=name, items=_ext_items(tree))
        return handler(tree, utf8)
    return _status(frame, first)


# -- status responses and codes ----------------------------------------------------


def _resp_text(text: str) -> tuple[Code | None, str]:
    """``resp-text = ["[" resp-text-code "]" SP] [text]`` (RFC 9051 §9; a code without
    text after it is accepted)."""
    if "\x00" in text:
        raise ResponseSyntaxError("NUL in response text")
    if text[:1] != "[":
        return None, text
    m = _CODE.match(text)
    if m is None:
        return None, text
    return _code(m.group(1)), text[m.end() :]


def _status(frame: Frame, first: str) -> StatusResponse:
    if len(frame.lines) > 1:
        raise ResponseSyntaxError("a status response holds no literal")
    m = _STATUS.fullmatch(first)
    if m is None:
        raise ResponseSyntaxError("not a response: neither '*', '+' nor a tagged status")
    tag, status, rest = m.groups()
    code, text = _resp_text(rest or "")
    return StatusResponse(
        status=status.upper(),  # type: ignore[arg-type]
        tag=None if tag == "*" else tag,
        code=code,
        text=text,
    )


def _continuation(frame: Frame, first: str, challenge: bool) -> Continuation:
    if len(frame.lines) > 1:
        raise ResponseSyntaxError("a continuation request holds no literal")
    if first != "+" and first[:2] != "+ ":
        raise ResponseSyntaxError("'+' must be followed by SP")
    rest = first[2:]
    if challenge:
        try:
            data = binascii.a2b_base64(rest.encode("ascii"), strict_mode=True) if rest else b""
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise ResponseSyntaxError("a challenge that is not base64") from exc
        return Continuation(data=data)
    code, text = _resp_text(rest)
    return Continuation(code=code, text=text)


def _code(inner: str) -> Code:
    name, _, args = inner.partition(" ")
    if not _CODE_NAME.fullmatch(name):
        raise ResponseSyntaxError(f"not a response code: {inner[:40]!r}")
    name = name.upper()
    parser = _CODE_PARSERS.get(name)
    if parser is not None:
        try:
            return parser(text_tree(args))
        except (ResponseSyntaxError, IndexError, TypeError, ValueError, LocalProtocolError):
            pass  # kept as a plain code: a server's odd arguments are not fatal
    return ResponseCode(name=name, args=args or None)


def _one(tree: list[Any]) -> Any:
    if len(tree) != 1:
        raise ResponseSyntaxError("one value expected")
    return tree[0]


def _seqset(value: Any) -> SequenceSet:
    if type(value) is int:
        value = str(value)
    if type(value) is not str or not _SEQSET_CHARS.fullmatch(value):
        raise ResponseSyntaxError("a sequence set expected")
    return SequenceSet.parse(value)


def _atoms(tree: list[Any]) -> tuple[str, ...]:
    # an atom NIL is read as NIL; where only atoms can stand, it is the text "NIL"
    return tuple("NIL" if v is None else string_of(v) for v in tree)


def _flags(value: Any) -> tuple[str, ...]:
    if type(value) is not list:
        raise ResponseSyntaxError("a flag list expected")
    for flag in value:
        if type(flag) is not str:
            # a keyword may be all digits ("1") or NIL; both read back as their text
            return tuple(_flag(f) for f in value)
    return tuple(value)


def _flag(value: Any) -> str:
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    if value is None:
        return "NIL"
    raise ResponseSyntaxError("a flag expected")


def _code_permanentflags(tree: list[Any]) -> Code:
    return PermanentFlagsCode(flags=_flags(_one(tree)))


def _code_badcharset(tree: list[Any]) -> Code:
    if not tree:
        return BadCharsetCode()
    value = _one(tree)
    if type(value) is not list:
        raise ResponseSyntaxError("BADCHARSET lists charsets in parentheses")
    return BadCharsetCode(charsets=_atoms(value))


def _code_appenduid(tree: list[Any]) -> Code:
    validity, uids = tree
    return AppendUidCode(uidvalidity=number_of(validity), uids=_seqset(uids))


def _code_copyuid(tree: list[Any]) -> Code:
    validity, source, destination = tree
    return CopyUidCode(
        uidvalidity=number_of(validity), source=_seqset(source), destination=_seqset(destination)
    )


_CODE_PARSERS: dict[str, Callable[[list[Any]], Code]] = {
    "UIDNEXT": lambda t: UidNextCode(uidnext=number_of(_one(t))),
    "UIDVALIDITY": lambda t: UidValidityCode(uidvalidity=number_of(_one(t))),
    "UNSEEN": lambda t: UnseenCode(number=number_of(_one(t))),
    "HIGHESTMODSEQ": lambda t: HighestModSeqCode(modseq=number_of(_one(t), _MAX64)),
    "MODIFIED": lambda t: ModifiedCode(uids=_seqset(_one(t))),
    "CAPABILITY": lambda t: CapabilityCode(capabilities=_atoms(t)),
    "PERMANENTFLAGS": _code_permanentflags,
    "BADCHARSET": _code_badcharset,
    "APPENDUID": _code_appenduid,
    "COPYUID": _code_copyuid,
}


# -- untagged data ---------------------------------------------------------------


def _ext(value: Any) -> ExtValue:
    if type(value) is list:
        return tuple(_ext(v) for v in value)
    return value  # type: ignore[no-any-return]


def _ext_items(tree: list[Any]) -> tuple[ExtValue, ...]:
    return tuple(_ext(v) for v in tree)


def mailbox_of(value: Any, utf8: bool, *, fold_inbox: bool = True) -> str:
    """A ``mailbox`` from the tree: modified UTF-7 decoded unless ``utf8``
    (RFC 9051 §5.1.3, RFC 6855 §3); ``INBOX`` in any case is ``"INBOX"``, unless
    ``fold_inbox`` is false (OLDNAME names the spelling the client used)."""
    raw = value if type(value) is bytes else string_of(value).encode("utf-8", "surrogateescape")
    if fold_inbox and raw.upper() == b"INBOX":
        return "INBOX"
    try:
        if utf8 or not raw.isascii():
            return raw.decode("utf-8")
        return decode_mutf7(raw.decode("ascii"))
    except ValueError as exc:
        raise ResponseSyntaxError(f"mailbox name not in its encoding: {raw[:40]!r}") from exc


def _capability(tree: list[Any], utf8: bool) -> Response:
    return CapabilityData(capabilities=_atoms(tree))


def _enabled(tree: list[Any], utf8: bool) -> Response:
    return EnabledData(capabilities=_atoms(tree))


def _flags_data(tree: list[Any], utf8: bool) -> Response:
    return FlagsData(flags=_flags(_one(tree)))


def _list(tree: list[Any], utf8: bool, lsub: bool = False) -> Response:
    if len(tree) not in (3, 4):
        raise ResponseSyntaxError("LIST: attributes, delimiter, mailbox [, extended items]")
    flags = _flags(tree[0])
    delimiter = nstr(tree[1])
    mailbox = mailbox_of(tree[2], utf8)
    child_info = old_name = None
    extended: list[tuple[str, ExtValue]] = []
    if len(tree) == 4:
        items = tree[3]
        if type(items) is not list or len(items) % 2:
            raise ResponseSyntaxError("LIST extended items are tag/value pairs")
        for i in range(0, len(items), 2):
            tag = string_of(items[i]).upper()
            value = items[i + 1]
            if tag == "CHILDINFO" and child_info is None and type(value) is list:
                child_info = _atoms(value)
            elif tag == "OLDNAME" and old_name is None and type(value) is list:
                # RFC 9051 §8's example: ("OLDNAME" ("inbox")) keeps its spelling.
                old_name = mailbox_of(_one(value), utf8, fold_inbox=False)
            else:
                extended.append((tag, _ext(value)))
    return ListData(
        flags=flags,
        delimiter=delimiter,
        mailbox=mailbox,
        child_info=child_info,
        old_name=old_name,
        extended=tuple(extended),
        lsub=lsub,
    )


def _lsub(tree: list[Any], utf8: bool) -> Response:
    return _list(tree, utf8, lsub=True)


def _status_data(tree: list[Any], utf8: bool) -> Response:
    if len(tree) != 2 or type(tree[1]) is not list or len(tree[1]) % 2:
        raise ResponseSyntaxError("STATUS: a mailbox and a list of name/value pairs")
    mailbox = mailbox_of(tree[0], utf8)
    pairs = tree[1]
    items: list[tuple[str, ExtValue]] = []
    for i in range(0, len(pairs), 2):
        name = string_of(pairs[i]).upper()
        value = pairs[i + 1]
        if name == "APPENDLIMIT" and value is None:
            items.append((name, None))
        elif name in ("HIGHESTMODSEQ", "SIZE"):
            items.append((name, number_of(value, _MAX64)))
        elif name in _STATUS_NUMBERS:
            items.append((name, number_of(value)))
        else:
            items.append((name, _ext(value)))
    return StatusData(mailbox=mailbox, items=tuple(items))


def _numbers_modseq(tree: list[Any]) -> tuple[tuple[int, ...], int | None]:
    modseq = None
    if tree and type(tree[-1]) is list:
        name, value = tree.pop()
        if string_of(name).upper() != "MODSEQ":
            raise ResponseSyntaxError("(MODSEQ n) expected")
        modseq = number_of(value, _MAX64)
    numbers = tuple(number_of(v) for v in tree)
    if 0 in numbers:
        raise ResponseSyntaxError("message number 0")
    return numbers, modseq


def _search(tree: list[Any], utf8: bool) -> Response:
    numbers, modseq = _numbers_modseq(tree)
    return SearchData(numbers=numbers, modseq=modseq)


def _sort(tree: list[Any], utf8: bool) -> Response:
    numbers, modseq = _numbers_modseq(tree)
    return SortData(numbers=numbers, modseq=modseq)


def _esearch(tree: list[Any], utf8: bool) -> Response:
    i = 0
    tag = None
    if tree and type(tree[0]) is list:
        name, value = tree[0]
        if string_of(name).upper() != "TAG":
            raise ResponseSyntaxError("ESEARCH correlator is (TAG tag)")
        tag = string_of(value)
        i = 1
    uid = False
    if i < len(tree) and type(tree[i]) is str and tree[i].upper() == "UID":
        uid = True
        i += 1
    rest = tree[i:]
    if len(rest) % 2:
        raise ResponseSyntaxError("ESEARCH return data are name/value pairs")
    fields: dict[str, Any] = {}
    extensions: list[tuple[str, ExtValue]] = []
    for k in range(0, len(rest), 2):
        name = string_of(rest[k]).upper()
        value = rest[k + 1]
        if name in _RESULT_NAMES and name.lower() not in fields:
            if name == "ALL":
                fields["all"] = _seqset(value)
            elif name == "MODSEQ":
                fields["modseq"] = number_of(value, _MAX64)
            else:
                fields[name.lower()] = number_of(value)
        else:
            extensions.append((name, _ext(value)))
    return ESearchData(tag=tag, uid=uid, extensions=tuple(extensions), **fields)


def _thread_list(value: Any) -> Thread:
    if type(value) is not list or not value:
        raise ResponseSyntaxError("a thread is a non-empty list")
    out: list[int | Thread] = []
    nested = 0
    for item in value:
        if type(item) is list:
            out.append(_thread_list(item))
            nested += 1
        elif nested:
            raise ResponseSyntaxError("thread members after nested threads")
        else:
            n = number_of(item)
            if n == 0:
                raise ResponseSyntaxError("message number 0 in a thread")
            out.append(n)
    return tuple(out)


def _thread(tree: list[Any], utf8: bool) -> Response:
    return ThreadData(threads=tuple(_thread_list(v) for v in tree))


def _vanished(tree: list[Any], utf8: bool) -> Response:
    earlier = False
    if len(tree) == 2 and type(tree[0]) is list:
        if [string_of(v).upper() for v in tree[0]] != ["EARLIER"]:
            raise ResponseSyntaxError("VANISHED takes (EARLIER) only")
        earlier = True
        tree = tree[1:]
    return VanishedData(uids=_seqset(_one(tree)), earlier=earlier)


def _namespaces(value: Any) -> tuple[Namespace, ...] | None:
    if value is None:
        return None
    if type(value) is not list or not value:
        raise ResponseSyntaxError("a namespace is NIL or a list of descriptions")
    out = []
    for descr in value:
        if type(descr) is not list or len(descr) < 2 or len(descr) % 2:
            raise ResponseSyntaxError("a namespace description: prefix, delimiter, extensions")
        prefix = string_of(descr[0])
        delimiter = nstr(descr[1])
        extensions = []
        for k in range(2, len(descr), 2):
            values = descr[k + 1]
            if type(values) is not list:
                raise ResponseSyntaxError("namespace extension values are a list")
            extensions.append((string_of(descr[k]), _atoms(values)))
        out.append(Namespace(prefix=prefix, delimiter=delimiter, extensions=tuple(extensions)))
    return tuple(out)


def _namespace(tree: list[Any], utf8: bool) -> Response:
    personal, other, shared = tree
    return NamespaceData(
        personal=_namespaces(personal), other=_namespaces(other), shared=_namespaces(shared)
    )


def _id(tree: list[Any], utf8: bool) -> Response:
    value = _one(tree)
    if value is None:
        return IdData()
    if type(value) is not list or len(value) % 2:
        raise ResponseSyntaxError("ID parameters are name/value pairs")
    it = iter(value)
    return IdData(params=tuple((string_of(k), nstr(v)) for k, v in zip(it, it, strict=True)))


_UNTAGGED_HANDLERS = {
    "CAPABILITY": _capability,
    "ENABLED": _enabled,
    "FLAGS": _flags_data,
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status_data,
    "SEARCH": _search,
    "ESEARCH": _esearch,
    "SORT": _sort,
    "THREAD": _thread,
    "VANISHED": _vanished,
    "NAMESPACE": _namespace,
    "ID": _id,
}


# -- FETCH -------------------------------------------------------------------------


def date_time_of(value: Any) -> datetime.datetime:
    """An ``INTERNALDATE`` (``date-time``, RFC 9051 §9) as an aware datetime."""
    if type(value) is not str:
        raise ResponseSyntaxError("a date-time expected")
    m = _DATE_TIME.fullmatch(value)
    if m is None:
        raise ResponseSyntaxError(f"not a date-time: {value[:40]!r}")
    day, mon, year, hh, mm, ss, sign, zone = m.groups()
    tz = _ZONES.get(sign + zone)
    if tz is None:
        minutes = int(zone[:2]) * 60 + int(zone[2:])
        if int(zone[2:]) > 59:
            raise ResponseSyntaxError(f"not a time zone: {zone!r}")
        offset = datetime.timedelta(minutes=-minutes if sign == "-" else minutes)
        tz = datetime.timezone(offset)
        if len(_ZONES) < 2000:
            _ZONES[sign + zone] = tz
    return datetime.datetime(
        int(year), _MONTH[mon.upper()], int(day), int(hh), int(mm), int(ss), tzinfo=tz
    )


def _octets(value: Any) -> bytes | Streamed | None:
    t = type(value)
    if t is bytes or value is None or t is Streamed:
        return value  # type: ignore[no-any-return]
    if t is str:
        return value.encode("utf-8", "surrogateescape")  # type: ignore[no-any-return]
    if t is int:
        return str(value).encode("ascii")
    raise ResponseSyntaxError("an nstring expected")


_SECTIONS: dict[str, Section] = {}


def _section_of(spec: str, fields: Any) -> Section:
    if fields is None:
        # Sections are immutable: the few specs a client uses are read once.
        section = _SECTIONS.get(spec)
        if section is None:
            section = _parse_section(spec, None)
            if len(_SECTIONS) < 1000:
                _SECTIONS[spec] = section
        return section
    return _parse_section(spec, fields)


def _parse_section(spec: str, fields: Any) -> Section:
    m = _SECTION.fullmatch(spec)
    if m is None:
        raise ResponseSyntaxError(f"not a section: {spec[:40]!r}")
    part_text, text = m.groups()
    part = tuple(int(p) for p in part_text.split(".")) if part_text else ()
    header_fields: tuple[str, ...] = ()
    if fields is not None:
        if type(fields) is not list:
            raise ResponseSyntaxError("a header list expected")
        header_fields = tuple(string_of(f) for f in fields)
    return Section(
        part=part,
        text=text.upper() if text else None,  # type: ignore[arg-type]
        fields=header_fields,
    )


def _has_extensions(body: Body | None) -> bool:
    if body is None:
        return False
    if body.extensions:
        return True
    if isinstance(body, MultipartBody):
        return any(_has_extensions(part) for part in body.parts)
    return _has_extensions(body.body)


def _fast_fetch(
    number: int, frame: Frame, rest: str, max_depth: int, max_items: int
) -> FetchData | None:
    """FETCH through ``fast_tree``, or ``None`` to take the reference path: when
    the fast tree cannot be had, when it does not read (the reference path then gives
    the error), or when the response has extension data, whose numbers the fast tree
    cannot tell from strings."""
    if number == 0:
        return None
    try:
        tree = fast_tree(frame, rest, max_depth=max_depth, max_items=max_items)
        if tree is None or type(tree[0]) is not list:
            return None
        data = _fetch(number, tree[0])
    except (ResponseSyntaxError, IndexError, KeyError, TypeError, ValueError, LocalProtocolError):
        return None
    if data.extensions or _has_extensions(data.body) or _has_extensions(data.bodystructure):
        return None
    return data


def _fetch(number: int, att: list[Any]) -> FetchData:
    """``msg-att`` (RFC 9051 §7.5.2): name/value pairs; ``BODY[section]<origin>`` comes
    in pieces when the section holds a header list (``BODY[HEADER.FIELDS``, the list,
    ``]<0>``)."""
    fields: dict[str, Any] = {}
    sections: list[BodySection] = []
    binary_sizes: list[tuple[tuple[int, ...], int]] = []
    extensions: list[tuple[str, ExtValue]] = []
    n = len(att)
    i = 0
    while i < n:
        key = att[i]
        if type(key) is not str:
            raise ResponseSyntaxError("a FETCH item name expected")
        name = key.upper()
        value = att[i + 1]
        i += 2
        if name == "UID":
            fields["uid"] = number_of(value)
        elif name == "FLAGS":
            fields["flags"] = _flags(value)
        elif name == "RFC822.SIZE":
            fields["rfc822_size"] = number_of(value, _MAX64)
        elif name == "INTERNALDATE":
            fields["internaldate"] = date_time_of(value)
        elif name == "ENVELOPE":
            fields["envelope"] = envelope_of(value)
        elif name == "BODYSTRUCTURE":
            fields["bodystructure"] = body_of(value)
        elif name == "BODY":
            fields["body"] = body_of(value)
        elif name == "MODSEQ":
            fields["modseq"] = number_of(_one(value), _MAX64)
        elif name in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
            sections.append(BodySection(name=name, data=_octets(value)))  # type: ignore[arg-type]
        elif name == "PREVIEW":
            fields["preview"] = nstr(value)
        elif name.startswith(("BODY[", "BINARY[", "BINARY.SIZE[")):
            head, _, spec = name.partition("[")
            tail = None
            header_list = None
            if "]" in spec:
                spec, _, tail = spec.partition("]")
            else:
                # "BODY[HEADER.FIELDS" "(" fields ")" "]<origin>" value
                header_list = value
                closing = att[i]
                if type(closing) is not str or closing[:1] != "]":
                    raise ResponseSyntaxError("']' expected after a header list")
                tail = closing[1:].upper()
                value = att[i + 1]
                i += 2
            if tail:
                om = _ORIGIN.fullmatch(tail)
                if om is None or not om.group(1):
                    raise ResponseSyntaxError(f"not a partial origin: {tail[:40]!r}")
                origin: int | None = int(om.group(1))
            else:
                origin = None
            section = _section_of(spec, header_list)
            if head == "BINARY.SIZE":
                if section.text is not None or origin is not None:
                    raise ResponseSyntaxError("BINARY.SIZE takes part numbers only")
                binary_sizes.append((section.part, number_of(value, _MAX64)))
            else:
                kind: SectionName = "BINARY" if head == "BINARY" else "BODY"
                sections.append(
                    BodySection(name=kind, section=section, origin=origin, data=_octets(value))
                )
        else:
            extensions.append((name, _ext(value)))
    if sections:
        fields["sections"] = tuple(sections)
    if binary_sizes:
        fields["binary_sizes"] = tuple(binary_sizes)
    if extensions:
        fields["extensions"] = tuple(extensions)
    return FetchData(number=number, **fields)
