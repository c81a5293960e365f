"""The typed results of :mod:`mailagents.dns`: routes, failures and records."""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FailureKind(enum.Enum):
    """Why a lookup gave no usable answer, each with its enhanced status code."""

    #: The domain does not exist (NXDOMAIN, RFC 5321 §5.1): permanent, 5.1.2.
    NO_SUCH_DOMAIN = ("5.1.2", False)
    #: The name cannot be a domain (bad syntax, IDNA 2008 refuses it, a malformed
    #: address literal): permanent, 5.1.3.
    BAD_NAME = ("5.1.3", False)
    #: The domain publishes the null MX ``0 .`` (RFC 7505 §3): it accepts no mail,
    #: permanent, 5.1.10.
    NULL_MX = ("5.1.10", False)
    #: The domain exists but neither its MX hosts nor (without MX) the domain itself
    #: have an address (RFC 5321 §5.1: "none of them are usable"): permanent, 5.4.4.
    NO_ADDRESS = ("5.4.4", False)
    #: We are the best MX for the domain (RFC 5321 §5.1): delivering would loop back
    #: to ourselves. It is a configuration error, not the message's fault, so it is
    #: temporary (4.4.6): a queue defers and tells the postmaster (5.4.6 when it
    #: finally gives up).
    LOOP = ("4.4.6", True)
    #: The answer could not be had now: SERVFAIL, REFUSED, a time-out or a network
    #: error (RFC 5321 §5.1: "the message MUST be queued and retried later"): 4.4.3.
    TEMPORARY = ("4.4.3", True)

    def __init__(self, enhanced: str, temporary: bool) -> None:
        self.enhanced = enhanced
        self.temporary = temporary


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsFailure:
    """A lookup that gave no usable answer.

    ``name`` is the name the failure is about (the domain, or an MX host), in ASCII;
    ``reason`` a sentence for logs and bounce messages.
    """

    kind: FailureKind
    name: str
    reason: str

    @property
    def temporary(self) -> bool:
        """Whether a later try may succeed (the queue retries) rather than bounce."""
        return self.kind.temporary

    @property
    def enhanced(self) -> str:
        """The RFC 3463 enhanced status code, such as ``"5.1.10"`` or ``"4.4.3"``."""
        return self.kind.enhanced

    def __str__(self) -> str:
        return f"{self.enhanced} {self.reason}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Exchanger:
    """One host to deliver to: its name, its MX preference and its addresses, in the
    order to try them (the families in the configured order)."""

    host: str
    preference: int
    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SkippedExchanger:
    """An MX host left out of a :class:`Route`, and why (for logs)."""

    host: str
    preference: int
    reason: str
    #: The host was left out because its lookup failed temporarily.
    temporary: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """Where mail for ``domain`` goes: ``exchangers`` in the order to try them.

    ``domain`` is the ASCII (A-label) form of the domain routed, or the address
    literal as given. ``implicit`` says the domain has no MX records and its own
    addresses are used (the implicit MX of RFC 5321 §5.1, preference 0); ``literal``
    that the domain was an address literal, delivered to directly. ``skipped`` lists
    the MX hosts left out (no address, a failed lookup, ourselves and every MX behind
    us). ``ttl`` is how long, in seconds, the answers it was built from stay valid
    (the smallest of their TTLs; 0 for a literal).
    """

    domain: str
    exchangers: tuple[Exchanger, ...]
    implicit: bool = False
    literal: bool = False
    skipped: tuple[SkippedExchanger, ...] = ()
    ttl: int = 0

    def targets(self) -> Iterator[tuple[Exchanger, IPAddress]]:
        """Every (exchanger, address) pair, in the order to try them."""
        for exchanger in self.exchangers:
            for address in exchanger.addresses:
                yield exchanger, address


RouteResult = Route | DnsFailure


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsaRecord:
    """One TLSA record (RFC 6698 §2.1): certificate usage, selector, matching type and
    the certificate association data."""

    usage: int
    selector: int
    mtype: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsaAnswer:
    """The TLSA records of ``name`` (``_25._tcp.mx.example.``), empty when it has none.

    ``authenticated`` is the resolver's AD bit: whether a validating resolver vouched
    for the answer with DNSSEC. DANE (RFC 7672) uses the records only when it is true;
    mailagents does not validate DNSSEC itself.
    """

    name: str
    records: tuple[TlsaRecord, ...]
    authenticated: bool
    ttl: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class MtaStsRecord:
    """A domain's ``_mta-sts`` TXT record (RFC 8461 §3.1): the policy's ``id`` and
    the other fields as they were written."""

    domain: str
    id: str
    extensions: tuple[tuple[str, str], ...] = ()
    ttl: int = 0
