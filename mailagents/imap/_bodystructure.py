"""BODY and BODYSTRUCTURE from a part map (RFC 9051 §7.5.2).

:func:`body_structure` turns a ``PartMap`` into the
``_body_model`` classes, bottom-up over the pre-order part list (no recursion, so the
depth of a message never meets Python's recursion limit). Where RFC 9051 leaves the
form open, the values are Dovecot's (compared by the interop test):

- type, subtype, parameter names and values, the transfer encoding and the
  disposition are kept as the message writes them (no case folding); a part without a
  ``Content-Type`` is ``text/plain`` (``message/rfc822`` below a digest), written in
  lower case; the transfer encoding defaults to ``7bit``;
- a ``text/*`` part without a ``charset`` parameter gets ``charset=us-ascii``
  (RFC 2045 §5.2), last;
- RFC 2231 continuations are joined but not decoded (Dovecot's way, see
  ``merge_rfc2231``): ``title*`` keeps ``charset'lang'%XX`` as written;
- a broken ``Content-Type`` is ``"" ""`` with no parameters, a lone ``text`` is
  ``"text" ""``; a multipart without parts (no boundary, or too deep) gets one empty
  ``text/plain`` part, as the grammar needs at least one;
- ``body-fld-lines`` counts the LFs of the body (for ``text`` and the message types),
  sizes are in CRLF octets;
- ``Content-ID``, ``Content-Description``, ``Content-MD5`` and ``Content-Location``
  are the unfolded values as written; ``Content-Language`` is split at commas.

Pure computation, no I/O.
"""

from __future__ import annotations

from mailagents.imap._body_model import (
    Body,
    MultipartBody,
    Parameters,
    SinglePartBody,
)
from mailagents.imap._envelope import envelope_from_fields
from mailagents.imap._mime import (
    ENVELOPE_FIELDS,
    MIME_FIELDS,
    MimePart,
    PartMap,
    merge_rfc2231,
    parse_content_type,
    parse_params,
)
from mailagents.imap._mime_headers import read_token, skip_cfws

__all__ = ["body_structure", "empty_text_part", "parse_disposition", "parse_language"]

_CT, _CTE, _ID, _DESC, _MD5, _DISP, _LANG, _LOC = range(len(MIME_FIELDS))


def empty_text_part(*, extended: bool) -> SinglePartBody:
    """The empty ``text/plain`` part Dovecot writes where a part is needed and there
    is none."""
    return SinglePartBody(
        type="text",
        subtype="plain",
        params=(("charset", "us-ascii"),),
        encoding="7bit",
        size=0,
        lines=0,
        extended=extended,
    )


def parse_disposition(value: str | None) -> tuple[str, Parameters] | None:
    """``body-fld-dsp`` from a ``Content-Disposition`` value (RFC 2183)."""
    if value is None:
        return None
    i = skip_cfws(value, 0)
    kind, i = read_token(value, i)
    if not kind:
        return None
    return kind, tuple(merge_rfc2231(parse_params(value, i)))


def parse_language(value: str | None) -> tuple[str, ...] | None:
    """``body-fld-lang`` from a ``Content-Language`` value (RFC 3282): its tags."""
    if value is None:
        return None
    tags: list[str] = []
    i = 0
    while i < len(value):
        i = skip_cfws(value, i)
        tag, i = read_token(value, i)
        if tag:
            tags.append(tag)
        i = skip_cfws(value, i)
        if i < len(value) and value[i] != ",":
            i = value.find(",", i)
            if i < 0:
                break
        i += 1
    return tuple(tags) or None


def _encoding(value: str | None) -> str:
    if value is None:
        return "7bit"
    token, _ = read_token(value, skip_cfws(value, 0))
    return token or "7bit"


def _single(
    part: MimePart,
    *,
    extended: bool,
    embedded: tuple[MimePart, Body] | None,
    in_digest: bool,
) -> SinglePartBody:
    mime = part.mime
    parsed = parse_content_type(mime[_CT])
    if parsed is None:
        major, minor = ("message", "rfc822") if in_digest and part.is_message else ("text", "plain")
        params: list[tuple[str, str]] = []
    else:
        major, minor, params = parsed
    is_text = major.lower() == "text"
    if is_text and not any(k.lower() == "charset" for k, _ in params):
        params = [*params, ("charset", "us-ascii")]
    envelope = None
    body: Body | None = None
    lines = part.body_lines if is_text else None
    if part.is_message:
        lines = part.body_lines
        if embedded is not None:
            child, body = embedded
            envelope = envelope_from_fields(child.envelope)
        else:
            envelope = envelope_from_fields((None,) * len(ENVELOPE_FIELDS))
            body = empty_text_part(extended=extended)
    return SinglePartBody(
        type=major,
        subtype=minor,
        params=tuple(params),
        id=mime[_ID],
        description=mime[_DESC],
        encoding=_encoding(mime[_CTE]),
        size=part.body_size,
        lines=lines,
        envelope=envelope,
        body=body,
        extended=extended,
        md5=mime[_MD5] if extended else None,
        disposition=parse_disposition(mime[_DISP]) if extended else None,
        language=parse_language(mime[_LANG]) if extended else None,
        location=mime[_LOC] if extended else None,
    )


def body_structure(part_map: PartMap, *, extended: bool, index: int = 0) -> Body:
    """BODYSTRUCTURE (``extended``) or BODY of the message (``index`` 0) or of the
    message node ``index`` of ``part_map`` (an embedded message)."""
    parts = part_map.parts
    if not 0 <= index < len(parts):
        raise IndexError("body_structure: no such part")
    last = index
    # The subtree of ``index`` is the contiguous pre-order run after it.
    while last + 1 < len(parts) and _inside(parts, last + 1, index):
        last += 1
    built: dict[int, Body] = {}
    for i in range(last, index - 1, -1):
        part = parts[i]
        in_digest = part.parent >= 0 and bool(parts[part.parent].flags & 4)
        if part.is_multipart:
            kids = tuple(built.pop(k) for k in part.children)
            parsed = parse_content_type(part.mime[_CT])
            subtype = parsed[1] if parsed is not None else "mixed"
            params = tuple(parsed[2]) if parsed is not None else ()
            built[i] = MultipartBody(
                parts=kids or (empty_text_part(extended=extended),),
                subtype=subtype,
                extended=extended,
                params=params if extended else (),
                disposition=parse_disposition(part.mime[_DISP]) if extended else None,
                language=parse_language(part.mime[_LANG]) if extended else None,
                location=part.mime[_LOC] if extended else None,
            )
            continue
        embedded = None
        if part.is_message and part.children:
            child = part.children[0]
            embedded = (parts[child], built.pop(child))
        built[i] = _single(part, extended=extended, embedded=embedded, in_digest=in_digest)
    return built[index]


def _inside(parts: tuple[MimePart, ...], i: int, top: int) -> bool:
    while i > top:
        i = parts[i].parent
    return i == top
