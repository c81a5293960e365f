"""The header work of the MSA (RFC 6409): whether the envelope sender and every address
in ``From:`` and ``Sender:`` are the authenticated user's own, the ``Date:`` and
``Message-ID:`` fields it adds when they are missing (§8.2, §8.3), and the
``Received:`` trace field (RFC 5321 §4.4) it puts on top.

Plain functions over bytes, parsed messages and sets of addresses; the replies (550,
553) and the logging are the MSA's (:mod:`mailagents.agents.msa`)."""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import email.utils
import functools

from mailagents.aio import Session
from mailagents.smtp import Envelope, Mailbox

__all__ = [
    "comment_text",
    "field_addresses",
    "lower_address",
    "mailbox_key",
    "missing_fields",
    "not_owned_field",
    "owns",
    "parse_addresses",
    "parse_fields",
    "received_field",
]

_PROTECTED_FIELDS = ("From", "Sender")  # their addresses must all be the user's own
_PROTECTED_LOWER = frozenset(f.lower() for f in _PROTECTED_FIELDS)
_MAX_CACHED_FIELD = 998  # longer From:/Sender: values are parsed each time, not cached


# ------------------------------------------------------------------------ ownership


def lower_address(address: str) -> str:
    """An address as compared for ownership: the whole of it in lower case."""
    return address.strip().removeprefix("<").removesuffix(">").lower()


def mailbox_key(mailbox: Mailbox) -> str:
    """An envelope mailbox as compared for ownership (``local@domain``, lower case)."""
    return f"{mailbox.local_part}@{mailbox.domain}".lower()


def owns(owned: frozenset[str], address: str) -> bool:
    """``address`` (lower case) is in ``owned`` or its domain is, as ``@domain``."""
    _, at, domain = address.rpartition("@")
    return address in owned or (bool(at) and "@" + domain in owned)


@functools.lru_cache(maxsize=1024)
def parse_addresses(name: str, value: str) -> tuple[str, ...] | None:
    """The addresses (lower case) of a ``From:`` or ``Sender:`` field as the message
    holds it (``value`` folded as it arrived), or ``None`` if the field is defective,
    names none, or the email package fails on it. The same parse as
    ``EmailMessage.get_all(name)`` with the default policy (RFC 5322 §3.6.2), kept for
    the values seen last: a user's ``From:`` is the same from one message to the
    next, and the email package's parse of it is slow next to a dictionary look-up."""
    try:
        field = email.policy.default.header_fetch_parse(name, value)
    except Exception:  # the email package fails on some malformed fields (``"``)
        return None
    addresses = getattr(field, "addresses", ())
    if getattr(field, "defects", ()) or not addresses:
        return None
    return tuple(f"{a.username}@{a.domain}".lower() for a in addresses)


def field_addresses(name: str, value: str) -> tuple[str, ...] | None:
    """:func:`parse_addresses`, cached only for values of a bounded length."""
    if len(value) > _MAX_CACHED_FIELD:
        return parse_addresses.__wrapped__(name, value)
    return parse_addresses(name.lower(), value)


def not_owned_field(headers: email.message.Message, owned: frozenset[str]) -> str | None:
    """The name of the first ``From:`` or ``Sender:`` field of ``headers`` that names
    an address not in ``owned`` (or cannot be parsed), or ``None`` if all are owned."""
    for name, value in headers.raw_items():
        if name.lower() in _PROTECTED_LOWER:
            addresses = field_addresses(name, value)
            if addresses is None or not all(owns(owned, a) for a in addresses):
                return name
    return None


# ------------------------------------------------------------------ header section


def parse_fields(header: bytes) -> email.message.Message:
    """The fields of a header section (the octets before its empty line), parsed with
    the default policy (undecodable octets replaced)."""
    return email.parser.Parser(policy=email.policy.default).parsestr(
        header.decode("utf-8", "replace"), headersonly=True
    )


def missing_fields(headers: email.message.Message, hostname: str) -> bytes:
    """The ``Date:`` and ``Message-ID:`` fields to add at the end of the header section
    where ``headers`` has none (RFC 6409 §8.2, §8.3)."""
    added = b""
    if "Date" not in headers:
        added += f"Date: {email.utils.formatdate(localtime=True)}\r\n".encode()
    if "Message-ID" not in headers:
        added += f"Message-ID: {email.utils.make_msgid(domain=hostname)}\r\n".encode()
    return added


# ---------------------------------------------------------------------- Received:


def comment_text(text: str) -> str:
    """``text`` made safe inside a header comment: printable, no parentheses."""
    return "".join(c if c.isprintable() and c not in "()\\" else "?" for c in text)


def received_field(
    session: Session,
    envelope: Envelope,
    submission_id: str,
    *,
    hostname: str,
    show_auth_user: bool,
    lmtp: bool = False,
) -> bytes:
    """The ``Received:`` trace field (RFC 5321 §4.4) for one message that ``hostname``
    accepted in ``session``, with the protocol of RFC 3848 (``ESMTPA``, ``ESMTPS``,
    ``ESMTPSA``; ``LMTP`` and its forms with ``lmtp``); ``show_auth_user`` names the
    authenticated user in a comment. A client on a Unix socket has no address: the
    field says so (with its uid when known)."""
    base = "LMTP" if lmtp else "ESMTP"
    if envelope.mail_parameters.smtputf8:
        # RFC 6531 §3.7.3: UTF8SMTP (UTF8LMTP), with S and A as for ESMTP.
        base = "UTF8LMTP" if lmtp else "UTF8SMTP"
    protocol = base + ("S" if session.tls else "") + ("A" if session.identity else "")
    helo = comment_text(session.helo or "unknown")
    peer = session.peer
    if peer[:1] == ("unix",):  # a local client on a Unix socket: no address
        uid = f" uid {peer[2]}" if len(peer) > 2 else ""
        source = f"from {helo} (via a Unix socket{uid})"
    else:
        address = str(peer[0]) if peer else "unknown"
        literal = f"IPv6:{address}" if ":" in address else address
        source = f"from {helo} ([{literal}])"
    version = getattr(session, "tls_version", None)
    if session.tls and version:
        # The TLS used, in a comment as Postfix writes it (RFC 8314 §4.3 asks that the
        # trace say TLS was used; the protocol name ESMTPS says so too).
        bits = getattr(session, "tls_bits", None)
        strength = f" ({bits} bits)" if bits else ""
        source += f"\r\n\t(using {version} with cipher {session.tls_cipher}{strength})"
    if show_auth_user and session.identity:
        source += f"\r\n\t(authenticated as {comment_text(session.identity)})"
    clause = ""
    if len(envelope.recipients) == 1:
        mailbox = envelope.recipients[0].path.mailbox
        if mailbox is not None:
            clause = f"\r\n\tfor <{mailbox}>"
    date = email.utils.formatdate(localtime=True)
    return (
        f"Received: {source}\r\n\tby {hostname} (mailagents) with {protocol}"
        f" id {submission_id}{clause};\r\n\t{date}\r\n"
    ).encode()
