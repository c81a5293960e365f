"""Domain names as DNS asks for them: IDNA 2008 A-labels, and address literals."""

from __future__ import annotations

import contextlib
import ipaddress
import re

import dns.exception
import dns.name
import idna

from mailagents.dns._model import IPAddress

# RFC 5321 §4.1.2: sub-domain = Let-dig [Ldh-str], checked on the A-label form.
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")

# UTS #46 mapping (case folding, full-width forms), non-transitional (ß stays ß), as
# browsers and the large mail providers apply IDNA 2008; pure-ASCII labels are kept.
_CODEC = dns.name.IDNA_2008_Practical


class BadName(ValueError):
    """A name that cannot be a mail domain (the reason is the message)."""


def to_ascii(domain: str) -> str:
    """The ASCII form of a mail domain: IDNA 2008 A-labels, lower case, without the
    trailing dot. ``"Bücher.Example."`` gives ``"xn--bcher-kva.example"``.

    Raises :class:`BadName` when the name cannot be a domain: an empty label, a label
    or name over the DNS limits (63 and 255 octets), a code point IDNA 2008 does not
    allow, a malformed ``xn--`` label, or a character outside letters, digits and
    hyphens (RFC 5321 §4.1.2).
    """
    if not domain or domain == ".":
        raise BadName("the domain is empty")
    try:
        name = dns.name.from_text(domain, origin=dns.name.root, idna_codec=_CODEC)
    except dns.exception.DNSException as exc:
        raise BadName(f"{domain!r} is not a valid domain: {exc}") from None
    text = name.to_text(omit_final_dot=True).lower()
    for label in text.split("."):
        if not _LDH_LABEL.fullmatch(label):
            raise BadName(f"{domain!r} is not a valid domain: label {label!r}")
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except idna.IDNAError as exc:
                raise BadName(f"{domain!r} is not a valid domain: {exc}") from None
    return text


def to_unicode(domain: str) -> str:
    """The display form of a domain: its A-labels decoded to U-labels (for logs and
    messages meant for people). A label that does not decode is kept as it is."""
    labels = []
    for label in domain.rstrip(".").split("."):
        if label.lower().startswith("xn--"):
            with contextlib.suppress(idna.IDNAError):
                label = idna.decode(label)
        labels.append(label)
    return ".".join(labels)


def parse_literal(literal: str) -> IPAddress:
    """The address in an address literal (RFC 5321 §4.1.3): ``"[192.0.2.1]"`` or
    ``"[IPv6:2001:db8::1]"``. A general address literal (another tag) cannot be
    delivered to over IP: it raises :class:`BadName`, as malformed ones do."""
    if len(literal) < 3 or literal[0] != "[" or literal[-1] != "]":
        raise BadName(f"{literal!r} is not an address literal")
    inner = literal[1:-1]
    is_v6 = inner[:5].lower() == "ipv6:"
    if not is_v6 and ":" in inner:
        raise BadName(f"{literal!r}: only IPv4 and IPv6 address literals are routed")
    try:
        if not is_v6:
            return ipaddress.IPv4Address(inner)
        if "%" in inner:  # ipaddress takes a zone index; the grammar has none
            raise ValueError(inner)
        return ipaddress.IPv6Address(inner[5:])
    except ValueError:
        raise BadName(f"{literal!r} is not a valid address literal") from None
