"""The MX resolver against a real DNS server: Knot DNS (knotd) serving test zones on
loopback. Every rule of RFC 5321 §5.1 and RFC 7505 that tests/dns checks on a table
is asked here over UDP and TCP, with dnspython's real answers, denials and errors."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from mailagents.dns import (
    DnsFailure,
    DnspythonLookup,
    FailureKind,
    MtaStsRecord,
    MXResolver,
    ResolverConfig,
    Route,
    TlsaAnswer,
)

from .peers import Knot, running_knot

pytestmark = pytest.mark.interop

T = TypeVar("T")

MANY = 60  # MX records for one name: more than 1,232 octets, so over TCP

EXAMPLE_ZONE = f"""\
$ORIGIN example.test.
$TTL 300
@        SOA   ns1 hostmaster 1 3600 600 86400 120
@        NS    ns1
ns1      A     127.0.0.1
@        MX    10 mx1
@        MX    10 mx1b
@        MX    20 mx2
mx1      A     127.0.0.11
mx1      AAAA  fd00::11
mx1b     A     127.0.0.12
mx2      A     127.0.0.20
mx2      A     127.0.0.21
implicit A     127.0.0.40
implicit AAAA  fd00::40
nothing  TXT   "a name with no mail records"
nullmx   MX    0 .
alias    CNAME @
alias2   CNAME implicit
v6only   MX    10 v6
v6       AAAA  fd00::6
dangling MX    10 nowhere
dangling MX    20 mx2
allgone  MX    10 nowhere
allgone  MX    20 nothing
self     MX    10 me
self     MX    20 mx2
backup   MX    5  mx1b
backup   MX    10 me
backup   MX    20 mx2
me       A     127.0.0.99
byaddr   MX    10 alsome
alsome   A     127.0.0.99
halfbroken MX  10 mx.broken.test.
halfbroken MX  20 mx2
allbroken  MX  10 mx.broken.test.
xn--bcher-kva MX 10 mx1b
short 1  MX    10 mx2
_25._tcp.mx1 TLSA 3 1 1 {"ab" * 32}
_mta-sts TXT   "v=STSv1; id=20261207T1200Z;"
_mta-sts TXT   "google-site-verification=unrelated"
""" + "".join(
    f"many MX {i} mx{i:02d}-with-a-rather-long-label-for-padding\n"
    f"mx{i:02d}-with-a-rather-long-label-for-padding A 127.0.1.{i}\n"
    for i in range(MANY)
)

# A zone Knot cannot load: it answers SERVFAIL for it, as a broken authority does.
BROKEN_ZONE = "this is not a zone file\n"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture(scope="module")
def knot() -> Iterator[Knot]:
    with running_knot({"example.test": EXAMPLE_ZONE, "broken.test": BROKEN_ZONE}) as server:
        yield server


def resolver(knot: Knot, **config: Any) -> MXResolver:
    config.setdefault("lifetime", 5.0)
    return MXResolver(ResolverConfig(nameservers=("127.0.0.1",), port=knot.port, **config))


def route(knot: Knot, domain: str, **config: Any) -> Route:
    result = run(resolver(knot, **config).route(domain))
    assert isinstance(result, Route), result
    return result


def failure(knot: Knot, domain: str, **config: Any) -> DnsFailure:
    result = run(resolver(knot, **config).route(domain))
    assert isinstance(result, DnsFailure), result
    return result


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def test_mx_hosts_by_preference_with_their_addresses(knot: Knot) -> None:
    result = route(knot, "example.test")
    assert [e.preference for e in result.exchangers] == [10, 10, 20]
    by_host = {e.host: e.addresses for e in result.exchangers}
    assert by_host == {
        "mx1.example.test": (ip("fd00::11"), ip("127.0.0.11")),
        "mx1b.example.test": (ip("127.0.0.12"),),
        "mx2.example.test": (ip("127.0.0.20"), ip("127.0.0.21")),
    }
    assert result.exchangers[2].host == "mx2.example.test"
    assert 0 < result.ttl <= 300
    v4 = route(knot, "example.test", families=(4, 6))
    assert dict((e.host, e.addresses) for e in v4.exchangers)["mx1.example.test"] == (
        ip("127.0.0.11"), ip("fd00::11"),
    )  # fmt: skip


def test_equal_preferences_come_in_both_orders(knot: Knot) -> None:
    r = resolver(knot)
    firsts = set()
    for _ in range(40):
        result = run(r.route("example.test"))
        assert isinstance(result, Route)
        firsts.add(result.exchangers[0].host)
    assert firsts == {"mx1.example.test", "mx1b.example.test"}


def test_nxdomain_is_permanent(knot: Knot) -> None:
    result = failure(knot, "nosuch.example.test")
    assert (result.kind, result.enhanced, result.temporary) == (
        FailureKind.NO_SUCH_DOMAIN, "5.1.2", False,
    )  # fmt: skip


def test_the_implicit_mx(knot: Knot) -> None:
    result = route(knot, "implicit.example.test")
    assert result.implicit
    assert [(e.host, e.preference, e.addresses) for e in result.exchangers] == [
        ("implicit.example.test", 0, (ip("fd00::40"), ip("127.0.0.40"))),
    ]
    assert failure(knot, "nothing.example.test").kind is FailureKind.NO_ADDRESS


def test_the_null_mx(knot: Knot) -> None:
    result = failure(knot, "nullmx.example.test")
    assert (result.kind, result.enhanced, result.temporary) == (
        FailureKind.NULL_MX, "5.1.10", False,
    )  # fmt: skip


def test_a_cname_is_followed(knot: Knot) -> None:
    result = route(knot, "alias.example.test")
    assert result.domain == "alias.example.test"
    assert {e.host for e in result.exchangers} == {
        "mx1.example.test", "mx1b.example.test", "mx2.example.test",
    }  # fmt: skip
    implicit = route(knot, "alias2.example.test")
    assert implicit.implicit and ip("127.0.0.40") in implicit.exchangers[0].addresses


def test_an_aaaa_only_exchanger(knot: Knot) -> None:
    assert route(knot, "v6only.example.test").exchangers[0].addresses == (ip("fd00::6"),)
    assert failure(knot, "v6only.example.test", families=(4,)).kind is FailureKind.NO_ADDRESS


def test_an_mx_pointing_at_a_name_that_does_not_exist(knot: Knot) -> None:
    result = route(knot, "dangling.example.test")
    assert [e.host for e in result.exchangers] == ["mx2.example.test"]
    assert [(s.host, s.temporary) for s in result.skipped] == [("nowhere.example.test", False)]
    gone = failure(knot, "allgone.example.test")
    assert (gone.kind, gone.enhanced) == (FailureKind.NO_ADDRESS, "5.4.4")


def test_ourselves_in_the_mx_list(knot: Knot) -> None:
    me = frozenset({"me.example.test"})
    loop = failure(knot, "self.example.test", local_names=me)
    assert (loop.kind, loop.temporary) == (FailureKind.LOOP, True)
    backup = route(knot, "backup.example.test", local_names=me)
    assert [e.host for e in backup.exchangers] == ["mx1b.example.test"]
    assert {s.host for s in backup.skipped} == {"me.example.test", "mx2.example.test"}
    by_address = failure(knot, "byaddr.example.test", local_addresses=frozenset({ip("127.0.0.99")}))
    assert by_address.kind is FailureKind.LOOP


def test_servfail_is_temporary(knot: Knot) -> None:
    result = failure(knot, "broken.test")
    assert (result.kind, result.enhanced, result.temporary) == (
        FailureKind.TEMPORARY, "4.4.3", True,
    )  # fmt: skip
    assert "SERVFAIL" in result.reason
    half = route(knot, "halfbroken.example.test")
    assert [e.host for e in half.exchangers] == ["mx2.example.test"]
    assert [(s.host, s.temporary) for s in half.skipped] == [("mx.broken.test", True)]
    assert failure(knot, "allbroken.example.test").kind is FailureKind.TEMPORARY


def test_a_domain_the_server_refuses_is_temporary(knot: Knot) -> None:
    result = failure(knot, "elsewhere.org")
    assert result.temporary and "REFUSED" in result.reason


def test_an_internationalised_domain(knot: Knot) -> None:
    result = route(knot, "Bücher.example.test")
    assert result.domain == "xn--bcher-kva.example.test"
    assert [e.host for e in result.exchangers] == ["mx1b.example.test"]


def test_an_answer_too_big_for_udp_comes_over_tcp(knot: Knot) -> None:
    result = route(knot, "many.example.test", max_exchangers=100)
    assert len(result.exchangers) == MANY
    assert [e.preference for e in result.exchangers] == list(range(MANY))
    assert result.exchangers[7].addresses == (ip("127.0.1.7"),)


def test_tlsa_and_mta_sts_records(knot: Knot) -> None:
    r = resolver(knot)
    tlsa = run(r.tlsa("mx1.example.test"))
    assert isinstance(tlsa, TlsaAnswer) and len(tlsa.records) == 1
    assert tlsa.records[0].data == b"\xab" * 32 and tlsa.records[0].usage == 3
    assert tlsa.authenticated is False  # Knot is not a validating resolver
    empty = run(r.tlsa("mx2.example.test"))
    assert isinstance(empty, TlsaAnswer) and empty.records == ()
    sts = run(r.mta_sts("example.test"))
    assert isinstance(sts, MtaStsRecord) and (sts.domain, sts.id) == (
        "example.test",
        "20261207T1200Z",
    )
    assert 0 < sts.ttl <= 300
    assert run(r.mta_sts("implicit.example.test")) is None


def test_the_cache_is_bounded(knot: Knot) -> None:
    lookup = DnspythonLookup(nameservers=["127.0.0.1"], port=knot.port, cache_size=4)
    r = MXResolver(lookup=lookup)
    for name in (
        "example",
        "implicit.example",
        "dangling.example",
        "v6only.example",
        "many.example",
    ):
        run(r.route(f"{name}.test"))
    assert lookup.cache is not None and lookup.cache.statistics.misses > 4
    assert lookup.cache is not None and len(lookup.cache.data) <= 4


def test_answers_are_kept_for_their_ttl() -> None:
    """A cached route survives its server's stop; the answer with a TTL of 1 s expires,
    and the lookup then fails temporarily (nothing answers any more)."""
    with running_knot({"example.test": EXAMPLE_ZONE}) as server:
        r = MXResolver(
            ResolverConfig(nameservers=("127.0.0.1",), port=server.port, timeout=0.5, lifetime=1.0)
        )

        async def both() -> tuple[Route | DnsFailure, Route | DnsFailure]:
            return await r.route("example.test"), await r.route("short.example.test")

        first, short = run(both())
        assert isinstance(first, Route) and isinstance(short, Route)
        server.stop()
        again = run(r.route("example.test"))
        assert again == first or (
            isinstance(again, Route) and set(again.exchangers) == set(first.exchangers)
        )
        deadline = time.monotonic() + 30
        while True:
            later = run(r.route("short.example.test"))
            if isinstance(later, DnsFailure):
                break
            assert time.monotonic() < deadline, "the 1 s answer was still served after 30 s"
            time.sleep(0.2)
        assert later.kind is FailureKind.TEMPORARY


def test_a_stopped_server_is_a_temporary_failure() -> None:
    with running_knot({"example.test": EXAMPLE_ZONE}) as server:
        port = server.port
    r = MXResolver(ResolverConfig(nameservers=("127.0.0.1",), port=port, timeout=0.3, lifetime=1.0))
    result = run(r.route("example.test"))
    assert isinstance(result, DnsFailure)
    assert (result.kind, result.enhanced, result.temporary) == (
        FailureKind.TEMPORARY, "4.4.3", True,
    )  # fmt: skip


def test_it_runs_on_uvloop(knot: Knot) -> None:
    uvloop = pytest.importorskip("uvloop")
    r = resolver(knot)
    result = uvloop.run(asyncio.wait_for(r.route("many.example.test"), 30))
    assert isinstance(result, Route) and len(result.exchangers) == 10  # max_exchangers
    assert [s.reason for s in result.skipped] == ["beyond the first 10"] * (MANY - 10)


def test_a_denial_carries_its_negative_ttl(knot: Knot) -> None:
    lookup = DnspythonLookup(nameservers=["127.0.0.1"], port=knot.port, cache_size=0)
    answer = run(lookup.query("nosuch.example.test", "MX"))
    assert not isinstance(answer, DnsFailure) and answer.nxdomain
    # RFC 2308 §5: the lesser of the SOA's TTL (300) and its MINIMUM (120)
    assert (answer.ttl, answer.authenticated, answer.records) == (120, False, ())
    alias = run(lookup.query("alias.example.test", "A"))
    assert not isinstance(alias, DnsFailure) and alias.canonical == "example.test"
