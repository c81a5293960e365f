"""The relay decision of an MTA's inbound side (port 25): for each ``RCPT TO``, is the
recipient local (it goes to the MDA), relayed (it goes to the outbound queue), or
refused. Never an open relay.

:class:`RelayPolicy` holds the configuration; :meth:`RelayPolicy.classify` takes the
forward-path the SMTP server core parsed (a :class:`~mailagents.smtp.Path`), the
client's socket address and its authenticated identity, and returns one of
:class:`Local`, :class:`Relay` or :class:`Refused`. It is pure (no I/O, no clock, no
DNS): an agent calls it from its ``on_rcpt`` hook.

The rules (docs/relay.rst tells them at length):

* A client *may relay* when its IP address is in ``relay_networks``, or when it
  authenticated (a non-empty identity) and ``relay_authenticated`` is set. The sender
  (``MAIL FROM``), the ``HELO`` name and TLS play no part.
* The decision is made on the final domain alone. The SMTP core already dropped any
  source route (``<@a,@b:user@c>`` is ``user@c``, RFC 5321 §3.6.1 and Appendix C), and
  the local part is opaque: no percent hack, no bang path, no second ``@``.
* Domains compare in IDNA 2008 A-label form, without regard to case (U-labels, any
  case, full-width forms are mapped as :func:`mailagents.dns.to_ascii` maps them). A
  domain that is not a plain DNS name (a trailing dot, an all-numeric last label or
  an inet_aton-style number such as ``10.0.0.1`` without brackets, a name IDNA
  refuses) is nobody's: refused. So is a name of one label (``localhost``) unless it
  is listed: RFC 5321 §2.3.5 allows only fully qualified names.
* An address literal is local only when it names one of ``local_addresses``; any other
  literal (and every general literal ``[tag:...]``) is refused, for every client.
* ``<postmaster>`` without a domain is local (RFC 5321 §4.5.1), for every client.
* An empty local part (``""@domain``) is refused, for every client.
* A client that may not relay is refused (550 5.7.1) for every domain outside
  ``local_domains`` and ``relay_domains``, and also, at those domains, for a local part
  holding ``%``, ``!`` or ``@`` (after NFKC, so full-width look-alikes count): some
  MDA or next hop would rewrite it into a relay to a third party (Postfix refuses the
  same with ``allow_untrusted_routing = no``). A client that may relay gets such a
  local part as it is, an address at its domain like any other.
* ``local_domains`` win over ``relay_domains`` when both match.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from mailagents.dns import BadName, IPAddress, parse_literal, to_ascii
from mailagents.smtp import Mailbox, Path, Reply

__all__ = [
    "BAD_DOMAIN",
    "BAD_MAILBOX",
    "LITERAL_DENIED",
    "RELAY_DENIED",
    "ROUTING_DENIED",
    "Local",
    "Refused",
    "RefusedReason",
    "Relay",
    "RelayDecision",
    "RelayPolicy",
]

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

# RFC 5321 §4.3.2 lists 550 (not 554) among RCPT's failure replies, and §4.2.3 gives it
# for "command rejected for policy reasons"; X.7.1 is "delivery not authorized"
# (RFC 3463). The MSA refuses relaying with the same code.
RELAY_DENIED = Reply(code=550, enhanced="5.7.1", lines=("Relay access denied",))
"""A client that may not relay, for a domain that is neither local nor a relay domain."""
ROUTING_DENIED = Reply(
    code=550, enhanced="5.7.1", lines=("Relay access denied: % ! or @ in the local part",)
)
"""A client that may not relay, for a local part that routes elsewhere."""
LITERAL_DENIED = Reply(
    code=550, enhanced="5.7.1", lines=("Relay access denied: not one of our addresses",)
)
"""A client that may relay, for an address literal that is not one of ours."""
BAD_DOMAIN = Reply(code=550, enhanced="5.1.2", lines=("Bad destination domain",))
"""A client that may relay, for a domain that is not a plain DNS name (or is not
qualified: one label that is not listed)."""
BAD_MAILBOX = Reply(code=553, enhanced="5.1.3", lines=("Bad destination mailbox address",))
"""Anyone, for an empty local part (or a null path)."""

RefusedReason: TypeAlias = Literal["relay-denied", "routing", "literal", "domain", "mailbox"]
"""Why a recipient was refused: ``"relay-denied"`` (the client may not relay there),
``"routing"`` (``%``, ``!`` or ``@`` in the local part from a client that may not
relay), ``"literal"`` (an address literal not ours, from a client that may relay),
``"domain"`` (not a plain DNS name, from a client that may relay), ``"mailbox"`` (an
empty local part or a null path)."""

# The characters that make a local part a route to somewhere else: the percent hack
# (user%host@relay), the UUCP bang path (host!user@relay), a second "@".
_ROUTING = frozenset("%!@")
# What inet_aton(3) reads as a number: decimal, octal (leading 0) or hexadecimal parts.
_NUMERIC_LABEL = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


@dataclass(frozen=True, slots=True, kw_only=True)
class Local:
    """The recipient is ours: hand it to the MDA."""

    mailbox: Mailbox
    """The recipient as the client wrote it."""
    domain: str
    """The domain in its normalised form: A-labels in lower case, an address literal
    as ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``, or ``""`` for ``<postmaster>``."""

    @property
    def address(self) -> Mailbox:
        """The recipient with its domain in the normalised form (what to deliver to)."""
        return Mailbox(self.mailbox.local_part, self.domain)


@dataclass(frozen=True, slots=True, kw_only=True)
class Relay:
    """The recipient is elsewhere and the client may send there: queue it outbound."""

    mailbox: Mailbox
    """The recipient as the client wrote it."""
    domain: str
    """The domain in A-labels, lower case (what the MX lookup asks for)."""

    @property
    def address(self) -> Mailbox:
        """The recipient with its domain in A-labels (what to relay to)."""
        return Mailbox(self.mailbox.local_part, self.domain)


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """The recipient is refused: answer ``RCPT`` with :attr:`reply`."""

    reply: Reply
    """The reply to send (550 5.7.1 for relaying denied)."""
    reason: RefusedReason
    """Why, for logs and tests (see ``RefusedReason``)."""


RelayDecision: TypeAlias = Local | Relay | Refused
"""What :meth:`RelayPolicy.classify` decides for one recipient."""


def _is_numeric(name: str) -> bool:
    """Whether an A-label name is not a host name but a number: its last label all
    digits (no top-level domain is, RFC 3696 §2), or every label a number as
    inet_aton(3) reads one (``0x7f.1``)."""
    labels = name.split(".")
    return labels[-1].isdigit() or all(_NUMERIC_LABEL.fullmatch(label) for label in labels)


def _normalise_name(domain: str) -> str | None:
    """A recipient's domain name in A-labels, lower case; ``None`` when it is not a
    plain DNS name (trailing dot, numeric, refused by IDNA, or a mapping that would
    change the number of labels, such as U+3002 read as a dot)."""
    if not domain or domain.endswith("."):
        return None
    try:
        name = to_ascii(domain)
    except BadName:
        return None
    if name.count(".") != domain.count(".") or _is_numeric(name):
        return None
    return name


def _unmapped(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (``::ffff:192.0.2.1``) as the IPv4 address it is,
    and an IPv6 address without its zone (``fe80::1%eth0``)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:  # a zone ("fe80::1%eth0") names no network
            return ipaddress.IPv6Address(int(address))
    return address


def _literal_text(address: IPAddress) -> str:
    """The canonical address literal of an address (RFC 5321 §4.1.3)."""
    if isinstance(address, ipaddress.IPv4Address):
        return f"[{address}]"
    return f"[IPv6:{address.compressed}]"


def _no_string(value: object, what: str) -> None:
    if isinstance(value, str | bytes):
        raise TypeError(f"{what} is a collection, not one string")


def _config_domains(entries: Collection[str], what: str) -> frozenset[str]:
    """Configured domains in A-labels, lower case; a leading "." (subdomains only) is
    kept. A trailing dot in the configuration is accepted and dropped."""
    _no_string(entries, what)
    result = set()
    for entry in entries:
        if not isinstance(entry, str):
            raise TypeError(f"{what}: {entry!r} is not a string")
        subdomains = entry.startswith(".")
        text = entry[1:] if subdomains else entry
        try:
            name = to_ascii(text)
        except BadName as exc:
            raise ValueError(f"{what}: {exc}") from None
        if _is_numeric(name):
            raise ValueError(
                f"{what}: {entry!r} is a number, not a domain (put our own addresses "
                "in local_addresses)"
            )
        result.add("." + name if subdomains else name)
    return frozenset(result)


def _config_network(entry: object, what: str) -> Network:
    if isinstance(entry, ipaddress.IPv4Network | ipaddress.IPv6Network):
        network: Network = entry
    elif isinstance(entry, str):
        try:
            network = ipaddress.ip_network(entry.strip())
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
    else:
        raise TypeError(f"{what}: {entry!r} is neither a network nor a string")
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        # ::ffff:127.0.0.0/104 (Postfix writes it so) is 127.0.0.0/8: clients are
        # compared as IPv4 once unmapped.
        network = ipaddress.IPv4Network(
            (int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96)
        )
    if network.prefixlen == 0:
        raise ValueError(f"{what}: {entry!r} is every address: an open relay")
    return network


def _config_address(entry: object, what: str) -> IPAddress:
    if isinstance(entry, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return _unmapped(entry)
    if not isinstance(entry, str):
        raise TypeError(f"{what}: {entry!r} is neither an address nor a string")
    try:
        if entry.startswith("["):
            return _unmapped(parse_literal(entry))
        return _unmapped(ipaddress.ip_address(entry))
    except (BadName, ValueError) as exc:
        raise ValueError(f"{what}: {exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayPolicy:
    """Who may send where through an MTA's port 25 (see the module for the rules).

    ``local_domains``: the domains delivered here (to the MDA). ``relay_domains``: the
    domains anyone may send to through us (we are their backup MX or their gateway).
    A domain is compared in A-label form without regard to case, and may be given as
    U-labels; an entry starting with ``.`` (``.example.org``) matches the subdomains
    only, not the domain itself. ``relay_networks``: the clients that may relay to
    any domain, as networks (``"127.0.0.0/8"``, ``"::1/128"``, an
    :class:`ipaddress.IPv4Network`); IPv4-mapped IPv6 clients and networks count as
    IPv4; a network of every address (``0.0.0.0/0``) is refused. With
    ``relay_authenticated`` (the default) an authenticated client may relay to any
    domain too. ``local_addresses``: our own IP addresses (``"192.0.2.1"``,
    ``"[IPv6:2001:db8::1]"``), so that ``user@[192.0.2.1]`` is local.

    Construction checks and normalises every entry (the fields then hold frozensets of
    the normalised forms) and raises :class:`ValueError` or :class:`TypeError`.
    """

    local_domains: Collection[str]
    relay_domains: Collection[str] = ()
    relay_networks: Collection[str | Network] = ()
    relay_authenticated: bool = True
    local_addresses: Collection[str | IPAddress] = ()
    _local: tuple[frozenset[str], frozenset[str]] = field(init=False, repr=False, compare=False)
    _relay: tuple[frozenset[str], frozenset[str]] = field(init=False, repr=False, compare=False)
    _networks: tuple[Network, ...] = field(init=False, repr=False, compare=False)
    _addresses: frozenset[IPAddress] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        local = _config_domains(self.local_domains, "local_domains")
        relay = _config_domains(self.relay_domains, "relay_domains")
        _no_string(self.relay_networks, "relay_networks")
        networks = frozenset(_config_network(n, "relay_networks") for n in self.relay_networks)
        _no_string(self.local_addresses, "local_addresses")
        addresses = frozenset(_config_address(a, "local_addresses") for a in self.local_addresses)
        setattr_ = object.__setattr__
        setattr_(self, "local_domains", local)
        setattr_(self, "relay_domains", relay)
        setattr_(self, "relay_networks", networks)
        setattr_(self, "local_addresses", addresses)
        setattr_(self, "_local", _split(local))
        setattr_(self, "_relay", _split(relay))
        setattr_(self, "_networks", tuple(networks))
        setattr_(self, "_addresses", addresses)

    # ------------------------------------------------------------------ the client

    def may_relay(self, *, peer: tuple[Any, ...] | None, identity: str | None) -> bool:
        """Whether a client may relay to any domain: its address is in
        ``relay_networks``, or it authenticated (``identity`` not empty) and
        ``relay_authenticated`` is set. ``peer`` is the socket address as
        :attr:`mailagents.aio.Session.peer` gives it: ``(host, port, ...)``; a Unix
        socket's ``("unix", ...)``, ``()`` or ``None`` is in no network."""
        if identity and self.relay_authenticated:
            return True
        address = _peer_address(peer)
        if address is None:
            return False
        return any(address in network for network in self._networks)

    # ------------------------------------------------------------------ the recipient

    def classify(
        self, path: Path, *, peer: tuple[Any, ...] | None, identity: str | None
    ) -> RelayDecision:
        """Decide for the forward-path of one ``RCPT TO`` (see the module's rules):
        :class:`Local`, :class:`Relay` or :class:`Refused`."""
        mailbox = path.mailbox
        if mailbox is None:  # a null path: never a forward-path from the core
            return Refused(reply=BAD_MAILBOX, reason="mailbox")
        if mailbox.domain == "":  # <postmaster>: the Mailbox allows no other local part
            if mailbox.local_part.lower() != "postmaster":  # pragma: no cover - defensive
                return Refused(reply=BAD_MAILBOX, reason="mailbox")
            return Local(mailbox=mailbox, domain="")
        privileged = self.may_relay(peer=peer, identity=identity)
        if mailbox.is_address_literal:
            return self._classify_literal(mailbox, privileged)
        domain = _normalise_name(mailbox.domain)
        if domain is None:
            if privileged:
                return Refused(reply=BAD_DOMAIN, reason="domain")
            return Refused(reply=RELAY_DENIED, reason="relay-denied")
        local = _matches(domain, self._local)
        if not local and not _matches(domain, self._relay):
            if not privileged:
                return Refused(reply=RELAY_DENIED, reason="relay-denied")
            if "." not in domain:  # RFC 5321 §2.3.5: no unqualified names
                return Refused(reply=BAD_DOMAIN, reason="domain")
        refused = _check_local_part(mailbox.local_part, privileged)
        if refused is not None:
            return refused
        if local:
            return Local(mailbox=mailbox, domain=domain)
        return Relay(mailbox=mailbox, domain=domain)

    def _classify_literal(self, mailbox: Mailbox, privileged: bool) -> RelayDecision:
        try:
            address = _unmapped(parse_literal(mailbox.domain))
        except BadName:  # a general address literal, or a malformed one
            address = None
        if address is None or address not in self._addresses:
            if privileged:
                return Refused(reply=LITERAL_DENIED, reason="literal")
            return Refused(reply=RELAY_DENIED, reason="relay-denied")
        refused = _check_local_part(mailbox.local_part, privileged)
        if refused is not None:
            return refused
        return Local(mailbox=mailbox, domain=_literal_text(address))


def _split(domains: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(exact names, parents whose subdomains match, each with its leading dot)."""
    return (
        frozenset(d for d in domains if not d.startswith(".")),
        frozenset(d for d in domains if d.startswith(".")),
    )


def _matches(domain: str, table: tuple[frozenset[str], frozenset[str]]) -> bool:
    exact, parents = table
    if domain in exact:
        return True
    if parents:
        dot = domain.find(".")
        while dot >= 0:
            if domain[dot:] in parents:
                return True
            dot = domain.find(".", dot + 1)
    return False


def _check_local_part(local_part: str, privileged: bool) -> Refused | None:
    if local_part == "":
        return Refused(reply=BAD_MAILBOX, reason="mailbox")
    if privileged:
        return None
    if _ROUTING.intersection(local_part) or (
        not local_part.isascii()
        and _ROUTING.intersection(unicodedata.normalize("NFKC", local_part))
    ):
        return Refused(reply=ROUTING_DENIED, reason="routing")
    return None


def _peer_address(peer: tuple[Any, ...] | None) -> IPAddress | None:
    """The client's IP address from a socket address, or ``None`` (a Unix socket, an
    unknown or malformed peer)."""
    if not peer or len(peer) < 2 or not isinstance(peer[0], str) or peer[0] == "unix":
        return None
    try:
        return _unmapped(ipaddress.ip_address(peer[0]))
    except ValueError:
        return None
