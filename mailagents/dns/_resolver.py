"""Where mail for a domain goes: the MX rules of RFC 5321 §5.1 and RFC 7505."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import dns.name

from mailagents.dns._lookup import DnspythonLookup, Lookup, RecordSet
from mailagents.dns._model import (
    DnsFailure,
    Exchanger,
    FailureKind,
    IPAddress,
    MtaStsRecord,
    Route,
    SkippedExchanger,
    TlsaAnswer,
    TlsaRecord,
)
from mailagents.dns._names import BadName, parse_literal, to_ascii

log = logging.getLogger("mailagents.dns")

Family = Literal[4, 6]
_RDTYPE: dict[int, str] = {4: "A", 6: "AAAA"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolverConfig:
    """How :class:`MXResolver` asks and what it knows about itself.

    ``nameservers`` and ``port``: whom to ask (``None``: ``/etc/resolv.conf``).
    ``timeout`` bounds one query to one server, ``lifetime`` a whole lookup, in
    seconds; ``cache_size`` bounds the answers kept by TTL (0: none).
    ``families``: the address families tried for each host, in order (``(6, 4)``:
    IPv6 first, then IPv4; ``(4,)``: IPv4 only). ``max_exchangers``: how many MX hosts,
    best first, are resolved and returned (RFC 5321 §5.1 allows a limit; a client
    SHOULD try at least two).
    ``local_names`` and ``local_addresses``: our own host names and addresses, to
    find ourselves among a domain's MX hosts (RFC 5321 §5.1).
    """

    nameservers: tuple[str, ...] | None = None
    port: int = 53
    timeout: float = 2.0
    lifetime: float = 8.0
    cache_size: int = 10_000
    families: tuple[Family, ...] = (6, 4)
    max_exchangers: int = 10
    local_names: frozenset[str] = field(default_factory=frozenset)
    local_addresses: frozenset[IPAddress] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.families or any(f not in _RDTYPE for f in self.families):
            raise ValueError("families must be a non-empty sequence of 4 and 6")
        if len(set(self.families)) != len(self.families):
            raise ValueError("families lists a family twice")
        if self.max_exchangers < 1:
            raise ValueError("max_exchangers must be at least 1")
        if self.nameservers is not None:
            object.__setattr__(self, "nameservers", tuple(self.nameservers))
        object.__setattr__(self, "local_names", frozenset(to_ascii(n) for n in self.local_names))
        object.__setattr__(
            self,
            "local_addresses",
            frozenset(ipaddress.ip_address(a) for a in self.local_addresses),
        )


@dataclass(slots=True)
class _Candidate:
    host: str
    preference: int
    addresses: tuple[IPAddress, ...] = ()
    failure: DnsFailure | None = None
    ttl: int = 0


class MXResolver:
    """Finds where mail for a domain goes, by the rules of RFC 5321 §5.1.

    :meth:`route` answers a :class:`~mailagents.dns.Route` (exchangers in the order to
    try, each with its addresses) or a :class:`~mailagents.dns.DnsFailure` saying
    whether to bounce (permanent) or retry (temporary), with its enhanced code. It
    never raises for a DNS outcome. ``lookup`` replaces the DNS client (a
    :class:`~mailagents.dns.StaticLookup` in tests); ``rng`` the shuffle of MX hosts of
    equal preference.
    """

    def __init__(
        self,
        config: ResolverConfig | None = None,
        *,
        lookup: Lookup | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or ResolverConfig()
        if lookup is None:
            lookup = DnspythonLookup(
                nameservers=self.config.nameservers,
                port=self.config.port,
                timeout=self.config.timeout,
                lifetime=self.config.lifetime,
                cache_size=self.config.cache_size,
            )
        self.lookup = lookup
        self._rng = rng or random.Random()

    # -- routes --------------------------------------------------------------------

    async def route(self, domain: str) -> Route | DnsFailure:
        """The route for mail to ``domain`` (a domain name, or an address literal such
        as ``[192.0.2.1]``, which is delivered to directly)."""
        if domain.startswith("["):
            return self._literal(domain)
        try:
            name = to_ascii(domain)
        except BadName as exc:
            return DnsFailure(kind=FailureKind.BAD_NAME, name=domain, reason=str(exc))
        answer = await self.lookup.query(name, "MX")
        if isinstance(answer, DnsFailure):
            return answer
        if answer.nxdomain:
            return DnsFailure(
                kind=FailureKind.NO_SUCH_DOMAIN, name=name,
                reason=f"the domain {name} does not exist (NXDOMAIN)",
            )  # fmt: skip
        if not answer.records:
            return await self._implicit(name, answer)
        return await self._from_mx(name, answer)

    def _literal(self, literal: str) -> Route | DnsFailure:
        try:
            address = parse_literal(literal)
        except BadName as exc:
            return DnsFailure(kind=FailureKind.BAD_NAME, name=literal, reason=str(exc))
        if address in self.config.local_addresses:
            return DnsFailure(
                kind=FailureKind.LOOP, name=literal,
                reason=f"the address literal {literal} is one of our own addresses",
            )  # fmt: skip
        exchanger = Exchanger(host=literal, preference=0, addresses=(address,))
        return Route(domain=literal, exchangers=(exchanger,), literal=True)

    async def _implicit(self, name: str, answer: RecordSet) -> Route | DnsFailure:
        # RFC 5321 §5.1: no MX records: an implicit MX of preference 0 pointing to the
        # domain itself (after CNAMEs: the canonical name, as for the MX query).
        if name in self.config.local_names or answer.canonical in self.config.local_names:
            return self._loop(name, 0, implicit=True)
        candidate = await self._resolve(_Candidate(host=answer.canonical, preference=0))
        if candidate.failure is not None:
            failure = candidate.failure
            if failure.kind is FailureKind.TEMPORARY:
                return failure
            return DnsFailure(
                kind=FailureKind.NO_ADDRESS, name=name,
                reason=f"the domain {name} has no MX record and no address ({failure.reason})",
            )  # fmt: skip
        if self._is_us(candidate):
            return self._loop(name, 0, implicit=True)
        exchanger = Exchanger(host=name, preference=0, addresses=candidate.addresses)
        return Route(
            domain=name, exchangers=(exchanger,), implicit=True,
            ttl=min(answer.ttl, candidate.ttl),
        )  # fmt: skip

    async def _from_mx(self, name: str, answer: RecordSet) -> Route | DnsFailure:
        skipped: list[SkippedExchanger] = []
        best: dict[str, int] = {}
        null = 0
        for record in answer.records:
            preference = int(record.preference)  # type: ignore[attr-defined]
            target = record.exchange  # type: ignore[attr-defined]
            if target == dns.name.root:  # "."
                null += 1
                continue
            host = target.to_text(omit_final_dot=True).lower()
            best[host] = min(preference, best.get(host, preference))
        if not best:
            # RFC 7505 §3: "0 ." alone says the domain accepts no mail.
            return DnsFailure(
                kind=FailureKind.NULL_MX, name=name,
                reason=f"the domain {name} accepts no mail (null MX, RFC 7505)",
            )  # fmt: skip
        if null:
            # RFC 7505 §3: a null MX MUST NOT be mixed with other MX records; the
            # others are usable, so the "." entry is only left out.
            skipped.append(
                SkippedExchanger(host=".", preference=0, reason="a null MX among others")
            )
        candidates = self._ordered(best)
        # RFC 5321 §5.1: if we are an MX, every MX of equal or higher preference number
        # is dropped; if none is better than us, delivering would loop. Our names are
        # known before any lookup, so they are checked on the whole list; our
        # addresses only on the hosts resolved (the first max_exchangers).
        ours = [c.preference for c in candidates if c.host in self.config.local_names]
        if ours:
            candidates = _drop_from(min(ours), candidates, skipped)
            if not candidates:
                return self._loop(name, min(ours), implicit=False)
        kept = candidates[: self.config.max_exchangers]
        for candidate in candidates[self.config.max_exchangers :]:
            skipped.append(_skip(candidate, f"beyond the first {self.config.max_exchangers}"))
        kept = list(await asyncio.gather(*(self._resolve(c) for c in kept)))
        ours = [c.preference for c in kept if self._is_us(c)]
        if ours:
            kept = _drop_from(min(ours), kept, skipped)
            if not kept:
                return self._loop(name, min(ours), implicit=False)
        exchangers = []
        for candidate in kept:
            if candidate.failure is None:
                exchangers.append(
                    Exchanger(
                        host=candidate.host,
                        preference=candidate.preference,
                        addresses=candidate.addresses,
                    )
                )
            else:
                skipped.append(
                    _skip(candidate, candidate.failure.reason, candidate.failure.temporary)
                )
        if not exchangers:
            return _unusable(name, skipped)
        ttl = min([answer.ttl, *(c.ttl for c in kept if c.failure is None)])
        return Route(domain=name, exchangers=tuple(exchangers), skipped=tuple(skipped), ttl=ttl)

    def _ordered(self, best: dict[str, int]) -> list[_Candidate]:
        # RFC 5321 §5.1: by preference, lowest first; hosts of equal preference in a
        # random order, to spread the load.
        hosts = list(best)
        self._rng.shuffle(hosts)
        hosts.sort(key=best.__getitem__)
        return [_Candidate(host=h, preference=best[h]) for h in hosts]

    def _is_us(self, candidate: _Candidate) -> bool:
        return any(a in self.config.local_addresses for a in candidate.addresses)

    def _loop(self, name: str, preference: int, *, implicit: bool) -> DnsFailure:
        what = (
            "the implicit MX (the domain's own address)"
            if implicit
            else (f"the best MX (preference {preference})")
        )
        return DnsFailure(
            kind=FailureKind.LOOP, name=name,
            reason=f"mail for {name} loops back to myself: we are {what}",
        )  # fmt: skip

    # -- addresses -----------------------------------------------------------------

    async def resolve_host(self, host: str) -> Exchanger | DnsFailure:
        """The addresses of one host (a smarthost, a relay named without MX lookup),
        in the configured family order, as an :class:`~mailagents.dns.Exchanger` of
        preference 0."""
        try:
            name = to_ascii(host)
        except BadName as exc:
            return DnsFailure(kind=FailureKind.BAD_NAME, name=host, reason=str(exc))
        candidate = await self._resolve(_Candidate(host=name, preference=0))
        if candidate.failure is not None:
            return candidate.failure
        return Exchanger(host=name, preference=0, addresses=candidate.addresses)

    async def _resolve(self, candidate: _Candidate) -> _Candidate:
        host = candidate.host
        answers = await asyncio.gather(
            *(self.lookup.query(host, _RDTYPE[f]) for f in self.config.families)
        )
        addresses: list[IPAddress] = []
        ttls: list[int] = []
        temporary: DnsFailure | None = None
        nxdomain = False
        for answer in answers:
            if isinstance(answer, DnsFailure):
                temporary = temporary or answer
                continue
            nxdomain = nxdomain or answer.nxdomain
            for record in answer.records:
                addresses.append(ipaddress.ip_address(record.address))  # type: ignore[attr-defined]
            if answer.records:
                ttls.append(answer.ttl)
        if addresses:
            # One family answering is enough; a failed family only loses its addresses.
            candidate.addresses = tuple(dict.fromkeys(addresses))
            candidate.ttl = min(ttls)
        elif temporary is not None:
            candidate.failure = temporary
        elif nxdomain:
            candidate.failure = DnsFailure(
                kind=FailureKind.NO_SUCH_DOMAIN, name=host,
                reason=f"the host {host} does not exist (NXDOMAIN)",
            )  # fmt: skip
        else:
            families = " or ".join(_RDTYPE[f] for f in self.config.families)
            candidate.failure = DnsFailure(
                kind=FailureKind.NO_ADDRESS, name=host,
                reason=f"the host {host} has no {families} record",
            )  # fmt: skip
        return candidate

    # -- records for transport security ----------------------------------------------

    async def tlsa(
        self, host: str, port: int = 25, protocol: str = "tcp"
    ) -> TlsaAnswer | DnsFailure:
        """The TLSA records for ``host``'s ``port`` (RFC 6698 §3: at
        ``_25._tcp.host``), for DANE (RFC 7672). NXDOMAIN and NODATA give an answer
        with no records; check :attr:`~mailagents.dns.TlsaAnswer.authenticated`
        before trusting either."""
        try:
            name = f"_{int(port)}._{protocol}.{to_ascii(host)}"
        except BadName as exc:
            return DnsFailure(kind=FailureKind.BAD_NAME, name=host, reason=str(exc))
        answer = await self.lookup.query(name, "TLSA")
        if isinstance(answer, DnsFailure):
            return answer
        records = tuple(
            TlsaRecord(
                usage=int(r.usage),  # type: ignore[attr-defined]
                selector=int(r.selector),  # type: ignore[attr-defined]
                mtype=int(r.mtype),  # type: ignore[attr-defined]
                data=bytes(r.cert),  # type: ignore[attr-defined]
            )
            for r in answer.records
        )
        return TlsaAnswer(
            name=name, records=records, authenticated=answer.authenticated, ttl=answer.ttl
        )

    async def mta_sts(self, domain: str) -> MtaStsRecord | DnsFailure | None:
        """The domain's MTA-STS TXT record (RFC 8461 §3.1, at ``_mta-sts.domain``), or
        ``None`` when it has no usable one: records that do not begin with
        ``v=STSv1`` are discarded, and unless exactly one valid record remains the
        domain has no MTA-STS policy. A failed lookup is a temporary failure."""
        try:
            name = to_ascii(domain)
        except BadName as exc:
            return DnsFailure(kind=FailureKind.BAD_NAME, name=domain, reason=str(exc))
        answer = await self.lookup.query(f"_mta-sts.{name}", "TXT")
        if isinstance(answer, DnsFailure):
            return answer
        texts = [b"".join(r.strings) for r in answer.records]  # type: ignore[attr-defined]
        candidates = [t for t in texts if _STS_VERSION.match(t)]
        if len(candidates) != 1:
            return None
        return parse_mta_sts(name, candidates[0], ttl=answer.ttl)


_STS_VERSION = re.compile(rb"v=STSv1[ \t]*(?:;|$)")
# RFC 8461 §3.1 (ABNF): sts-field-delim = *WSP ";" *WSP; sts-id = "id=" 1*32(ALPHA /
# DIGIT); sts-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".");
# sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E).
_STS_DELIM = re.compile(rb"[ \t]*;[ \t]*")
_STS_ID = re.compile(rb"id=([A-Za-z0-9]{1,32})")
_STS_EXT = re.compile(rb"([A-Za-z0-9][A-Za-z0-9_.-]{0,31})=([\x21-\x3a\x3c\x3e-\x7e]+)")


def parse_mta_sts(domain: str, text: bytes, *, ttl: int = 0) -> MtaStsRecord | None:
    """An ``_mta-sts`` TXT record's text parsed by RFC 8461 §3.1, or ``None`` when it
    does not follow the grammar (then the domain has no MTA-STS policy). The record
    needs exactly one ``id`` field; a trailing ``;`` is allowed."""
    fields = _STS_DELIM.split(text)
    if fields[0] != b"v=STSv1":
        return None
    if fields[-1] == b"" and len(fields) > 1:
        fields.pop()
    ident: str | None = None
    extensions: list[tuple[str, str]] = []
    for item in fields[1:]:
        match = _STS_ID.fullmatch(item)
        if match:
            if ident is not None:
                return None
            ident = match.group(1).decode("ascii")
            continue
        match = _STS_EXT.fullmatch(item)
        if match is None or match.group(1) == b"id":
            return None
        extensions.append((match.group(1).decode("ascii"), match.group(2).decode("ascii")))
    if ident is None:
        return None
    return MtaStsRecord(domain=domain, id=ident, extensions=tuple(extensions), ttl=ttl)


def _drop_from(
    limit: int, candidates: list[_Candidate], skipped: list[SkippedExchanger]
) -> list[_Candidate]:
    """The candidates better than ``limit`` (our own preference); the others go to
    ``skipped``."""
    for candidate in candidates:
        if candidate.preference >= limit:
            skipped.append(_skip(candidate, f"we are an MX of preference {limit}"))
    return [c for c in candidates if c.preference < limit]


def _skip(candidate: _Candidate, reason: str, temporary: bool = False) -> SkippedExchanger:
    return SkippedExchanger(
        host=candidate.host, preference=candidate.preference, reason=reason, temporary=temporary
    )


def _unusable(name: str, skipped: Sequence[SkippedExchanger]) -> DnsFailure:
    # RFC 5321 §5.1: MX records present but none usable is an error; it is only
    # temporary when a lookup failed temporarily (it may work on the next try).
    why = "; ".join(f"{s.host}: {s.reason}" for s in skipped if s.host != ".")
    if any(s.temporary for s in skipped):
        return DnsFailure(
            kind=FailureKind.TEMPORARY, name=name,
            reason=f"no MX host of {name} could be resolved now ({why})",
        )  # fmt: skip
    return DnsFailure(
        kind=FailureKind.NO_ADDRESS, name=name,
        reason=f"no MX host of {name} has an address ({why})",
    )  # fmt: skip
