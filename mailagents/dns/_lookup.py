"""One DNS question and its answer: the :class:`Lookup` interface the resolver asks
through, on dnspython's asyncio resolver (:class:`DnspythonLookup`) or on a fixed
table (:class:`StaticLookup`, for tests and closed setups)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from mailagents.dns._model import DnsFailure, FailureKind

log = logging.getLogger("mailagents.dns")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordSet:
    """The answer to one question: the records of type ``rdtype`` at ``name``.

    ``canonical`` is the name the records belong to once CNAMEs are followed (RFC 5321
    §5.1: "the resulting name is processed as if it were the initial name"); names are
    ASCII without the trailing dot. An empty ``records`` is NODATA (the name exists
    but has no such record), ``nxdomain`` that the name does not exist. ``ttl`` is how
    long the answer may be kept (for a denial, the SOA's negative TTL, RFC 2308);
    ``authenticated`` is the AD bit of the response.
    """

    name: str
    rdtype: str
    canonical: str
    records: tuple[dns.rdata.Rdata, ...] = ()
    nxdomain: bool = False
    ttl: int = 0
    authenticated: bool = False


class Lookup(Protocol):
    """What :class:`~mailagents.dns.MXResolver` asks DNS through.

    ``name`` is an ASCII domain without the trailing dot and ``rdtype`` a record type
    such as ``"MX"``. An answer, even "no such name", is a :class:`RecordSet`; a
    :class:`DnsFailure` means there was no usable answer: of kind
    :attr:`FailureKind.TEMPORARY` for SERVFAIL, REFUSED or a time-out, of kind
    :attr:`FailureKind.BAD_NAME` for YXDOMAIN. It never raises for a DNS outcome.
    """

    async def query(self, name: str, rdtype: str) -> RecordSet | DnsFailure: ...


def _ascii(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


class DnspythonLookup:
    """:class:`Lookup` on dnspython's asyncio resolver, with its TTL cache.

    ``nameservers`` are addresses to ask (``None``: those of ``/etc/resolv.conf``),
    all on ``port``. ``timeout`` bounds one query to one server and ``lifetime`` the
    whole lookup with its retries, in seconds. Answers, denials included, are kept
    for their TTL in an LRU cache of at most ``cache_size`` entries (0: no cache);
    failures are never cached. Queries ask for recursion and set the AD bit, so that
    a validating resolver says whether it could authenticate the answer (RFC 6840
    §5.7); EDNS0 with a 1,232-octet payload, and TCP when an answer is truncated.
    """

    def __init__(
        self,
        *,
        nameservers: Sequence[str] | None = None,
        port: int = 53,
        timeout: float = 2.0,
        lifetime: float = 8.0,
        cache_size: int = 10_000,
    ) -> None:
        if nameservers is None:
            resolver = dns.asyncresolver.Resolver()
        else:
            if not nameservers:
                raise ValueError("nameservers is empty")
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = list(nameservers)
        resolver.port = port
        resolver.timeout = timeout
        resolver.lifetime = lifetime
        resolver.use_edns(0, 0, 1232)
        resolver.flags = dns.flags.RD | dns.flags.AD
        if cache_size < 0:
            raise ValueError("cache_size must not be negative")
        self.cache = dns.resolver.LRUCache(cache_size) if cache_size else None
        resolver.cache = self.cache
        self._resolver = resolver

    async def query(self, name: str, rdtype: str) -> RecordSet | DnsFailure:
        qname = dns.name.from_text(name, origin=dns.name.root)
        try:
            answer = await self._resolver.resolve(
                qname, rdtype, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN as exc:
            return _nxdomain(name, rdtype, qname, exc)
        except dns.resolver.YXDOMAIN:
            # A DNAME made the name longer than DNS allows (RFC 6672 §2.2).
            return DnsFailure(
                kind=FailureKind.BAD_NAME, name=name,
                reason=f"{name}: a DNAME substitution gives a name too long (YXDOMAIN)",
            )  # fmt: skip
        except dns.exception.Timeout:
            return _temporary(name, rdtype, "the name servers did not answer in time")
        except dns.resolver.NoNameservers as exc:
            return _temporary(name, rdtype, _why_no_nameservers(exc))
        except dns.exception.DNSException as exc:
            return _temporary(name, rdtype, str(exc) or type(exc).__name__)
        records: tuple[dns.rdata.Rdata, ...] = tuple(answer.rrset) if answer.rrset else ()
        return RecordSet(
            name=name,
            rdtype=rdtype,
            canonical=_ascii(answer.canonical_name),
            records=records,
            ttl=max(0, math.ceil(answer.expiration - time.time())),
            authenticated=bool(answer.response.flags & dns.flags.AD),
        )


def _temporary(name: str, rdtype: str, why: str) -> DnsFailure:
    log.debug("%s lookup for %s failed: %s", rdtype, name, why)
    return DnsFailure(
        kind=FailureKind.TEMPORARY, name=name, reason=f"{rdtype} lookup for {name} failed: {why}"
    )


def _why_no_nameservers(exc: dns.resolver.NoNameservers) -> str:
    errors = exc.kwargs.get("errors") or []
    said = []
    for error in errors:
        server, _tcp, port, problem, response = error
        if response is not None:
            said.append(f"{server}@{port} answered {dns.rcode.to_text(response.rcode())}")
        else:
            said.append(f"{server}@{port}: {problem}")
    return "; ".join(dict.fromkeys(said)) or "no name server could answer"


def _nxdomain(
    name: str, rdtype: str, qname: dns.name.Name, exc: dns.resolver.NXDOMAIN
) -> RecordSet:
    """The denial as a :class:`RecordSet`: its canonical name, its negative TTL (RFC
    2308 §5: the lesser of the SOA's TTL and its MINIMUM field) and its AD bit."""
    ttl, authenticated, canonical = 0, False, qname
    qnames = exc.qnames()  # type: ignore[no-untyped-call]
    if qnames:
        canonical = exc.canonical_name
        response = exc.responses().get(qnames[-1])  # type: ignore[no-untyped-call]
        if response is not None:
            authenticated = bool(response.flags & dns.flags.AD)
            for rrset in response.authority:
                if rrset.rdtype == dns.rdatatype.SOA:
                    ttl = int(min(rrset.ttl, rrset[0].minimum))
                    break
    return RecordSet(
        name=name, rdtype=rdtype, canonical=_ascii(canonical), nxdomain=True,
        ttl=ttl, authenticated=authenticated,
    )  # fmt: skip


class StaticLookup:
    """A :class:`Lookup` that answers from a table, for tests and closed setups (a
    demo, a lab): ``{"example.test": {"MX": ["10 mx.example.test."]}}``.

    Records are written as in a zone file (relative names are taken as absolute). A
    name in the table exists: a type it lacks is NODATA. A name that is not in the
    table is NXDOMAIN. CNAME records are followed (at most 8). Names in ``failing``
    (``"name"`` or ``"name/TYPE"``) give a temporary failure, as SERVFAIL would.
    Every question asked is appended to :attr:`queries`.
    """

    def __init__(
        self,
        zone: Mapping[str, Mapping[str, Iterable[str]]],
        *,
        failing: Iterable[str] = (),
        ttl: int = 300,
    ) -> None:
        self._zone: dict[str, dict[str, tuple[dns.rdata.Rdata, ...]]] = {}
        for owner, types in zone.items():
            entry = self._zone.setdefault(owner.rstrip(".").lower(), {})
            for rdtype, texts in types.items():
                entry[rdtype.upper()] = tuple(
                    dns.rdata.from_text(
                        dns.rdataclass.IN, rdtype, text, origin=dns.name.root, relativize=False
                    )
                    for text in texts
                )
        self._failing = {item.rstrip(".").lower() for item in failing}
        self._ttl = ttl
        self.queries: list[tuple[str, str]] = []

    async def query(self, name: str, rdtype: str) -> RecordSet | DnsFailure:
        rdtype = rdtype.upper()
        self.queries.append((name, rdtype))
        current = name.lower()
        for _ in range(8):
            if current in self._failing or f"{current}/{rdtype.lower()}" in self._failing:
                return _temporary(name, rdtype, "SERVFAIL (a failing name in the table)")
            entry = self._zone.get(current)
            if entry is None:
                return RecordSet(
                    name=name, rdtype=rdtype, canonical=current, nxdomain=True, ttl=self._ttl
                )
            cname = entry.get("CNAME")
            if cname and rdtype != "CNAME":
                current = _ascii(cname[0].target)  # type: ignore[attr-defined]
                continue
            return RecordSet(
                name=name, rdtype=rdtype, canonical=current,
                records=entry.get(rdtype, ()), ttl=self._ttl,
            )  # fmt: skip
        return _temporary(name, rdtype, "CNAME chain longer than 8")
