"""Delivery status notifications (RFC 3464): the bounce a relaying MTA sends back.

:func:`build_dsn` is a pure function over plain data: the recipients' fates
(:class:`DSNRecipient`), the original message and the facts of its envelope. It
returns the notice as a :class:`~mailagents.delivery.Message` (:class:`Bounce`),
written into a :class:`~mailagents.delivery.MessageSpool` part by part, with the
original copied in by its chunks, so that returning a large message never holds it in
memory whole.

The notice is a ``multipart/report`` (RFC 6522 §3) of three parts (RFC 3464 §2):

1. ``text/plain``: what happened to which recipient and why, for a person;
2. ``message/delivery-status``: the same for a program, one block of per-message
   fields and one block per recipient (RFC 3464 §2.2, §2.3);
3. the original: ``message/rfc822`` (the whole message) or ``text/rfc822-headers``
   (its header section only), RFC 3461 §4.3 and RFC 6522 §4.

For an SMTPUTF8 message, or as soon as an address is non-ASCII, the RFC 6533 types
are used instead: ``message/global-delivery-status``, ``message/global`` and
``message/global-headers``.

The caller sends the notice with a null reverse-path, ``MAIL FROM:<>`` (RFC 5321
§4.5.5, so that a notice is never answered by another), to the original reverse-path
(RFC 3464 §2: both the envelope and ``To:`` name it), with ``BODY=8BITMIME`` when
:attr:`Bounce.eight_bit` and ``SMTPUTF8`` when :attr:`Bounce.smtputf8`.
"""

from __future__ import annotations

import binascii
import datetime
import email.utils
import math
import re
import secrets
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from mailagents.delivery import MEMORY_LIMIT, Message, MessageSpool
from mailagents.smtp import Reply, parse_mailbox

__all__ = [
    "RETURN_LIMIT",
    "Bounce",
    "DSNAction",
    "DSNKind",
    "DSNRecipient",
    "Returned",
    "build_dsn",
]

DSNKind = Literal["failure", "delay", "success"]
"""What a notice reports: a recipient failed, is delayed, or was delivered."""
DSNAction = Literal["failed", "delayed", "delivered", "relayed", "expanded"]
"""The RFC 3464 §2.3.3 action-value of one recipient."""
Returned = Literal["full", "headers", "none"]
"""What the third part holds: the whole original, its header section, or nothing."""

RETURN_LIMIT = 10 << 20
"""The default size above which a failure notice returns only the header section."""

_MAX_LINE = 998  # RFC 5322 §2.1.1: octets per line, CRLF excluded
_FOLD_AT = 78  # RFC 5322 §2.1.1: lines SHOULD be at most 78 characters
_MAX_VALUE = 900  # octets of an address or a name: room for the field name on one line
_MAX_ENVID = 100  # RFC 3461 §4.4
_TEXT_WIDTH = 72
_CRLF = b"\r\n"

# RFC 3464 §2.3.4: status-code = DIGIT "." 1*3DIGIT "." 1*3DIGIT, no leading zeros;
# the class is 2, 4 or 5 (RFC 3463 §3.1).
_STATUS = re.compile(r"([245])\.(?:0|[1-9][0-9]{0,2})\.(?:0|[1-9][0-9]{0,2})")
# RFC 3461 §4.2: addr-type = atom (RFC 5321 §4.1.2 Atom = 1*atext).
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+")
# A DNS name as the MTA names it (RFC 3464 §2.2.2, §2.3.5: mta-name of type "dns"):
# printable ASCII, no white space, no ";" (it ends the name type).
_MTA_NAME = re.compile(r"[\x21-\x3a\x3c-\x7e]{1,255}")
# C0 controls, DEL, the C1 controls, the Unicode line and paragraph separators and
# lone surrogates (not UTF-8): never in a field, never in the text.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# RFC 6533 §3: QCHAR = %x21-2a / %x2c-3c / %x3e-5b / %x5d-7e (printable ASCII
# but "+", "=" and "\"); anything else is written \x{HEXPOINT}.
_QCHAR = re.compile(r"[\x21-\x2a\x2c-\x3c\x3e-\x5b\x5d-\x7e]")

# The status class each action may carry (RFC 3464 §2.3.3, and its note on action
# versus status: a "failed" recipient may carry a persistent temporary status after
# the MTA gave up; "relayed" may carry the status of a conversion).
_ACTION_CLASSES: dict[str, str] = {
    "failed": "45",
    "delayed": "4",
    "delivered": "2",
    "relayed": "245",
    "expanded": "2",
}
_SUBJECTS: dict[str, str] = {
    "failure": "Undelivered Mail Returned to Sender",
    "delay": "Delayed Mail (still being retried)",
    "success": "Successful Mail Delivery Report",
}


# ------------------------------------------------------------------------ the data


@dataclass(frozen=True, slots=True, kw_only=True)
class DSNRecipient:
    """What became of one recipient, as the notice reports it (RFC 3464 §2.3).

    Checked at construction: a field value never holds CR, LF or another control
    character (:class:`ValueError`), so that no value can start a field of its own.
    """

    final_recipient: str
    """The address as the MTA tried it (the envelope's, RFC 3464 §2.3.2), case kept."""
    action: DSNAction
    """``"failed"``, ``"delayed"``, ``"delivered"``, ``"relayed"`` or ``"expanded"``."""
    status: str
    """The RFC 3463 status code (``"5.1.1"``), of a class the action allows."""
    original_recipient: tuple[str, str] | None = None
    """The ORCPT parameter (RFC 3461 §4.2): its addr-type and its address, already
    decoded (``("rfc822", "a@example.test")``); ``None`` if the RCPT had none, and
    then the notice has no ``Original-Recipient`` field (RFC 3461 §6.3)."""
    remote_mta: str | None = None
    """The DNS name of the MTA that gave :attr:`diagnostic`, if one did (RFC 3464
    §2.3.5); ``None`` when the reporting MTA itself decided."""
    diagnostic: Reply | None = None
    """The SMTP reply that says why (``Diagnostic-Code: smtp; ...``, RFC 3464
    §2.3.6)."""
    last_attempt: float | None = None
    """When delivery was last tried (Unix time), if it was (RFC 3464 §2.3.7)."""
    will_retry_until: float | None = None
    """For a ``"delayed"`` recipient: when the MTA gives up (RFC 3464 §2.3.9)."""

    def __post_init__(self) -> None:
        _check_value("final_recipient", self.final_recipient)
        if self.action not in _ACTION_CLASSES:
            raise ValueError(f"unknown action {self.action!r}")
        match = _STATUS.fullmatch(self.status)
        if match is None:
            raise ValueError(f"malformed status code {self.status!r}")
        if match.group(1) not in _ACTION_CLASSES[self.action]:
            raise ValueError(f"an action {self.action!r} cannot carry status {self.status}")
        if self.original_recipient is not None:
            addr_type, address = self.original_recipient
            if not _ATOM.fullmatch(addr_type):
                raise ValueError(f"malformed ORCPT address type {addr_type!r}")
            _check_value("original_recipient", address)
            if addr_type.lower() == "utf-8" and len(_utf8_addr(address, unitext=False)) > 500:
                raise ValueError("original_recipient is longer than ORCPT allows")  # RFC 3461 §4.2
        if self.remote_mta is not None:
            _check_mta_name("remote_mta", self.remote_mta)
        if self.will_retry_until is not None and self.action != "delayed":
            # RFC 3464 §2.3.9: the field "MUST NOT appear" for other actions.
            raise ValueError("will_retry_until is only for a delayed recipient")
        for name in ("last_attempt", "will_retry_until"):
            when = getattr(self, name)
            if when is not None:
                _date(when, name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bounce:
    """A notice built by :func:`build_dsn`, and how it must be sent."""

    message: Message
    """The notice, CRLF line ends, no line longer than 998 octets."""
    eight_bit: bool
    """The body holds 8-bit octets (returned content, or UTF-8 in the global
    delivery-status part): send it with ``BODY=8BITMIME`` (RFC 6152)."""
    smtputf8: bool
    """The notice's own header and envelope hold a non-ASCII address (its recipient):
    send it with ``SMTPUTF8`` (RFC 6531). The RFC 6533 global parts alone do not need
    it: they are body content, carried by 8BITMIME."""
    returned: Returned
    """What the third part holds: ``"full"``, ``"headers"`` or ``"none"``."""


# --------------------------------------------------------------------- validation


def _check_value(name: str, value: str) -> None:
    """A value copied into a field: no control characters (CR and LF above all: RFC
    3464 §2.3.2), no white space at either end, short enough for one line."""
    if not value:
        raise ValueError(f"{name} is empty")
    if _CONTROLS.search(value):
        raise ValueError(f"{name} holds a control character (CR, LF, ...): {value!r}")
    if value != value.strip():
        raise ValueError(f"{name} starts or ends with white space: {value!r}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"{name} is not valid Unicode") from None
    if size > _MAX_VALUE:
        raise ValueError(f"{name} is longer than {_MAX_VALUE} octets")


def _check_mta_name(name: str, value: str) -> None:
    if not _MTA_NAME.fullmatch(value):
        raise ValueError(f"{name} must be a DNS name in ASCII (A-labels): {value!r}")


def _date(when: float, name: str) -> str:
    """An RFC 5322 date-time with a numeric zone (RFC 3464 §2.3.7), in UTC."""
    if not math.isfinite(when):
        raise ValueError(f"{name} is not a time: {when!r}")
    try:
        moment = datetime.datetime.fromtimestamp(when, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{name} is out of range: {when!r}") from None
    return email.utils.format_datetime(moment)


def _check_kind(kind: DSNKind, recipients: Sequence[DSNRecipient]) -> None:
    """The kind names the gravest action: a failure notice reports a failed recipient,
    a delay notice a delayed one and none failed, a success notice neither."""
    if not recipients:
        raise ValueError("a notice reports at least one recipient")
    actions = {r.action for r in recipients}
    if "failed" in actions:
        expected = "failure"
    elif "delayed" in actions:
        expected = "delay"
    else:
        expected = "success"
    if kind != expected:
        raise ValueError(f"a {kind!r} notice for actions {sorted(actions)} should be "
                         f"{expected!r}")


# ------------------------------------------------------------------------ writing


def _fold(name: str, value: str, *, split_words: bool = False) -> bytes:
    """``Name: value`` as lines of at most 78 characters where white space allows,
    never more than 998 octets (RFC 5322 §2.2.3: a fold is a CRLF put before white
    space, which unfolding removes again, so the value is kept exactly). A word too
    long for one line is cut (a space is then added where it was cut) if
    ``split_words``, else it raises :class:`ValueError`."""
    lines: list[str] = []
    line = name + ":"
    for chunk in re.findall(r" +[^ ]*", " " + value.rstrip()):
        if _octets(chunk) > _MAX_LINE - 1:
            if not split_words:
                raise ValueError(f"a {name} value has a word too long for a line")
            *pieces, chunk = _cut(chunk, _MAX_LINE - 1)
            for piece in pieces:
                lines.append(line)
                line = piece
        length = _octets(line) + _octets(chunk)
        if length > _MAX_LINE or (length > _FOLD_AT and line != name + ":"):
            lines.append(line)
            line = chunk
        else:
            line += chunk
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _cut(chunk: str, limit: int) -> list[str]:
    """``chunk`` (spaces and a word) in pieces of at most ``limit`` octets, every
    piece after the first starting with a space (to fold before)."""
    pieces: list[str] = []
    piece: list[str] = []
    size = 0
    for ch in chunk:
        n = _octets(ch)
        if size + n > limit:
            pieces.append("".join(piece))
            piece, size = [" "], 1
        piece.append(ch)
        size += n
    pieces.append("".join(piece))
    return pieces


def _octets(text: str) -> int:
    return len(text.encode("utf-8"))


def _clean(text: str, *, ascii_only: bool) -> str:
    """Text from a remote server made fit for a field or a line: control characters
    (and, in a 7-bit part, non-ASCII) become ``?``; a tab becomes a space."""
    text = _CONTROLS.sub(lambda m: " " if m.group() == "\t" else "?", text)
    if ascii_only and not text.isascii():
        text = "".join(c if c.isascii() else "?" for c in text)
    return text


def _utf8_addr(address: str, *, unitext: bool) -> str:
    """An address of the RFC 6533 §3 ``utf-8`` type: utf-8-addr-xtext (7-bit: any
    character but a QCHAR written ``\\x{HEX}``) or, in a global part,
    utf-8-addr-unitext (non-ASCII kept as it is)."""
    return "".join(
        ch if _QCHAR.fullmatch(ch) or (unitext and not ch.isascii())
        else f"\\x{{{ord(ch):02X}}}"
        for ch in address
    )


def _diagnostic(reply: Reply, *, ascii_only: bool) -> str:
    """The RFC 3464 §2.3.6 value for an SMTP reply: ``smtp; 550 5.1.1 text``, the
    lines of a multi-line reply joined with spaces (the enhanced code once), runs of
    white space made one space."""
    words = [str(reply.code)]
    if reply.enhanced:
        words.append(reply.enhanced)
    for line in reply.lines:
        words += _clean(line, ascii_only=ascii_only).split()
    return "smtp; " + " ".join(words)


def _reply_lines(reply: Reply) -> list[str]:
    """The reply as the server sent it, one line each (for the human-readable part)."""
    prefix = f"{reply.enhanced} " if reply.enhanced else ""
    last = len(reply.lines) - 1
    return [
        f"{reply.code}{' ' if i == last else '-'}{prefix}"
        f"{_clean(line, ascii_only=False)}".rstrip()
        for i, line in enumerate(reply.lines)
    ]


def _status_part(
    *,
    reporting_mta: str,
    envid: str | None,
    arrival: float,
    recipients: Sequence[DSNRecipient],
    utf8: bool,
) -> bytes:
    """The body of the delivery-status part (RFC 3464 §2.1): the per-message fields,
    then for each recipient an empty line and its fields."""
    ascii_only = not utf8
    # RFC 3464 §2.2: Original-Envelope-Id only from an ENVID (RFC 3461 §6.3),
    # Reporting-MTA always, Arrival-Date when known (it always is here).
    out = []
    if envid is not None:
        out.append(_fold("Original-Envelope-Id", envid))
    out.append(_fold("Reporting-MTA", f"dns; {reporting_mta}"))
    out.append(_fold("Arrival-Date", _date(arrival, "arrival")))
    for r in recipients:
        out.append(_CRLF)
        if r.original_recipient is not None:
            # RFC 3461 §6.3: the value taken from the ORCPT parameter; of the utf-8
            # type in its RFC 6533 §3 form.
            addr_type, address = r.original_recipient
            if addr_type.lower() == "utf-8":
                address = _utf8_addr(address, unitext=utf8)
            out.append(_fold("Original-Recipient", f"{addr_type}; {address}"))
        # RFC 3464 §2.3.2: the address exactly as in the envelope; a non-ASCII one
        # is of the utf-8 type (RFC 6533 §3), in a global part.
        final_type = "rfc822" if r.final_recipient.isascii() else "utf-8"
        out.append(_fold("Final-Recipient", f"{final_type}; {r.final_recipient}"))
        out.append(_fold("Action", r.action))
        out.append(_fold("Status", r.status))
        if r.remote_mta is not None:
            out.append(_fold("Remote-MTA", f"dns; {r.remote_mta}"))
        if r.diagnostic is not None:
            out.append(_fold("Diagnostic-Code", _diagnostic(r.diagnostic, ascii_only=ascii_only),
                             split_words=True))
        if r.last_attempt is not None:
            out.append(_fold("Last-Attempt-Date", _date(r.last_attempt, "last_attempt")))
        if r.will_retry_until is not None:
            out.append(_fold("Will-Retry-Until", _date(r.will_retry_until, "will_retry_until")))
    return b"".join(out)


_WHAT = {
    "delivered": "delivered",
    "relayed": "passed on to a mail system that sends no delivery reports",
    "expanded": "delivered, and forwarded on to further recipients",
}


def _fate(r: DSNRecipient) -> str:
    """One recipient's fate, in words."""
    if r.action == "failed":
        if r.status.startswith("4"):
            return "delivery failed; the mail system gave up retrying"
        return "delivery failed permanently"
    if r.action == "delayed":
        what = "not delivered yet; the mail system will keep trying"
        if r.will_retry_until is not None:
            what += " until " + _date(r.will_retry_until, "will_retry_until")
        return what
    return _WHAT[r.action]


def _human_text(
    *,
    kind: DSNKind,
    reporting_mta: str,
    recipients: Sequence[DSNRecipient],
    returned: Returned,
    why_headers: str,
) -> str:
    """The first part, for a person: what happened to which recipient, and why."""
    intro = {
        "failure": "Your message could not be delivered to one or more recipients.",
        "delay": "Your message has not been delivered to one or more recipients yet. "
                 "The mail system keeps trying; you need not send it again.",
        "success": "Your message was delivered to the recipients below.",
    }[kind]
    paragraphs = [f"This is the mail system at {reporting_mta}.", intro]
    if returned == "full":
        paragraphs.append("Your message is attached below.")
    elif returned == "headers":
        paragraphs.append("The header section of your message is attached below"
                          + (f" ({why_headers})." if why_headers else "."))
    else:
        paragraphs.append(f"Your message is not attached ({why_headers}).")
    lines: list[str] = []
    for p in paragraphs:
        lines += _wrap(p, hanging="")
        lines.append("")
    for r in recipients:
        who = f"<{r.final_recipient}>"
        if r.original_recipient is not None and r.original_recipient[1] != r.final_recipient:
            who += f" (sent to {r.original_recipient[1]})"
        lines += _wrap(f"{who}: {_fate(r)} (status {r.status}).")
        if r.diagnostic is not None:
            said = (f"The mail server {r.remote_mta} answered:" if r.remote_mta
                    else f"The reason given by {reporting_mta}:")
            lines += _wrap(said, indent="    ")
            lines += ["        " + line for line in _reply_lines(r.diagnostic)]
        lines.append("")
    return "\n".join(lines)


def _wrap(text: str, indent: str = "", hanging: str = "    ") -> list[str]:
    """``text`` in lines of 72 characters, its words (addresses) never cut."""
    return textwrap.wrap(text, _TEXT_WIDTH, initial_indent=indent,
                         subsequent_indent=indent + hanging, break_long_words=False,
                         break_on_hyphens=False) or [""]


def _text_part(text: str) -> bytes:
    """The human-readable part, 7-bit: plain US-ASCII when it can be, else UTF-8 in
    quoted-printable (RFC 2045 §6.7), whose soft line breaks also keep long lines
    under the limit."""
    data = text.encode("utf-8")
    if text.isascii() and all(len(line) <= _MAX_LINE for line in text.split("\n")):
        head = b"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n"
        body = data.replace(b"\n", _CRLF)
    else:
        head = (b"Content-Type: text/plain; charset=utf-8\r\n"
                b"Content-Transfer-Encoding: quoted-printable\r\n")
        body = binascii.b2a_qp(data, istext=True).replace(b"\n", _CRLF)
    return head + b"Content-Description: Notification\r\n\r\n" + body


class _Scan:
    """Whether content fits a 7bit or 8bit body (RFC 2045 §2.7, §2.8: CRLF line ends
    only, no NUL, lines of at most 998 octets), and whether it has 8-bit octets; fed
    chunk by chunk."""

    __slots__ = ("_cr", "_line", "binary", "eight_bit")

    def __init__(self) -> None:
        self.eight_bit = False
        self.binary = False
        self._cr = False  # the previous chunk ended with a CR
        self._line = 0  # octets of the current line so far

    def feed(self, chunk: bytes) -> None:
        if not self.eight_bit and not chunk.isascii():
            self.eight_bit = True
        if self.binary or not chunk:
            return
        if b"\0" in chunk:
            self.binary = True
            return
        if self._cr:
            self._cr = False
            if not chunk.startswith(b"\n"):
                self.binary = True
                return
            chunk = chunk[1:]
            self._line = 0
        if chunk.endswith(b"\r"):
            self._cr = True
            chunk = chunk[:-1]
        lines = chunk.split(_CRLF)
        if self._line + len(lines[0]) > _MAX_LINE or any(
            b"\r" in line or b"\n" in line or len(line) > _MAX_LINE for line in lines
        ):
            self.binary = True
            return
        self._line = self._line + len(lines[0]) if len(lines) == 1 else len(lines[-1])

    def finish(self) -> None:
        if self._cr:  # a CR at the very end, with no LF after it
            self.binary = True


def _header_section(original: Message) -> bytes:
    """The original's header section; if its end was never found, the complete lines
    of what was looked at."""
    header = original.header
    if not original.header_complete:
        header = header[: header.rfind(_CRLF) + 2]
    return header


# ---------------------------------------------------------------------- the builder


def build_dsn(
    *,
    kind: DSNKind,
    reporting_mta: str,
    recipients: Sequence[DSNRecipient],
    original: Message,
    to: str,
    envid: str | None,
    arrival: float,
    ret: Literal["FULL", "HDRS"] | None,
    smtputf8: bool,
    now: float,
    return_limit: int = RETURN_LIMIT,
    message_id_domain: str | None = None,
    from_address: str | None = None,
    memory_limit: int = MEMORY_LIMIT,
) -> Bounce:
    """The delivery status notification (RFC 3464) for ``recipients`` of ``original``.

    ``kind`` names the gravest action reported (``"failure"`` if a recipient failed,
    else ``"delay"`` if one is delayed, else ``"success"``; checked). ``reporting_mta``
    is this MTA's DNS name; ``to`` the address the notice goes to: the original
    reverse-path, or a postmaster's. ``envid`` (decoded), ``ret`` and ``smtputf8``
    are the MAIL parameters of the original (RFC 3461 §4.3, §4.4; RFC 6531);
    ``arrival`` when it arrived and ``now`` the notice's date (Unix times).

    What comes back (RFC 3461 §4.3): a failure notice returns the whole message
    unless ``ret`` is ``"HDRS"`` or the message is larger than ``return_limit``
    octets; a delay or success notice returns the header section (RET=FULL asks for
    the whole message in a *failed* DSN only). Content that a 7bit or 8bit body
    cannot carry (NUL, bare CR or LF, a line over 998 octets) is never returned
    whole. The text part says which and why.

    ``From:`` is ``Mail Delivery System <MAILER-DAEMON@reporting_mta>`` unless
    ``from_address`` says otherwise (RFC 3464 §2 asks for an address a person reads,
    such as postmaster's); ``Message-ID:`` is made in ``message_id_domain``
    (``reporting_mta`` by default). The notice is spooled like a received message
    (in memory up to ``memory_limit`` octets). The caller sends it with
    ``MAIL FROM:<>`` (RFC 5321 §4.5.5) and the parameters :class:`Bounce` names.

    Raises :class:`ValueError` for a malformed argument, above all a value with CR or
    LF that would start a header field of its own.
    """
    if kind not in _SUBJECTS:
        raise ValueError(f"unknown notice kind {kind!r}")
    if ret not in (None, "FULL", "HDRS"):
        raise ValueError(f"RET must be 'FULL', 'HDRS' or None, not {ret!r}")
    if return_limit < 0:
        raise ValueError("return_limit must not be negative")
    _check_mta_name("reporting_mta", reporting_mta)
    if message_id_domain is not None:
        _check_mta_name("message_id_domain", message_id_domain)
    _check_value("to", to)
    parse_mailbox(to, utf8=True)  # AddressError is a ValueError
    sender = from_address if from_address is not None else f"MAILER-DAEMON@{reporting_mta}"
    _check_value("from_address", sender)
    parse_mailbox(sender, utf8=True)
    # RFC 3461 §4.4: ENVID is printable US-ASCII (graphic characters and the space).
    if envid is not None and not (
        0 < len(envid) <= _MAX_ENVID and re.fullmatch(r"[\x20-\x7e]+", envid)
    ):
        raise ValueError(f"malformed envelope identifier {envid!r}")
    _check_kind(kind, recipients)
    _date(arrival, "arrival")
    date = _date(now, "now")

    # RFC 6533: the global types for an SMTPUTF8 message, or when an address cannot be
    # written in ASCII (an ORCPT of the utf-8 type can: utf-8-addr-xtext, §3).
    utf8 = smtputf8 or not (to.isascii() and all(_ascii_addresses(r) for r in recipients))

    returned, why, scan = _what_to_return(kind, ret, original, return_limit)
    status = _status_part(reporting_mta=reporting_mta, envid=envid, arrival=arrival,
                          recipients=recipients, utf8=utf8)
    status_8bit = not status.isascii()
    eight_bit = status_8bit or (returned != "none" and scan.eight_bit)

    boundary = "=_" + secrets.token_hex(24)  # "=_" never occurs in quoted-printable
    delimiter = b"\r\n--" + boundary.encode("ascii")

    spool = MessageSpool(memory_limit=memory_limit)
    try:
        display = "Mail Delivery System"
        report_type = "global-delivery-status" if utf8 else "delivery-status"
        top = b"".join([
            _fold("From", f"{display} <{sender}>"),
            _fold("To", f"<{to}>"),
            _fold("Subject", _SUBJECTS[kind]),
            _fold("Date", date),
            _fold("Message-ID", email.utils.make_msgid(
                domain=message_id_domain or reporting_mta)),
            _fold("MIME-Version", "1.0"),
            # RFC 3834 §5: a response made automatically to another message.
            _fold("Auto-Submitted", "auto-replied"),
            # RFC 6522 §3: report-type is the subtype of the second part.
            _fold("Content-Type", f'multipart/report; report-type={report_type}; '
                                  f'boundary="{boundary}"'),
            _fold("Content-Transfer-Encoding", "8bit" if eight_bit else "7bit"),
            _CRLF,
            b"This is a MIME-encapsulated delivery status notification (RFC 3464).",
        ])
        spool.write(top)
        # 1. for a person
        spool.write(delimiter + _CRLF)
        spool.write(_text_part(_human_text(kind=kind, reporting_mta=reporting_mta,
                                           recipients=recipients, returned=returned,
                                           why_headers=why)))
        # 2. for a program (RFC 3464 §2.1; RFC 6533 for the global form)
        spool.write(delimiter + _CRLF)
        subtype = "global-delivery-status" if utf8 else "delivery-status"
        spool.write(f"Content-Type: message/{subtype}\r\n".encode("ascii"))
        spool.write(b"Content-Transfer-Encoding: 8bit\r\n" if status_8bit
                    else b"Content-Transfer-Encoding: 7bit\r\n")
        spool.write(b"Content-Description: Delivery report\r\n\r\n")
        spool.write(status)
        # 3. the original, as it is (RFC 2046 §5.2.1: no encoding but 7bit, 8bit or
        # binary for a message/* body; RFC 6522 §4 for the header section)
        if returned != "none":
            spool.write(delimiter + _CRLF)
            if returned == "full":
                ctype = "message/global" if utf8 else "message/rfc822"
                description = "Undelivered message" if kind == "failure" else "Message"
            else:
                ctype = "message/global-headers" if utf8 else "text/rfc822-headers"
                description = "Message header section"
            cte = "8bit" if scan.eight_bit else "7bit"
            spool.write(f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n"
                        f"Content-Description: {description}\r\n\r\n".encode("ascii"))
            if returned == "full":
                for chunk in original.chunks():
                    spool.write(chunk)
            else:
                spool.write(_header_section(original))
        spool.write(delimiter + b"--\r\n")
    except BaseException:
        spool.discard()
        raise
    return Bounce(message=spool.finish(), eight_bit=eight_bit,
                  smtputf8=not (to.isascii() and sender.isascii()), returned=returned)


def _ascii_addresses(r: DSNRecipient) -> bool:
    if not r.final_recipient.isascii():
        return False
    if r.original_recipient is None:
        return True
    addr_type, address = r.original_recipient
    return address.isascii() or addr_type.lower() == "utf-8"


def _what_to_return(
    kind: DSNKind, ret: str | None, original: Message, limit: int
) -> tuple[Returned, str, _Scan]:
    """What the third part holds, the reason given when it is not the whole message,
    and the scan of what it holds."""
    if kind == "failure" and ret != "HDRS" and original.size <= limit:
        scan = _scanned(original.chunks())
        if not scan.binary:
            return "full", "", scan
        why = "its content cannot be returned as it is"
    elif kind != "failure":
        why = ""
    elif ret == "HDRS":
        why = "only the header section was asked for"
    else:
        why = (f"the message is {original.size} octets, more than the {limit} "
               "returned in full")
    header = _header_section(original)
    scan = _scanned((header,))
    if scan.binary:
        return "none", "its header section cannot be returned as it is", scan
    return "headers", why, scan


def _scanned(chunks: Iterable[bytes]) -> _Scan:
    scan = _Scan()
    for chunk in chunks:
        scan.feed(chunk)
    scan.finish()
    return scan
