"""Server responses to frames: the inverse of ``mailagents.imap._response_parser``.

``write_response`` builds the ``Frame`` of one
response with the grammar's ``Writer``. A server never
waits for a continuation, so its literals are plain ``{n}`` (RFC 9051 §4.3: the
synchronising form only constrains the client); body octets holding NUL go as literal8
(``~{n}``, RFC 3516 §4.3, for BINARY). Text goes out as UTF-8; 8-bit strings are
literals unless ``utf8`` (UTF8=ACCEPT enabled, RFC 6855).

Pure functions, no I/O.
"""

from __future__ import annotations

import binascii
import re
from typing import Any

from mailagents._protocol import LocalProtocolError
from mailagents.imap._body_model import (
    Address,
    Body,
    BodyExtension,
    Envelope,
    MultipartBody,
    Parameters,
)
from mailagents.imap._fetch_data import BodySection, ExtValue, FetchData
from mailagents.imap._frame import Frame, Streamed
from mailagents.imap._grammar import _TAG, Writer, WriterError
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

__all__ = ["write_response"]

# An atom that reads back as the same text: not NIL, not starting with a digit.
_BARE_ATOM = re.compile(
    r'[^(){ \x00-\x1f\x7f%*"\\\]0-9\x80-\U0010ffff][^(){ \x00-\x1f\x7f%*"\\\]\x80-\U0010ffff]*'
)


def write_response(response: Response, *, utf8: bool = False) -> Frame:
    """The frame of ``response`` (``WriterError``, a ``LocalProtocolError``, for a
    value that cannot be written: an atom with a space, text with CR or LF, a TEXT
    body part without its line count)."""
    w = Writer(utf8=utf8)
    writer = _WRITERS.get(type(response))
    if writer is None:
        raise LocalProtocolError(f"not a response: {response!r}")
    writer(w, response)
    return w.frame()


def _text(w: Writer, text: str) -> None:
    w.raw(text.encode("utf-8", "surrogateescape"))


def _code(w: Writer, code: Code) -> None:
    w.raw(b"[")
    w.atom(code.name)
    if isinstance(code, ResponseCode):
        if code.args is not None:
            w.sp()
            _text(w, code.args)
    elif isinstance(code, UidNextCode):
        w.sp()
        w.number(code.uidnext)
    elif isinstance(code, UidValidityCode):
        w.sp()
        w.number(code.uidvalidity)
    elif isinstance(code, UnseenCode):
        w.sp()
        w.number(code.number)
    elif isinstance(code, HighestModSeqCode):
        w.sp()
        w.number(code.modseq)
    elif isinstance(code, PermanentFlagsCode):
        w.sp()
        w.flag_list(code.flags, perm=True)
    elif isinstance(code, CapabilityCode):
        for capability in code.capabilities:
            w.sp()
            w.atom(capability)
    elif isinstance(code, AppendUidCode):
        w.sp()
        w.number(code.uidvalidity)
        w.sp()
        w.sequence_set(code.uids)
    elif isinstance(code, CopyUidCode):
        w.sp()
        w.number(code.uidvalidity)
        w.sp()
        w.sequence_set(code.source)
        w.sp()
        w.sequence_set(code.destination)
    elif isinstance(code, ModifiedCode):
        w.sp()
        w.sequence_set(code.uids)
    elif isinstance(code, BadCharsetCode) and code.charsets:
        w.sp()
        w.open()
        for i, charset in enumerate(code.charsets):
            if i:
                w.sp()
            w.astring(charset)
        w.close()
    w.raw(b"]")


def _resp_text(w: Writer, code: Code | None, text: str) -> None:
    if code is not None:
        w.sp()
        _code(w, code)
        if text:
            w.sp()
            _text(w, text)
    elif text:
        if text.startswith("["):
            raise WriterError("response text starting with '[' would read as a code")
        w.sp()
        _text(w, text)


def _status(w: Writer, r: StatusResponse) -> None:
    if r.tag is None:
        w.raw(b"*")
    else:
        tag = r.tag.encode("utf-8", "surrogateescape")
        if not _TAG.fullmatch(tag):
            raise WriterError(f"not a tag: {r.tag!r}")
        w.raw(tag)
    w.sp()
    w.atom(r.status)
    _resp_text(w, r.code, r.text)


def _continuation(w: Writer, r: Continuation) -> None:
    w.raw(b"+")
    if r.data is not None:
        w.sp()
        w.raw(binascii.b2a_base64(r.data, newline=False))
    else:
        _resp_text(w, r.code, r.text)


def _ext(w: Writer, value: ExtValue | BodyExtension) -> None:
    if value is None:
        w.raw(b"NIL")
    elif type(value) is int:
        w.number(value)
    elif isinstance(value, str):
        if _BARE_ATOM.fullmatch(value) and value.upper() != "NIL":
            w.raw(value.encode("ascii"))
        else:
            w.string(value)
    elif isinstance(value, bytes):
        w.literal(value, binary=b"\x00" in value)
    elif isinstance(value, Streamed):
        w.literal(value)
    elif isinstance(value, tuple):
        w.open()
        for i, item in enumerate(value):
            if i:
                w.sp()
            _ext(w, item)
        w.close()
    else:
        raise WriterError(f"not an extension value: {value!r}")


def _untagged(w: Writer, name: str, number: int | None = None) -> None:
    w.raw(b"* ")
    if number is not None:
        w.number(number)
        w.sp()
    w.atom(name)


def _atoms(w: Writer, name: str, values: tuple[str, ...]) -> None:
    _untagged(w, name)
    for value in values:
        w.sp()
        w.atom(value)


def _capability(w: Writer, r: CapabilityData) -> None:
    _atoms(w, "CAPABILITY", r.capabilities)


def _enabled(w: Writer, r: EnabledData) -> None:
    _atoms(w, "ENABLED", r.capabilities)


def _flags(w: Writer, r: FlagsData) -> None:
    _untagged(w, "FLAGS")
    w.sp()
    w.flag_list(r.flags)


def _strings(w: Writer, values: tuple[str, ...]) -> None:
    w.open()
    for i, value in enumerate(values):
        if i:
            w.sp()
        w.string(value)
    w.close()


def _list(w: Writer, r: ListData) -> None:
    _untagged(w, "LSUB" if r.lsub else "LIST")
    w.sp()
    w.flag_list(r.flags)
    w.sp()
    w.nstring(r.delimiter)
    w.sp()
    w.mailbox(r.mailbox)
    items: list[tuple[str, Any]] = []
    if r.child_info is not None or r.old_name is not None or r.extended:
        w.sp()
        w.open()
        first = True
        if r.child_info is not None:
            w.raw(b"CHILDINFO ")
            _strings(w, r.child_info)
            first = False
        if r.old_name is not None:
            if not first:
                w.sp()
            w.raw(b"OLDNAME (")
            w.mailbox(r.old_name, fold_inbox=False)
            w.close()
            first = False
        items.extend(r.extended)
        for tag, value in items:
            if not first:
                w.sp()
            w.atom(tag)
            w.sp()
            _ext(w, value)
            first = False
        w.close()


def _status_data(w: Writer, r: StatusData) -> None:
    _untagged(w, "STATUS")
    w.sp()
    w.mailbox(r.mailbox)
    w.sp()
    w.open()
    for i, (name, value) in enumerate(r.items):
        if i:
            w.sp()
        w.atom(name)
        w.sp()
        _ext(w, value)
    w.close()


def _numbers(w: Writer, name: str, numbers: tuple[int, ...], modseq: int | None) -> None:
    _untagged(w, name)
    for n in numbers:
        w.sp()
        w.number(n)
    if modseq is not None:
        w.raw(b" (MODSEQ ")
        w.number(modseq)
        w.close()


def _search(w: Writer, r: SearchData) -> None:
    _numbers(w, "SEARCH", r.numbers, r.modseq)


def _sort(w: Writer, r: SortData) -> None:
    _numbers(w, "SORT", r.numbers, r.modseq)


def _esearch(w: Writer, r: ESearchData) -> None:
    _untagged(w, "ESEARCH")
    if r.tag is not None:
        w.raw(b" (TAG ")
        w.string(r.tag)
        w.close()
    if r.uid:
        w.raw(b" UID")
    for name in ("min", "max", "count"):
        value = getattr(r, name)
        if value is not None:
            w.sp()
            w.atom(name.upper())
            w.sp()
            w.number(value)
    if r.all is not None:
        w.raw(b" ALL ")
        w.sequence_set(r.all)
    if r.modseq is not None:
        w.raw(b" MODSEQ ")
        w.number(r.modseq)
    for name, value in r.extensions:
        w.sp()
        w.atom(name)
        w.sp()
        _ext(w, value)


def _thread_list(w: Writer, thread: Thread) -> None:
    """RFC 5256 §4: ``thread-members`` separated by SP, then the nested threads with
    nothing between them (``(3 6 (4 23)(44 7 96))``)."""
    w.open()
    previous_number = False
    for item in thread:
        if isinstance(item, int):
            if previous_number:
                w.sp()
            w.number(item)
            previous_number = True
        else:
            if previous_number:
                w.sp()
                previous_number = False
            _thread_list(w, item)
    w.close()


def _thread(w: Writer, r: ThreadData) -> None:
    _untagged(w, "THREAD")
    if r.threads:
        w.sp()
    for thread in r.threads:
        _thread_list(w, thread)


def _vanished(w: Writer, r: VanishedData) -> None:
    _untagged(w, "VANISHED")
    if r.earlier:
        w.raw(b" (EARLIER)")
    w.sp()
    w.sequence_set(r.uids)


def _exists(w: Writer, r: ExistsData) -> None:
    _untagged(w, "EXISTS", r.count)


def _recent(w: Writer, r: RecentData) -> None:
    _untagged(w, "RECENT", r.count)


def _expunge(w: Writer, r: ExpungeData) -> None:
    _untagged(w, "EXPUNGE", r.number)


def _namespaces(w: Writer, value: tuple[Namespace, ...] | None) -> None:
    if value is None:
        w.raw(b"NIL")
        return
    if not value:
        raise WriterError("a namespace is NIL or at least one description")
    w.open()
    for ns in value:
        w.open()
        w.string(ns.prefix)
        w.sp()
        w.nstring(ns.delimiter)
        for name, values in ns.extensions:
            w.sp()
            w.string(name)
            w.sp()
            _strings(w, values)
        w.close()
    w.close()


def _namespace(w: Writer, r: NamespaceData) -> None:
    _untagged(w, "NAMESPACE")
    for value in (r.personal, r.other, r.shared):
        w.sp()
        _namespaces(w, value)


def _id(w: Writer, r: IdData) -> None:
    _untagged(w, "ID")
    w.sp()
    if r.params is None:
        w.raw(b"NIL")
        return
    w.open()
    for i, (name, value) in enumerate(r.params):
        if i:
            w.sp()
        w.string(name)
        w.sp()
        w.nstring(value)
    w.close()


def _untagged_data(w: Writer, r: UntaggedData) -> None:
    _untagged(w, r.name, r.number)
    for item in r.items:
        w.sp()
        _ext(w, item)


# -- FETCH -------------------------------------------------------------------------


def _addresses(w: Writer, addresses: tuple[Address, ...] | None) -> None:
    if not addresses:
        w.raw(b"NIL")
        return
    w.open()
    for a in addresses:
        w.open()
        w.nstring(a.name)
        w.sp()
        w.nstring(a.adl)
        w.sp()
        w.nstring(a.mailbox)
        w.sp()
        w.nstring(a.host)
        w.close()
    w.close()


def write_envelope(w: Writer, e: Envelope) -> None:
    """An ``envelope`` in RFC 9051 §7.5.2's field order; an empty address list is NIL."""
    w.open()
    w.nstring(e.date)
    w.sp()
    w.nstring(e.subject)
    for addresses in (e.from_, e.sender, e.reply_to, e.to, e.cc, e.bcc):
        w.sp()
        _addresses(w, addresses)
    w.sp()
    w.nstring(e.in_reply_to)
    w.sp()
    w.nstring(e.message_id)
    w.close()


def _params(w: Writer, params: Parameters) -> None:
    if not params:
        w.raw(b"NIL")
        return
    w.open()
    for i, (name, value) in enumerate(params):
        if i:
            w.sp()
        w.string(name)
        w.sp()
        w.string(value)
    w.close()


def _extension_data(
    w: Writer,
    disposition: tuple[str, Parameters] | None,
    language: tuple[str, ...] | None,
    location: str | None,
    extensions: tuple[BodyExtension, ...],
) -> None:
    w.sp()
    if disposition is None:
        w.raw(b"NIL")
    else:
        w.open()
        w.string(disposition[0])
        w.sp()
        _params(w, disposition[1])
        w.close()
    w.sp()
    if not language:
        w.raw(b"NIL")
    elif len(language) == 1:
        w.string(language[0])
    else:
        _strings(w, language)
    w.sp()
    w.nstring(location)
    for extension in extensions:
        w.sp()
        if isinstance(extension, str):
            w.string(extension)
        else:
            _ext(w, extension)


def write_body(w: Writer, body: Body) -> None:
    """A ``body`` (BODYSTRUCTURE, or BODY when ``extended`` is false), in RFC 9051
    §7.5.2's field order: the line count for TEXT/* and MESSAGE/RFC822|GLOBAL, the
    envelope and inner body for the latter."""
    w.open()
    if isinstance(body, MultipartBody):
        if not body.parts:
            raise WriterError("a multipart body has at least one part")
        for part in body.parts:
            write_body(w, part)
        w.sp()
        w.string(body.subtype)
        if body.extended:
            w.sp()
            _params(w, body.params)
            _extension_data(w, body.disposition, body.language, body.location, body.extensions)
        w.close()
        return
    w.string(body.type)
    w.sp()
    w.string(body.subtype)
    w.sp()
    _params(w, body.params)
    w.sp()
    w.nstring(body.id)
    w.sp()
    w.nstring(body.description)
    w.sp()
    w.string(body.encoding)
    w.sp()
    w.number(body.size)
    media = body.type.upper()
    if media == "MESSAGE" and body.subtype.upper() in ("RFC822", "GLOBAL"):
        if body.envelope is None or body.body is None or body.lines is None:
            raise WriterError("a MESSAGE/RFC822 part needs its envelope, body and lines")
        w.sp()
        write_envelope(w, body.envelope)
        w.sp()
        write_body(w, body.body)
        w.sp()
        w.number(body.lines)
    elif media == "TEXT":
        if body.lines is None:
            raise WriterError("a TEXT part needs its line count")
        w.sp()
        w.number(body.lines)
    if body.extended:
        w.sp()
        w.nstring(body.md5)
        _extension_data(w, body.disposition, body.language, body.location, body.extensions)
    w.close()


def _octets(w: Writer, data: bytes | Streamed | None) -> None:
    if data is None:
        w.raw(b"NIL")
    elif isinstance(data, Streamed):
        w.literal(data)
    else:
        w.literal(data, binary=b"\x00" in data)


def _section(w: Writer, item: BodySection) -> None:
    if item.name in ("BODY", "BINARY"):
        w.raw(f"{item.name}[{item.section}]".encode("utf-8", "surrogateescape"))
        if item.origin is not None:
            w.raw(b"<%d>" % item.origin)
    else:
        w.atom(item.name)
    w.sp()
    _octets(w, item.data)


def _fetch(w: Writer, r: FetchData) -> None:
    _untagged(w, "FETCH", r.number)
    w.raw(b" (")
    first = True

    def item(name: bytes) -> None:
        nonlocal first
        if not first:
            w.sp()
        first = False
        w.raw(name)

    if r.uid is not None:
        item(b"UID ")
        w.number(r.uid)
    if r.flags is not None:
        item(b"FLAGS ")
        w.flag_list(r.flags)
    if r.rfc822_size is not None:
        item(b"RFC822.SIZE ")
        w.number(r.rfc822_size)
    if r.internaldate is not None:
        item(b"INTERNALDATE ")
        w.date_time(r.internaldate)
    if r.envelope is not None:
        item(b"ENVELOPE ")
        write_envelope(w, r.envelope)
    if r.body is not None:
        item(b"BODY ")
        write_body(w, r.body)
    if r.bodystructure is not None:
        item(b"BODYSTRUCTURE ")
        write_body(w, r.bodystructure)
    if r.modseq is not None:
        item(b"MODSEQ (")
        w.number(r.modseq)
        w.close()
    if r.preview is not None:
        item(b"PREVIEW ")
        w.nstring(r.preview)
    for part, size in r.binary_sizes:
        item(b"BINARY.SIZE[" + ".".join(str(p) for p in part).encode("ascii") + b"] ")
        w.number(size)
    for section in r.sections:
        item(b"")
        _section(w, section)
    for name, value in r.extensions:
        item(b"")
        w.atom(name)
        w.sp()
        _ext(w, value)
    w.close()


_WRITERS: dict[type, Any] = {
    StatusResponse: _status,
    Continuation: _continuation,
    CapabilityData: _capability,
    EnabledData: _enabled,
    FlagsData: _flags,
    ListData: _list,
    StatusData: _status_data,
    SearchData: _search,
    SortData: _sort,
    ESearchData: _esearch,
    ThreadData: _thread,
    VanishedData: _vanished,
    ExistsData: _exists,
    RecentData: _recent,
    ExpungeData: _expunge,
    NamespaceData: _namespace,
    IdData: _id,
    UntaggedData: _untagged_data,
    FetchData: _fetch,
}
