"""ENVELOPE and BODY/BODYSTRUCTURE from a response tree (RFC 9051 §7.5.2, §9).

The field order of RFC 9051 §9::

    envelope        = "(" env-date SP env-subject SP env-from SP env-sender SP
                      env-reply-to SP env-to SP env-cc SP env-bcc SP
                      env-in-reply-to SP env-message-id ")"
    address         = "(" addr-name SP addr-adl SP addr-mailbox SP addr-host ")"
    body            = "(" (body-type-1part / body-type-mpart) ")"
    body-type-1part = (body-type-basic / body-type-msg / body-type-text)
                      [SP body-ext-1part]
    body-type-basic = media-basic SP body-fields
    body-type-msg   = media-message SP body-fields SP envelope SP body SP body-fld-lines
    body-type-text  = media-text SP body-fields SP body-fld-lines
    body-fields     = body-fld-param SP body-fld-id SP body-fld-desc SP
                      body-fld-enc SP body-fld-octets
    body-ext-1part  = body-fld-md5 [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc
                      *(SP body-extension)]]]
    body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
    body-ext-mpart  = body-fld-param [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc
                      *(SP body-extension)]]]

So which fields follow ``body-fields`` depends on the media type: MESSAGE/RFC822 (and
MESSAGE/GLOBAL, RFC 9051) carries an envelope, a body and a line count, TEXT/* a line
count, everything else nothing. Any extension field may be the last one present.

The tree's nesting was bounded when it was read; the recursion here follows it.
"""

from __future__ import annotations

from typing import Any

from mailagents.imap._body_model import (
    Address,
    Body,
    BodyExtension,
    Envelope,
    MultipartBody,
    Parameters,
    SinglePartBody,
)
from mailagents.imap._response_tree import ResponseSyntaxError

__all__ = ["body_of", "envelope_of", "nstr", "number_of", "string_of"]

_TEXT_TYPES = (str, type(None))


def nstr(value: Any) -> str | None:
    """An ``nstring`` as text: a literal's octets are decoded (UTF-8, surrogateescape)."""
    t = type(value)
    if t is str or value is None:
        return value  # type: ignore[no-any-return]
    if t is bytes:
        return value.decode("utf-8", "surrogateescape")  # type: ignore[no-any-return]
    if t is int:
        return str(value)
    raise ResponseSyntaxError("a string expected")


def string_of(value: Any) -> str:
    """A ``string`` (not NIL) as text."""
    text = nstr(value)
    if text is None:
        raise ResponseSyntaxError("a string expected, NIL found")
    return text


def number_of(value: Any, limit: int = 4294967295) -> int:
    """A ``number`` (``number64`` with ``limit`` 2^63 - 1)."""
    if type(value) is int and value <= limit:
        return value
    if type(value) is str and value.isascii() and value.isdigit() and len(value) < 40:
        number = int(value)
        if number <= limit:
            return number
    raise ResponseSyntaxError("a number expected")


def _addresses(value: Any) -> tuple[Address, ...] | None:
    if value is None:
        return None
    if type(value) is not list:
        raise ResponseSyntaxError("an address list expected")
    out = []
    for item in value:
        if type(item) is not list or len(item) != 4:
            raise ResponseSyntaxError("an address is four nstrings")
        name, adl, mailbox, host = item
        if type(name) not in _TEXT_TYPES:
            name = nstr(name)
        if type(adl) not in _TEXT_TYPES:
            adl = nstr(adl)
        if type(mailbox) not in _TEXT_TYPES:
            mailbox = nstr(mailbox)
        if type(host) not in _TEXT_TYPES:
            host = nstr(host)
        out.append(Address(name=name, adl=adl, mailbox=mailbox, host=host))
    return tuple(out) or None


def envelope_of(value: Any) -> Envelope:
    """An ``envelope`` list."""
    if type(value) is not list or len(value) != 10:
        raise ResponseSyntaxError("an envelope is a list of ten fields")
    date, subject, from_, sender, reply_to, to, cc, bcc, in_reply_to, message_id = value
    from_t = _addresses(from_)
    # RFC 9051 §7.5.2: a server fills sender and reply-to from From when the header
    # fields are absent, so the lists are often equal; equal lists give equal (frozen)
    # tuples, built once.
    return Envelope(
        date=date if type(date) is str else nstr(date),
        subject=subject if type(subject) is str else nstr(subject),
        from_=from_t,
        sender=from_t if sender == from_ else _addresses(sender),
        reply_to=from_t if reply_to == from_ else _addresses(reply_to),
        to=_addresses(to),
        cc=_addresses(cc),
        bcc=_addresses(bcc),
        in_reply_to=in_reply_to if type(in_reply_to) is str else nstr(in_reply_to),
        message_id=message_id if type(message_id) is str else nstr(message_id),
    )


def _params(value: Any) -> Parameters:
    if value is None:
        return ()
    if type(value) is list and len(value) == 2:
        key, val = value
        if type(key) is str and type(val) is str:
            return ((key, val),)
    if type(value) is not list or len(value) % 2:
        raise ResponseSyntaxError("body parameters are attribute/value pairs")
    it = iter(value)
    return tuple((string_of(k), string_of(v)) for k, v in zip(it, it, strict=True))


def _disposition(value: Any) -> tuple[str, Parameters] | None:
    if value is None:
        return None
    if type(value) is not list or len(value) != 2:
        raise ResponseSyntaxError("a disposition is a string and its parameters")
    return (string_of(value[0]), _params(value[1]))


def _language(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if type(value) is list:
        if not value:
            raise ResponseSyntaxError("an empty language list")
        return tuple(string_of(v) for v in value)
    return (string_of(value),)


def _extension(value: Any) -> BodyExtension:
    if type(value) is list:
        return tuple(_extension(v) for v in value)
    if type(value) is int:
        return int(value)
    return nstr(value)


def body_of(value: Any) -> Body:
    """A ``body`` list: BODYSTRUCTURE, or BODY without extension data."""
    if type(value) is not list or not value:
        raise ResponseSyntaxError("a body is a non-empty list")
    if type(value[0]) is list:
        n = len(value)
        i = 0
        parts = []
        while i < n and type(value[i]) is list:
            parts.append(body_of(value[i]))
            i += 1
        if i == n:
            raise ResponseSyntaxError("a multipart body without its subtype")
        subtype = string_of(value[i])
        rest = value[i + 1 :]
        if not rest:
            return MultipartBody(parts=tuple(parts), subtype=subtype)
        k = len(rest)
        return MultipartBody(
            parts=tuple(parts),
            subtype=subtype,
            extended=True,
            params=_params(rest[0]),
            disposition=_disposition(rest[1]) if k > 1 else None,
            language=_language(rest[2]) if k > 2 else None,
            location=nstr(rest[3]) if k > 3 else None,
            extensions=tuple(_extension(v) for v in rest[4:]),
        )
    if len(value) < 7:
        raise ResponseSyntaxError("a body part has at least seven fields")
    media, subtype, params, id_, description, encoding, size = value[:7]
    if type(media) is not str:
        media = string_of(media)
    if type(subtype) is not str:
        subtype = string_of(subtype)
    if type(encoding) is not str:
        encoding = string_of(encoding)
    if type(size) is not int or size > 4294967295:
        size = number_of(size)
    if id_ is not None and type(id_) is not str:
        id_ = nstr(id_)
    if description is not None and type(description) is not str:
        description = nstr(description)
    media_upper = media.upper()
    lines = envelope = inner = None
    i = 7
    n = len(value)
    if media_upper == "TEXT":
        if n < 8:
            raise ResponseSyntaxError("a text body part without its line count")
        lines = value[7]
        if type(lines) is not int:
            lines = number_of(lines, 2**63 - 1)
        i = 8
    elif media_upper == "MESSAGE" and (
        subtype.upper() == "RFC822"
        # Dovecot 2.3 describes MESSAGE/GLOBAL (RFC 6532) as a basic part, with no
        # envelope, body or line count: read it as one rather than fail on a real
        # server's answer (RFC 9051 §9 gives it the message form).
        or (subtype.upper() == "GLOBAL" and n >= 10 and type(value[7]) is list)
    ):
        if n < 10:
            raise ResponseSyntaxError("a message body part without envelope, body, lines")
        envelope = envelope_of(value[7])
        inner = body_of(value[8])
        lines = number_of(value[9], 2**63 - 1)
        i = 10
    if i == n:
        return SinglePartBody(
            type=media,
            subtype=subtype,
            params=_params(params),
            id=id_,
            description=description,
            encoding=encoding,
            size=size,
            lines=lines,
            envelope=envelope,
            body=inner,
        )
    rest = value[i:]
    k = len(rest)
    return SinglePartBody(
        type=media,
        subtype=subtype,
        params=_params(params),
        id=id_,
        description=description,
        encoding=encoding,
        size=size,
        lines=lines,
        envelope=envelope,
        body=inner,
        extended=True,
        md5=nstr(rest[0]),
        disposition=_disposition(rest[1]) if k > 1 else None,
        language=_language(rest[2]) if k > 2 else None,
        location=nstr(rest[3]) if k > 3 else None,
        extensions=tuple(_extension(v) for v in rest[4:]) if k > 4 else (),
    )
