"""SMTP envelope addresses: the Mailbox and Path grammar of RFC 5321 §4.1.2 and §4.1.3.

The grammar implemented here (RFC 5321 §4.1.2, widened by RFC 6531 §3.3 when the
``utf8`` flag says that SMTPUTF8 is in use)::

    Reverse-path   = Path / "<>"
    Forward-path   = Path                      ; plus "<Postmaster>" (§4.1.1.3)
    Path           = "<" [ A-d-l ":" ] Mailbox ">"
    A-d-l          = At-domain *( "," At-domain )   ; source route: accepted, ignored
    At-domain      = "@" Domain
    Mailbox        = Local-part "@" ( Domain / address-literal )
    Local-part     = Dot-string / Quoted-string
    Dot-string     = Atom *("." Atom)
    Atom           = 1*atext                   ; atext =/ UTF8-non-ascii  (RFC 6531)
    Quoted-string  = DQUOTE *QcontentSMTP DQUOTE
    QcontentSMTP   = qtextSMTP / quoted-pairSMTP
    quoted-pairSMTP = %d92 %d32-126
    qtextSMTP      = %d32-33 / %d35-91 / %d93-126   ; =/ UTF8-non-ascii (RFC 6531)
    Domain         = sub-domain *("." sub-domain)
    sub-domain     = Let-dig [Ldh-str]         ; =/ U-label (RFC 6531)
    address-literal = "[" ( IPv4-address-literal / IPv6-address-literal /
                            General-address-literal ) "]"

Length limits are those of §4.5.3.1, counted in octets of the UTF-8 encoding.
This module is pure: no I/O, standard library only.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import idna

__all__ = [
    "AddressError",
    "Mailbox",
    "Path",
    "parse_forward_path",
    "parse_mailbox",
    "parse_path",
    "parse_reverse_path",
    "split_path_and_parameters",
]

# RFC 5321 §4.5.3.1.1-3: local part 64 octets, domain 255 octets, path 256 octets
# (the path limit includes the angle brackets and the source route).
MAX_LOCAL_PART = 64
MAX_DOMAIN = 255
MAX_PATH = 256
# RFC 1035 §2.3.4: a label is at most 63 octets.
_MAX_LABEL = 63


class AddressError(ValueError):
    """A mailbox or path that does not follow the RFC 5321 grammar (or exceeds one
    of its limits). The message says what is wrong, in words fit for a reply text."""


# RFC 5322 §3.2.3 atext, as RFC 5321 §4.1.2 uses it.
_ATEXT_ASCII = "A-Za-z0-9!#$%&'*+\\-/=?^_`{|}~"
_DOT_STRING_ASCII = re.compile(rf"[{_ATEXT_ASCII}]+(?:\.[{_ATEXT_ASCII}]+)*")
# UTF8-non-ascii as a Python string: any code point above U+007F except the C1
# controls (we reject control characters everywhere) and lone surrogates (which are
# not UTF-8 at all).
_NON_ASCII = "\u00a0-\ud7ff\ue000-\U0010ffff"
_DOT_STRING_UTF8 = re.compile(rf"[{_ATEXT_ASCII}{_NON_ASCII}]+(?:\.[{_ATEXT_ASCII}{_NON_ASCII}]+)*")
# The characters a local part's value may hold at all: those that qtextSMTP or
# quoted-pairSMTP can carry (%d32-126), plus UTF8-non-ascii.
_LOCAL_VALUE_CHARS = re.compile(rf"[\x20-\x7e{_NON_ASCII}]*")
# RFC 5321 §4.1.2: sub-domain = Let-dig [Ldh-str]; Ldh-str = *( ALPHA / DIGIT / "-" ) Let-dig
_LDH_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
# RFC 5321 §4.1.3: Standardized-tag = Ldh-str; dcontent = %d33-90 / %d94-126
_GENERAL_LITERAL = re.compile(r"([A-Za-z0-9-]*[A-Za-z0-9]):([\x21-\x5a\x5e-\x7e]+)")
_IPV4_LITERAL = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# The common case in one pattern: an ASCII Dot-string local part "@" a domain name of
# LDH labels of at most 63 octets, in angle brackets, no source route. Whatever it
# matches (within the length limits checked beside it) the full grammar accepts with
# the same result; everything else goes the long way.
_SIMPLE_PATH = re.compile(
    rf"<([{_ATEXT_ASCII}]+(?:\.[{_ATEXT_ASCII}]+)*)@"
    r"([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)>"
)
# Paths parsed by the fast path lately (they are immutable), bounded: a path seen
# again costs 107 ns instead of 1.45 us (timeit of parse_reverse_path, 2026-12-06).
_SIMPLE_PATHS: dict[str, Path] = {}
_SIMPLE_PATHS_MAX = 1024


def _octets(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _check_chars(text: str, utf8: bool, what: str) -> None:
    """Reject control characters and (without SMTPUTF8) any non-ASCII."""
    if _CONTROLS.search(text):
        raise AddressError(f"control character in {what}")
    if not text.isascii():
        if not utf8:
            raise AddressError(f"non-ASCII character in {what} (needs SMTPUTF8)")
        if any("\ud800" <= c <= "\udfff" for c in text):
            raise AddressError(f"invalid character in {what}")


def _is_u_label(label: str) -> bool:
    """Whether ``label`` is an IDNA 2008 U-label (RFC 5890 §2.3.2.1) once mapped by
    UTS #46 (case folding, width), as mailagents.dns converts it for the lookup: the
    code points IDNA 2008 allows, its contextual and bidi rules, and an A-label form
    that fits in 63 octets."""
    try:
        mapped = idna.uts46_remap(label, std3_rules=True, transitional=False)
        # The mapping turns some dots (U+3002 and others) into "."; a label has none.
        if "." in mapped:
            return False
        alabel = idna.alabel(mapped)
    except (idna.IDNAError, UnicodeError):
        return False
    return len(alabel) <= _MAX_LABEL


def _check_domain(domain: str, utf8: bool) -> None:
    """Domain = sub-domain *("." sub-domain) (RFC 5321 §4.1.2; U-labels per RFC 6531)."""
    if not domain:
        raise AddressError("empty domain")
    _check_chars(domain, utf8, "domain")
    if _octets(domain) > MAX_DOMAIN:
        raise AddressError(f"domain longer than {MAX_DOMAIN} octets")
    for label in domain.split("."):
        if not label:
            raise AddressError(f"empty label in domain {domain!r}")
        if label.isascii():
            if not _LDH_LABEL.fullmatch(label):
                raise AddressError(f"invalid domain label {label!r}")
            if len(label) > _MAX_LABEL:
                raise AddressError(f"domain label longer than {_MAX_LABEL} octets")
        elif not _is_u_label(label):
            raise AddressError(f"invalid internationalised domain label {label!r}")


def _check_address_literal(literal: str) -> None:
    """address-literal = "[" ( IPv4 / "IPv6:" IPv6 / General ) "]" (RFC 5321 §4.1.3)."""
    if len(literal) < 3 or literal[0] != "[" or literal[-1] != "]":
        raise AddressError(f"malformed address literal {literal!r}")
    if not literal.isascii() or _CONTROLS.search(literal):
        raise AddressError("address literal must be printable ASCII")
    if _octets(literal) > MAX_DOMAIN:
        raise AddressError(f"address literal longer than {MAX_DOMAIN} octets")
    inner = literal[1:-1]
    if _IPV4_LITERAL.fullmatch(inner):
        # Snum 3("." Snum), each Snum 0-255; ipaddress also refuses leading zeros,
        # which some stacks would read as octal.
        try:
            ipaddress.IPv4Address(inner)
        except ValueError:
            raise AddressError(f"invalid IPv4 address literal {literal!r}") from None
        return
    match = _GENERAL_LITERAL.fullmatch(inner)
    if match is None:
        raise AddressError(f"invalid address literal {literal!r}")
    tag, content = match.groups()
    if tag.lower() == "ipv6":
        # IPv6-address-literal = "IPv6:" IPv6-addr; ipaddress accepts a "%scope"
        # suffix, which the RFC grammar has no room for.
        if "%" in content:
            raise AddressError(f"invalid IPv6 address literal {literal!r}")
        try:
            ipaddress.IPv6Address(content)
        except ValueError:
            raise AddressError(f"invalid IPv6 address literal {literal!r}") from None


def _check_domain_or_literal(domain: str, utf8: bool) -> None:
    if domain.startswith("["):
        _check_address_literal(domain)
    else:
        _check_domain(domain, utf8)


def _quote_local_part(local_part: str) -> str:
    """The canonical written form of a local part (RFC 5321 §4.1.2): a Dot-string
    when the value is one, else a Quoted-string escaping only DQUOTE and backslash."""
    if _DOT_STRING_UTF8.fullmatch(local_part):
        return local_part
    escaped = local_part.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


@dataclass(frozen=True, slots=True, eq=False)
class Mailbox:
    """An RFC 5321 Mailbox: ``local_part`` "@" ``domain``.

    ``local_part`` is the semantic value (unquoted, escapes resolved) and is
    case-sensitive. ``domain`` is a domain name as written (no trailing dot), an
    address literal with its brackets (``"[192.0.2.1]"``, ``"[IPv6:2001:db8::1]"``),
    or ``""`` only for the special recipient ``<postmaster>`` (RFC 5321 §4.1.1.3).
    Domains compare case-insensitively (RFC 5321 §2.4), so two mailboxes that differ
    only in the case of the domain are equal and hash alike.

    Construction validates both parts (characters, grammar, the §4.5.3.1 limits) and
    raises :class:`AddressError`, so that ``str(mailbox)`` can always be written on
    the wire. Non-ASCII is allowed here; :attr:`is_utf8` says whether SMTPUTF8 is
    needed to send it.
    """

    local_part: str
    domain: str

    def __post_init__(self) -> None:
        if not isinstance(self.local_part, str) or not isinstance(self.domain, str):
            raise AddressError("local part and domain must be strings")
        if not _LOCAL_VALUE_CHARS.fullmatch(self.local_part):
            raise AddressError("local part contains a character that cannot be written")
        if _octets(_quote_local_part(self.local_part)) > MAX_LOCAL_PART:
            raise AddressError(f"local part longer than {MAX_LOCAL_PART} octets")
        if self.domain == "":
            if self.local_part.lower() != "postmaster":
                raise AddressError("a mailbox without a domain must be postmaster")
            return
        _check_domain_or_literal(self.domain, True)

    @property
    def is_utf8(self) -> bool:
        """Whether the local part or the domain holds non-ASCII (needs SMTPUTF8)."""
        return not (self.local_part.isascii() and self.domain.isascii())

    @property
    def is_address_literal(self) -> bool:
        """Whether the domain is an address literal such as ``[192.0.2.1]``."""
        return self.domain.startswith("[")

    def __str__(self) -> str:
        local = _quote_local_part(self.local_part)
        return f"{local}@{self.domain}" if self.domain else local

    def __repr__(self) -> str:
        return f"Mailbox(local_part={self.local_part!r}, domain={self.domain!r})"

    def _key(self) -> tuple[str, str]:
        return (self.local_part, self.domain.lower())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mailbox):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True, slots=True)
class Path:
    """An RFC 5321 reverse-path or forward-path: a mailbox in angle brackets, or the
    null reverse-path ``<>`` when ``mailbox`` is ``None``.

    A source route given by the peer is not kept (RFC 5321 §3.6.1, Appendix C).
    """

    mailbox: Mailbox | None

    @property
    def is_null(self) -> bool:
        """Whether this is the null reverse-path ``<>``."""
        return self.mailbox is None

    def __str__(self) -> str:
        return "<>" if self.mailbox is None else f"<{self.mailbox}>"


def _scan_quoted(text: str, start: int) -> int:
    """Given text[start] == '"', return the index just past the closing quote of a
    Quoted-string, honouring backslash escapes; AddressError if it is unterminated."""
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
        elif ch == '"':
            return i + 1
        else:
            i += 1
    raise AddressError("unterminated quoted string")


def _parse_quoted_local_part(quoted: str, utf8: bool) -> str:
    """Quoted-string = DQUOTE *QcontentSMTP DQUOTE (RFC 5321 §4.1.2), unquoted."""
    out: list[str] = []
    i = 1
    end = len(quoted) - 1
    while i < end:
        ch = quoted[i]
        if ch == "\\":
            # quoted-pairSMTP = %d92 %d32-126 (not widened by RFC 6531)
            nxt = quoted[i + 1] if i + 1 < end else ""
            if not nxt or not "\x20" <= nxt <= "\x7e":
                raise AddressError("invalid backslash escape in quoted local part")
            out.append(nxt)
            i += 2
            continue
        if "\x20" <= ch <= "\x7e":
            if ch == '"':  # pragma: no cover - _scan_quoted stops at it
                raise AddressError("unescaped quote in quoted local part")
        elif ch.isascii():
            raise AddressError("control character in local part")
        elif not utf8:
            raise AddressError("non-ASCII character in local part (needs SMTPUTF8)")
        out.append(ch)
        i += 1
    return "".join(out)


def parse_mailbox(text: str, *, utf8: bool = False) -> Mailbox:
    """Parse an RFC 5321 ``Mailbox`` (``user@example.com``, without angle brackets).

    With ``utf8`` (SMTPUTF8 in use, RFC 6531 §3.3) the local part and the domain
    may hold non-ASCII; without it any non-ASCII is an error.
    Raises :class:`AddressError`.
    """
    _check_chars(text, utf8, "address")
    if text.startswith('"'):
        end = _scan_quoted(text, 0)
        written_local = text[:end]
        local_part = _parse_quoted_local_part(written_local, utf8)
        rest = text[end:]
    else:
        at = text.find("@")
        if at < 0:
            raise AddressError("address has no @domain")
        written_local = text[:at]
        pattern = _DOT_STRING_UTF8 if utf8 else _DOT_STRING_ASCII
        if not pattern.fullmatch(written_local):
            raise AddressError(f"invalid local part {written_local!r}")
        local_part = written_local
        rest = text[at:]
    if not rest.startswith("@"):
        raise AddressError("local part must be followed by @domain")
    if _octets(written_local) > MAX_LOCAL_PART:
        raise AddressError(f"local part longer than {MAX_LOCAL_PART} octets")
    domain = rest[1:]
    _check_domain_or_literal(domain, utf8)
    return Mailbox(local_part, domain)


def parse_path(
    text: str,
    *,
    utf8: bool = False,
    allow_null: bool = False,
    allow_postmaster: bool = False,
) -> Path:
    """Parse an RFC 5321 ``Path`` in angle brackets: ``<user@example.com>``.

    A source route (``<@a.example,@b.example:user@c.example>``) is checked and then
    dropped (RFC 5321 §4.1.1.3, §3.6.1, Appendix C). ``allow_null`` accepts ``<>``
    (a reverse-path); ``allow_postmaster`` accepts ``<postmaster>`` in any case
    (a forward-path, §4.1.1.3), returned as ``Mailbox("postmaster", "")``.
    Raises :class:`AddressError`.
    """
    path = _SIMPLE_PATHS.get(text)
    if path is not None:
        return path
    if len(text) <= MAX_PATH:
        match = _SIMPLE_PATH.fullmatch(text)
        if match is not None and len(match[1]) <= MAX_LOCAL_PART:
            # Valid by construction (the pattern and the limits above): no second
            # check of every part in Mailbox.__post_init__.
            mailbox = object.__new__(Mailbox)
            object.__setattr__(mailbox, "local_part", match[1])
            object.__setattr__(mailbox, "domain", match[2])
            path = Path(mailbox)
            if len(_SIMPLE_PATHS) >= _SIMPLE_PATHS_MAX:
                _SIMPLE_PATHS.clear()
            _SIMPLE_PATHS[text] = path
            return path
    _check_chars(text, utf8, "path")
    if len(text) < 2 or text[0] != "<" or text[-1] != ">":
        raise AddressError("path must be enclosed in angle brackets")
    if _octets(text) > MAX_PATH:
        raise AddressError(f"path longer than {MAX_PATH} octets")
    inner = text[1:-1]
    if inner == "":
        if not allow_null:
            raise AddressError("null path <> not allowed here")
        return Path(None)
    if allow_postmaster and inner.lower() == "postmaster":
        return Path(Mailbox("postmaster", ""))
    if inner.startswith("@"):
        # A-d-l = At-domain *( "," At-domain ); At-domain = "@" Domain. No ":" can
        # occur in a Domain, so the first ":" ends the route.
        colon = inner.find(":")
        if colon < 0:
            raise AddressError("source route without ':'")
        for hop in inner[:colon].split(","):
            if not hop.startswith("@"):
                raise AddressError("malformed source route")
            _check_domain(hop[1:], utf8)
        inner = inner[colon + 1 :]
    return Path(parse_mailbox(inner, utf8=utf8))


def parse_reverse_path(text: str, *, utf8: bool = False) -> Path:
    """Parse the reverse-path of MAIL FROM (RFC 5321 §4.1.1.2): a Path or ``<>``."""
    return parse_path(text, utf8=utf8, allow_null=True)


def parse_forward_path(text: str, *, utf8: bool = False) -> Path:
    """Parse the forward-path of RCPT TO (RFC 5321 §4.1.1.3): a Path or
    ``<postmaster>`` without a domain (any case)."""
    return parse_path(text, utf8=utf8, allow_postmaster=True)


def _path_end(text: str) -> int:
    """The index of the ">" that closes the path at the start of ``text`` (which
    starts with "<"), honouring quoted strings and address literals."""
    i = 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i = _scan_quoted(text, i)
            continue
        if ch == "[":
            # An address literal's dcontent (RFC 5321 §4.1.3) may hold ">" but
            # never "]", so the literal runs to the next "]".
            close = text.find("]", i)
            if close < 0:
                raise AddressError("unterminated address literal")
            i = close + 1
            continue
        if ch == ">":
            return i
        i += 1
    raise AddressError("path has no closing '>'")


def split_path_and_parameters(argument: str) -> tuple[str, str]:
    """Split the argument of ``MAIL FROM:`` or ``RCPT TO:`` into the path (with its
    angle brackets) and the parameter text: ``"<a@b> SIZE=10"`` gives
    ``("<a@b>", "SIZE=10")``.

    The path must be in angle brackets (a bare ``a@b`` is refused). Quoted strings
    and address literals are honoured, so ``<"a> b"@x>`` is one path. Spaces before
    the path and between the path and the parameters are tolerated (some clients
    send ``FROM: <a@b>``); the parameter text is returned without leading or
    trailing spaces.
    Raises :class:`AddressError`; the path itself is checked by :func:`parse_path`.
    """
    text = argument.lstrip(" ")
    if not text.startswith("<"):
        raise AddressError("path must be enclosed in angle brackets")
    i = text.find(">")
    if i < 0 or '"' in text[1:i] or "[" in text[1:i]:
        # A quoted string or an address literal may hold the ">" found: scan.
        i = _path_end(text)
    path, rest = text[: i + 1], text[i + 1 :]
    if rest and not rest.startswith(" "):
        raise AddressError("path must be followed by a space or the end of the line")
    return path, rest.strip(" ")
