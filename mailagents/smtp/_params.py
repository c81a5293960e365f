"""ESMTP parameters of MAIL and RCPT: the generic grammar of RFC 5321 §4.1.2 and the
parameters of the extensions this library knows.

    Mail-parameters = esmtp-param *(SP esmtp-param)      ; RFC 5321 §4.1.2
    Rcpt-parameters = esmtp-param *(SP esmtp-param)
    esmtp-param     = esmtp-keyword ["=" esmtp-value]
    esmtp-keyword   = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
    esmtp-value     = 1*(%d33-60 / %d62-126)          ; =/ UTF8-non-ascii (RFC 6531 §3.3)

Known parameters: SIZE (RFC 1870), BODY (RFC 6152; BINARYMIME from RFC 3030),
SMTPUTF8 (RFC 6531), AUTH (RFC 4954 §5), RET, ENVID, NOTIFY, ORCPT (RFC 3461 §4),
REQUIRETLS (RFC 8689 §3). The parsers raise :class:`ParameterError`, which carries
the reply the server should give; the formatters (for the client) raise
:class:`~mailagents._protocol.LocalProtocolError` for anything that cannot be sent.
This module is pure: no I/O, standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from mailagents._protocol import LocalProtocolError

__all__ = [
    "MailParameters",
    "ParameterError",
    "RcptParameters",
    "format_mail_parameters",
    "format_rcpt_parameters",
    "parse_mail_parameters",
    "parse_parameters",
    "parse_rcpt_parameters",
    "xtext_decode",
    "xtext_encode",
]

_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
# UTF8-non-ascii as a Python string: above U+007F, without the C1 controls and
# without lone surrogates (which are not UTF-8).
_NON_ASCII = "\u00a0-\ud7ff\ue000-\U0010ffff"
_VALUE_ASCII = re.compile(r"[\x21-\x3c\x3e-\x7e]+")
_VALUE_UTF8 = re.compile(rf"[\x21-\x3c\x3e-\x7e{_NON_ASCII}]+")
# RFC 3461 §4: xtext = *( xchar / hexchar ); xchar = "!".."~" except "+" and "=";
# hexchar = "+" followed by two upper-case hexadecimal digits.
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")
_XTEXT_HEX = re.compile(r"\+([0-9A-F]{2})")
# RFC 5321 §4.1.2 Atom = 1*atext, for the ORCPT addr-type (RFC 3461 §4.2).
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+")
# RFC 6533 §3: utf-8-addr-xtext / utf-8-addr-unitext:
#   QCHAR = %x21-2a / %x2c-3c / %x3e-5b / %x5d-7e   (printable ASCII but "+", "=", "\")
#   EmbeddedUnicodeChar = "\x{" HEXPOINT "}"
_QCHAR = r"\x21-\x2a\x2c-\x3c\x3e-\x5b\x5d-\x7e"
_UTF8_ADDR_XTEXT = re.compile(rf"(?:[{_QCHAR}]|\\x\{{[0-9A-Fa-f]{{1,6}}\}})+")
_UTF8_ADDR_UNITEXT = re.compile(rf"(?:[{_QCHAR}{_NON_ASCII}]|\\x\{{[0-9A-Fa-f]{{1,6}}\}})+")
_EMBEDDED = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SIZE = re.compile(r"[0-9]{1,20}")  # RFC 1870 §3: size-value ::= 1*20DIGIT

_BODY_VALUES = {"7BIT": None, "8BITMIME": "8BITMIME", "BINARYMIME": "BINARYMIME"}
_NOTIFY_VALUES = frozenset({"SUCCESS", "FAILURE", "DELAY"})
_NOTIFY_ORDER = ("SUCCESS", "FAILURE", "DELAY")
MAX_ENVID = 100  # RFC 3461 §4.4
MAX_ORCPT = 500  # RFC 3461 §4.2


class ParameterError(ValueError):
    """A MAIL or RCPT parameter the server must refuse, with the reply to give:
    ``code`` (501 syntax, 555 not recognised, 552 too large), ``enhanced`` (an
    RFC 3463 status code such as ``"5.5.4"``) and ``text``."""

    code: int
    enhanced: str
    text: str

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.enhanced = enhanced
        self.text = text

    def __repr__(self) -> str:
        return f"ParameterError({self.code!r}, {self.enhanced!r}, {self.text!r})"


def _syntax(text: str) -> ParameterError:
    return ParameterError(501, "5.5.4", text)


def _not_recognised(keyword: str) -> ParameterError:
    # RFC 5321 §4.1.1.11: 555 for a MAIL or RCPT parameter that is not recognised
    # (or belongs to an extension that was not offered).
    return ParameterError(555, "5.5.4", f"{keyword} parameter not recognised")


def parse_parameters(text: str, *, utf8: bool = False) -> list[tuple[str, str | None]]:
    """Split ESMTP parameters (RFC 5321 §4.1.2) into ``(KEYWORD, value)`` pairs, the
    keyword upper-cased, the value ``None`` when absent.

    Parameters are separated by spaces (runs of spaces are tolerated). ``utf8``
    allows UTF8-non-ascii in values (RFC 6531 §3.3). A syntax error or a keyword
    given twice raises ``ParameterError(501, "5.5.4", ...)``.
    """
    result: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    value_pattern = _VALUE_UTF8 if utf8 else _VALUE_ASCII
    for token in text.split(" "):
        if not token:
            continue
        keyword, sep, value = token.partition("=")
        if not _KEYWORD.fullmatch(keyword):
            raise _syntax("Syntax error in parameters")
        keyword = keyword.upper()
        if sep and not value_pattern.fullmatch(value):
            if not utf8 and _VALUE_UTF8.fullmatch(value):
                raise _syntax(f"Non-ASCII {keyword} value requires SMTPUTF8")
            raise _syntax(f"Syntax error in {keyword} parameter value")
        if keyword in seen:
            raise _syntax(f"Duplicate {keyword} parameter")
        seen.add(keyword)
        result.append((keyword, value if sep else None))
    return result


def xtext_decode(s: str) -> str:
    """Decode RFC 3461 §4 xtext (``"a+2Bb"`` gives ``"a+b"``); the octets are read
    as UTF-8. Malformed xtext raises ``ParameterError(501, "5.5.4", ...)``."""
    if not _XTEXT.fullmatch(s):
        raise _syntax("Malformed xtext")
    raw = _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), s)
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        raise _syntax("xtext is not UTF-8") from None


def xtext_encode(s: str) -> str:
    """Encode ``s`` (as UTF-8 octets) as RFC 3461 §4 xtext: every octet outside
    ``"!"``..``"~"``, and ``"+"`` and ``"="``, becomes ``"+"`` and two upper-case hex
    digits. Raises :class:`LocalProtocolError` for a string that is not encodable."""
    try:
        data = s.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError("xtext value is not valid Unicode") from None
    return "".join(
        chr(b) if 0x21 <= b <= 0x7E and b not in (0x2B, 0x3D) else f"+{b:02X}" for b in data
    )


def _decode_utf8_addr(value: str, utf8: bool) -> str:
    """RFC 6533 §3 utf-8-addr-xtext (or, with SMTPUTF8, utf-8-addr-unitext):
    QCHARs as they are, ``\\x{HEX}`` for any other code point."""
    pattern = _UTF8_ADDR_UNITEXT if utf8 else _UTF8_ADDR_XTEXT
    if not pattern.fullmatch(value):
        raise _syntax("Malformed ORCPT utf-8 address")

    def embedded(m: re.Match[str]) -> str:
        point = int(m.group(1), 16)
        if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
            raise _syntax("Malformed ORCPT utf-8 address")
        return chr(point)

    return _EMBEDDED.sub(embedded, value)


def _encode_utf8_addr(value: str) -> str:
    """The 7-bit RFC 6533 form (utf-8-addr-xtext), safe with or without SMTPUTF8."""
    return "".join(
        ch if ("\x21" <= ch <= "\x7e" and ch not in "+=\\") else f"\\x{{{ord(ch):02X}}}"
        for ch in value
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MailParameters:
    """The parameters of one MAIL command.

    ``size`` (RFC 1870), ``body`` (``"7BIT"``, ``"8BITMIME"`` or ``"BINARYMIME"``,
    RFC 6152 / RFC 3030), ``smtputf8`` (RFC 6531), ``auth`` (RFC 4954 §5, decoded;
    ``"<>"`` when the client gave ``AUTH=<>``), ``ret`` (``"FULL"`` or ``"HDRS"``)
    and ``envid`` (decoded) from RFC 3461, ``requiretls`` (RFC 8689), and in
    ``extra`` the parameters of other extensions the caller chose to accept.
    """

    size: int | None = None
    body: str | None = None
    smtputf8: bool = False
    auth: str | None = None
    ret: str | None = None
    envid: str | None = None
    requiretls: bool = False
    extra: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RcptParameters:
    """The parameters of one RCPT command.

    ``notify`` is ``{"NEVER"}`` or a non-empty subset of ``{"SUCCESS", "FAILURE",
    "DELAY"}`` (RFC 3461 §4.1); ``orcpt`` is ``(addr_type, address)`` with the
    address decoded (RFC 3461 §4.2; RFC 6533 for the ``utf-8`` type); ``extra``
    holds the parameters of other extensions the caller chose to accept.
    """

    notify: frozenset[str] | None = None
    orcpt: tuple[str, str] | None = None
    extra: tuple[tuple[str, str | None], ...] = ()


def _need_value(keyword: str, value: str | None) -> str:
    if value is None:
        raise _syntax(f"{keyword} parameter requires a value")
    return value


def _no_value(keyword: str, value: str | None) -> None:
    if value is not None:
        raise _syntax(f"{keyword} parameter takes no value")


def _upper_set(items: Iterable[str]) -> frozenset[str]:
    return frozenset(item.upper() for item in items)


def parse_mail_parameters(
    text: str,
    *,
    extensions: Collection[str],
    max_size: int | None = None,
    accept_unknown: Collection[str] = (),
) -> MailParameters:
    """Parse and check the parameters of a MAIL command.

    ``extensions`` are the EHLO keywords offered in this session (``"SIZE"``,
    ``"8BITMIME"``, ``"BINARYMIME"``, ``"SMTPUTF8"``, ``"AUTH"``, ``"DSN"``,
    ``"REQUIRETLS"``); a parameter of an extension not offered, or one not known,
    raises ``ParameterError(555, "5.5.4")`` unless its keyword is in
    ``accept_unknown``, in which case it is kept raw in ``extra``. A bad value raises
    501 5.5.4; a SIZE above ``max_size`` raises 552 5.3.4 (RFC 1870 §6; ``None`` or
    0 means no fixed limit, as ``SIZE 0`` does in RFC 1870 §4). Non-ASCII values are
    allowed only together with the SMTPUTF8 parameter (RFC 6531 §3.3).
    """
    offered = _upper_set(extensions)
    extra_ok = _upper_set(accept_unknown)
    raw = parse_parameters(text, utf8=True)
    utf8 = "SMTPUTF8" in offered and any(k == "SMTPUTF8" for k, _ in raw)
    size: int | None = None
    body: str | None = None
    smtputf8 = False
    auth: str | None = None
    ret: str | None = None
    envid: str | None = None
    requiretls = False
    extra: list[tuple[str, str | None]] = []
    for keyword, value in raw:
        if value is not None and not utf8 and not value.isascii():
            raise _syntax(f"Non-ASCII {keyword} value requires SMTPUTF8")
        if keyword == "SIZE" and "SIZE" in offered:
            # RFC 1870 §3: size-value ::= 1*20DIGIT
            digits = _need_value(keyword, value)
            if not _SIZE.fullmatch(digits):
                raise _syntax("Syntax error in SIZE parameter value")
            size = int(digits)
            if max_size and size > max_size:
                raise ParameterError(
                    552, "5.3.4", "Message size exceeds fixed maximum message size"
                )
        elif keyword == "BODY" and ("8BITMIME" in offered or "BINARYMIME" in offered):
            # RFC 6152 §2: BODY=7BIT / BODY=8BITMIME; RFC 3030 §3: BODY=BINARYMIME.
            body = _need_value(keyword, value).upper()
            if body not in _BODY_VALUES:
                raise _syntax("Unknown BODY type")
            needs = _BODY_VALUES[body]
            if needs is not None and needs not in offered:
                raise _syntax(f"BODY={body} not supported")
        elif keyword == "SMTPUTF8" and "SMTPUTF8" in offered:
            _no_value(keyword, value)  # RFC 6531 §3.4
            smtputf8 = True
        elif keyword == "AUTH" and "AUTH" in offered:
            # RFC 4954 §5: "AUTH=" (mailbox encoded as xtext / "<>")
            encoded = _need_value(keyword, value)
            auth = "<>" if encoded == "<>" else xtext_decode(encoded)
            if not auth or _CONTROLS.search(auth):
                raise _syntax("Syntax error in AUTH parameter value")
        elif keyword == "RET" and "DSN" in offered:
            # RFC 3461 §4.3: "RET=" ("FULL" / "HDRS")
            ret = _need_value(keyword, value).upper()
            if ret not in ("FULL", "HDRS"):
                raise _syntax("RET must be FULL or HDRS")
        elif keyword == "ENVID" and "DSN" in offered:
            # RFC 3461 §4.4: "ENVID=" xtext; printable US-ASCII, at most 100 characters.
            envid = xtext_decode(_need_value(keyword, value))
            if not envid or len(envid) > MAX_ENVID:
                raise _syntax(f"ENVID must be 1 to {MAX_ENVID} characters")
            if not all("\x20" <= ch <= "\x7e" for ch in envid):
                raise _syntax("ENVID must be printable US-ASCII")
        elif keyword == "REQUIRETLS" and "REQUIRETLS" in offered:
            _no_value(keyword, value)  # RFC 8689 §3: the keyword has no value
            requiretls = True
        elif keyword in extra_ok:
            extra.append((keyword, value))
        else:
            raise _not_recognised(keyword)
    return MailParameters(
        size=size,
        body=body,
        smtputf8=smtputf8,
        auth=auth,
        ret=ret,
        envid=envid,
        requiretls=requiretls,
        extra=tuple(extra),
    )


def parse_rcpt_parameters(
    text: str,
    *,
    extensions: Collection[str],
    utf8: bool = False,
    accept_unknown: Collection[str] = (),
) -> RcptParameters:
    """Parse and check the parameters of a RCPT command.

    ``extensions`` as for :func:`parse_mail_parameters` (NOTIFY and ORCPT need
    ``"DSN"``); ``utf8`` says whether the transaction uses SMTPUTF8 (MAIL had the
    SMTPUTF8 parameter), which allows non-ASCII values (RFC 6531 §3.3, RFC 6533).
    Unknown keywords raise 555 5.5.4 unless in ``accept_unknown``; bad values 501 5.5.4.
    """
    offered = _upper_set(extensions)
    extra_ok = _upper_set(accept_unknown)
    raw = parse_parameters(text, utf8=utf8)
    notify: frozenset[str] | None = None
    orcpt: tuple[str, str] | None = None
    extra: list[tuple[str, str | None]] = []
    for keyword, value in raw:
        if keyword == "NOTIFY" and "DSN" in offered:
            # RFC 3461 §4.1: "NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" )
            items = _need_value(keyword, value).upper().split(",")
            chosen = frozenset(items)
            never = chosen == {"NEVER"} and len(items) == 1
            if not never and not (chosen <= _NOTIFY_VALUES and len(chosen) == len(items)):
                raise _syntax("Syntax error in NOTIFY parameter value")
            notify = chosen
        elif keyword == "ORCPT" and "DSN" in offered:
            # RFC 3461 §4.2: "ORCPT=" addr-type ";" xtext, at most 500 characters.
            encoded = _need_value(keyword, value)
            if len(encoded) > MAX_ORCPT:
                raise _syntax(f"ORCPT longer than {MAX_ORCPT} characters")
            addr_type, sep, address = encoded.partition(";")
            if not sep or not _ATOM.fullmatch(addr_type):
                raise _syntax("Syntax error in ORCPT parameter value")
            if addr_type.lower() == "utf-8":
                decoded = _decode_utf8_addr(address, utf8)
            else:
                decoded = xtext_decode(address)
            if not decoded or _CONTROLS.search(decoded):
                raise _syntax("Syntax error in ORCPT address")
            orcpt = (addr_type, decoded)
        elif keyword in extra_ok:
            extra.append((keyword, value))
        else:
            raise _not_recognised(keyword)
    return RcptParameters(notify=notify, orcpt=orcpt, extra=tuple(extra))


def _check_text(what: str, value: str) -> None:
    if not isinstance(value, str) or _CONTROLS.search(value):
        raise LocalProtocolError(f"{what} must be a string without control characters")
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise LocalProtocolError(f"{what} is not valid Unicode")


def _format_extra(parts: list[str], extra: tuple[tuple[str, str | None], ...], utf8: bool) -> None:
    value_pattern = _VALUE_UTF8 if utf8 else _VALUE_ASCII
    for keyword, value in extra:
        if not isinstance(keyword, str) or not _KEYWORD.fullmatch(keyword):
            raise LocalProtocolError(f"invalid ESMTP keyword {keyword!r}")
        if value is None:
            parts.append(keyword.upper())
        elif isinstance(value, str) and value_pattern.fullmatch(value):
            parts.append(f"{keyword.upper()}={value}")
        else:
            raise LocalProtocolError(f"invalid value for ESMTP parameter {keyword}: {value!r}")
    keywords = [part.partition("=")[0] for part in parts]
    if len(set(keywords)) != len(keywords):
        raise LocalProtocolError("an ESMTP parameter is given twice")


def format_mail_parameters(p: MailParameters) -> str:
    """The parameter text of a MAIL command for the client, such as
    ``"SIZE=123 BODY=8BITMIME SMTPUTF8"``, AUTH and ENVID xtext-encoded; ``""`` when
    there are none. Raises :class:`LocalProtocolError` for a value that cannot be
    sent (a control character, an unknown BODY, an ENVID too long)."""
    parts: list[str] = []
    if p.size is not None:
        if isinstance(p.size, bool) or not isinstance(p.size, int) or p.size < 0:
            raise LocalProtocolError(f"invalid SIZE {p.size!r}")
        if len(str(p.size)) > 20:
            raise LocalProtocolError("SIZE has more than 20 digits")
        parts.append(f"SIZE={p.size}")
    if p.body is not None:
        if not isinstance(p.body, str) or p.body.upper() not in _BODY_VALUES:
            raise LocalProtocolError(f"invalid BODY {p.body!r}")
        parts.append(f"BODY={p.body.upper()}")
    if p.smtputf8:
        parts.append("SMTPUTF8")
    if p.auth is not None:
        _check_text("AUTH", p.auth)
        if not p.auth:
            raise LocalProtocolError("empty AUTH value")
        parts.append("AUTH=<>" if p.auth == "<>" else f"AUTH={xtext_encode(p.auth)}")
    if p.ret is not None:
        if not isinstance(p.ret, str) or p.ret.upper() not in ("FULL", "HDRS"):
            raise LocalProtocolError(f"invalid RET {p.ret!r}")
        parts.append(f"RET={p.ret.upper()}")
    if p.envid is not None:
        if not p.envid or len(p.envid) > MAX_ENVID:
            raise LocalProtocolError(f"ENVID must be 1 to {MAX_ENVID} characters")
        if not all("\x20" <= ch <= "\x7e" for ch in p.envid):
            raise LocalProtocolError("ENVID must be printable US-ASCII")
        parts.append(f"ENVID={xtext_encode(p.envid)}")
    if p.requiretls:
        parts.append("REQUIRETLS")
    _format_extra(parts, p.extra, p.smtputf8)
    return " ".join(parts)


def format_rcpt_parameters(p: RcptParameters, *, utf8: bool = False) -> str:
    """The parameter text of a RCPT command for the client, such as
    ``"NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b.example"``; ``""`` when there are
    none. ``utf8`` allows non-ASCII in ``extra`` values (SMTPUTF8 transaction).
    Raises :class:`LocalProtocolError` for a value that cannot be sent."""
    parts: list[str] = []
    if p.notify is not None:
        notify = frozenset(item.upper() for item in p.notify)
        if notify == {"NEVER"}:
            parts.append("NOTIFY=NEVER")
        elif notify and notify <= _NOTIFY_VALUES:
            parts.append("NOTIFY=" + ",".join(v for v in _NOTIFY_ORDER if v in notify))
        else:
            raise LocalProtocolError(f"invalid NOTIFY {sorted(p.notify)!r}")
    if p.orcpt is not None:
        addr_type, address = p.orcpt
        if not isinstance(addr_type, str) or not _ATOM.fullmatch(addr_type):
            raise LocalProtocolError(f"invalid ORCPT address type {addr_type!r}")
        _check_text("ORCPT", address)
        if not address:
            raise LocalProtocolError("empty ORCPT address")
        if addr_type.lower() == "utf-8":
            encoded = _encode_utf8_addr(address)
        else:
            encoded = xtext_encode(address)
        value = f"{addr_type};{encoded}"
        if len(value) > MAX_ORCPT:
            raise LocalProtocolError(f"ORCPT longer than {MAX_ORCPT} characters")
        parts.append(f"ORCPT={value}")
    _format_extra(parts, p.extra, utf8)
    return " ".join(parts)
