"""MXResolver on a StaticLookup: the rules of RFC 5321 §5.1 and RFC 7505, with bytes of
DNS nowhere (tests/interop/test_dns_knot.py asks a real server the same questions)."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from mailagents.dns import (
    DnsFailure,
    Exchanger,
    FailureKind,
    MtaStsRecord,
    MXResolver,
    ResolverConfig,
    Route,
    StaticLookup,
    TlsaAnswer,
    parse_mta_sts,
)

T = TypeVar("T")

ZONE: dict[str, dict[str, list[str]]] = {
    "example.test": {
        "MX": ["10 mx1.example.test.", "10 mx1b.example.test.", "20 mx2.example.test."]
    },
    "mx1.example.test": {"A": ["192.0.2.11"], "AAAA": ["2001:db8::11"]},
    "mx1b.example.test": {"A": ["192.0.2.12"]},
    "mx2.example.test": {"A": ["192.0.2.20", "192.0.2.21"]},
    "implicit.test": {"A": ["192.0.2.40"], "AAAA": ["2001:db8::40"]},
    "nothing.test": {"TXT": ['"no mail here"']},
    "null.test": {"MX": ["0 ."]},
    "nullmixed.test": {"MX": ["0 .", "10 mx2.example.test."]},
    "alias.test": {"CNAME": ["example.test."]},
    "aliasimplicit.test": {"CNAME": ["implicit.test."]},
    "dangling.test": {"MX": ["10 nowhere.test.", "20 mx2.example.test."]},
    "allgone.test": {"MX": ["10 nowhere.test.", "20 empty.test."]},
    "empty.test": {"TXT": ['"x"']},
    "halfbroken.test": {"MX": ["10 broken.test.", "20 mx2.example.test."]},
    "allbroken.test": {"MX": ["10 broken.test.", "20 nowhere.test."]},
    "self.test": {"MX": ["10 me.test.", "20 mx2.example.test."]},
    "backup.test": {
        "MX": ["5 mx1.example.test.", "10 me.test.", "10 peer.test.", "20 mx2.example.test."]
    },
    "me.test": {"A": ["192.0.2.99"]},
    "peer.test": {"A": ["192.0.2.98"]},
    "byaddress.test": {"MX": ["10 alsome.test."]},
    "alsome.test": {"A": ["192.0.2.99"]},
    "v6only.test": {"MX": ["10 v6.test."]},
    "v6.test": {"AAAA": ["2001:db8::6"]},
    "twice.test": {"MX": ["30 mx2.example.test.", "10 mx2.example.test."]},
    "xn--bcher-kva.test": {"MX": ["10 mx1b.example.test."]},
    "_25._tcp.mx1.example.test": {"TLSA": ["3 1 1 " + "ab" * 32]},
    "_mta-sts.example.test": {"TXT": ['"v=STSv1; id=20261207T1200Z;"', '"unrelated"']},
    "_mta-sts.two.test": {"TXT": ['"v=STSv1; id=1"', '"v=STSv1; id=2"']},
    "_mta-sts.split.test": {"TXT": ['"v=STSv1; " "id=abc"']},
}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 10))


def resolver(**config: Any) -> MXResolver:
    failing = config.pop("failing", ["broken.test"])
    return MXResolver(
        ResolverConfig(**config), lookup=StaticLookup(ZONE, failing=failing), rng=random.Random(1)
    )


def route(domain: str, **config: Any) -> Route:
    result = run(resolver(**config).route(domain))
    assert isinstance(result, Route), result
    return result


def failure(domain: str, **config: Any) -> DnsFailure:
    result = run(resolver(**config).route(domain))
    assert isinstance(result, DnsFailure), result
    return result


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def test_mx_hosts_come_by_preference_each_with_its_addresses() -> None:
    result = route("example.test")
    assert [e.preference for e in result.exchangers] == [10, 10, 20]
    assert {e.host for e in result.exchangers[:2]} == {"mx1.example.test", "mx1b.example.test"}
    assert result.exchangers[2] == Exchanger(
        host="mx2.example.test", preference=20, addresses=(ip("192.0.2.20"), ip("192.0.2.21"))
    )
    assert not result.implicit and not result.literal and result.skipped == ()
    mx1 = next(e for e in result.exchangers if e.host == "mx1.example.test")
    assert mx1.addresses == (ip("2001:db8::11"), ip("192.0.2.11"))  # IPv6 first by default
    assert list(result.targets())[-1] == (result.exchangers[2], ip("192.0.2.21"))
    assert result.ttl == 300


def test_equal_preferences_are_shuffled_and_the_rest_keeps_its_order() -> None:
    firsts = set()
    for seed in range(40):
        r = MXResolver(lookup=StaticLookup(ZONE), rng=random.Random(seed))
        result = run(r.route("example.test"))
        assert isinstance(result, Route)
        firsts.add(result.exchangers[0].host)
        assert result.exchangers[2].host == "mx2.example.test"
    assert firsts == {"mx1.example.test", "mx1b.example.test"}


@pytest.mark.parametrize(
    ("families", "addresses"),
    [
        ((6, 4), ["2001:db8::11", "192.0.2.11"]),
        ((4, 6), ["192.0.2.11", "2001:db8::11"]),
        ((4,), ["192.0.2.11"]),
        ((6,), ["2001:db8::11"]),
    ],
)
def test_the_families_are_tried_in_the_configured_order(
    families: tuple[int, ...], addresses: list[str]
) -> None:
    result = route("example.test", families=families)
    mx1 = next(e for e in result.exchangers if e.host == "mx1.example.test")
    assert mx1.addresses == tuple(ip(a) for a in addresses)


def test_an_mx_host_listed_twice_is_tried_once_at_its_best_preference() -> None:
    result = route("twice.test")
    assert [(e.host, e.preference) for e in result.exchangers] == [("mx2.example.test", 10)]


def test_nxdomain_is_permanent_5_1_2() -> None:
    result = failure("nosuch.test")
    assert result.kind is FailureKind.NO_SUCH_DOMAIN
    assert (result.enhanced, result.temporary, result.name) == ("5.1.2", False, "nosuch.test")
    assert str(result).startswith("5.1.2 ")


def test_no_mx_records_means_the_implicit_mx() -> None:
    result = route("implicit.test")
    assert result.implicit
    assert result.exchangers == (
        Exchanger(
            host="implicit.test",
            preference=0,
            addresses=(ip("2001:db8::40"), ip("192.0.2.40")),
        ),
    )


def test_no_mx_and_no_address_is_permanent_5_4_4() -> None:
    result = failure("nothing.test")
    assert (result.kind, result.enhanced, result.temporary) == (
        FailureKind.NO_ADDRESS, "5.4.4", False,
    )  # fmt: skip


def test_a_cname_is_processed_as_the_initial_name() -> None:
    result = route("alias.test")
    assert result.domain == "alias.test"
    assert {e.host for e in result.exchangers} == {
        "mx1.example.test", "mx1b.example.test", "mx2.example.test",
    }  # fmt: skip
    implicit = route("aliasimplicit.test")
    assert implicit.implicit and implicit.exchangers[0].addresses[-1] == ip("192.0.2.40")


def test_the_null_mx_is_permanent_5_1_10() -> None:
    result = failure("null.test")
    assert (result.kind, result.enhanced, result.temporary) == (
        FailureKind.NULL_MX, "5.1.10", False,
    )  # fmt: skip


def test_a_null_mx_among_others_is_only_skipped() -> None:
    result = route("nullmixed.test")
    assert [e.host for e in result.exchangers] == ["mx2.example.test"]
    assert [s.host for s in result.skipped] == ["."]


def test_an_mx_host_that_does_not_resolve_is_skipped() -> None:
    result = route("dangling.test")
    assert [e.host for e in result.exchangers] == ["mx2.example.test"]
    (skipped,) = result.skipped
    assert (skipped.host, skipped.preference, skipped.temporary) == ("nowhere.test", 10, False)
    assert "does not exist" in skipped.reason


def test_no_usable_mx_host_is_permanent_5_4_4() -> None:
    result = failure("allgone.test")
    assert (result.kind, result.temporary) == (FailureKind.NO_ADDRESS, False)
    assert "nowhere.test" in result.reason and "empty.test" in result.reason


def test_a_temporary_failure_of_one_mx_host_leaves_the_others() -> None:
    result = route("halfbroken.test")
    assert [e.host for e in result.exchangers] == ["mx2.example.test"]
    assert result.skipped[0].host == "broken.test" and result.skipped[0].temporary


def test_no_usable_mx_host_with_a_temporary_failure_is_temporary_4_4_3() -> None:
    result = failure("allbroken.test")
    assert (result.kind, result.enhanced, result.temporary) == (
        FailureKind.TEMPORARY, "4.4.3", True,
    )  # fmt: skip


def test_servfail_on_the_mx_query_is_temporary() -> None:
    result = failure("example.test", failing=["example.test/mx"])
    assert result.kind is FailureKind.TEMPORARY and result.temporary
    assert "MX" in result.reason


def test_a_failed_family_only_loses_its_addresses() -> None:
    result = route("example.test", failing=["mx1.example.test/aaaa"])
    mx1 = next(e for e in result.exchangers if e.host == "mx1.example.test")
    assert mx1.addresses == (ip("192.0.2.11"),)


def test_an_aaaa_only_host_has_no_address_for_ipv4_only() -> None:
    assert route("v6only.test").exchangers[0].addresses == (ip("2001:db8::6"),)
    result = failure("v6only.test", families=(4,))
    assert result.kind is FailureKind.NO_ADDRESS


def test_we_as_the_best_mx_is_a_loop() -> None:
    result = failure("self.test", local_names=frozenset({"ME.test"}))
    assert (result.kind, result.enhanced, result.temporary) == (FailureKind.LOOP, "4.4.6", True)
    assert "loops back to myself" in result.reason


def test_as_a_backup_mx_we_drop_ourselves_and_every_mx_behind_us() -> None:
    result = route("backup.test", local_names=frozenset({"me.test"}))
    assert [(e.host, e.preference) for e in result.exchangers] == [("mx1.example.test", 5)]
    # peer.test has our preference: dropped too (RFC 5321 §5.1: "equal or higher")
    assert sorted((s.host, s.preference) for s in result.skipped) == [
        ("me.test", 10), ("mx2.example.test", 20), ("peer.test", 10),
    ]  # fmt: skip


def test_we_are_found_by_address_too() -> None:
    result = failure("byaddress.test", local_addresses=frozenset({ip("192.0.2.99")}))
    assert result.kind is FailureKind.LOOP
    result2 = failure("implicit.test", local_addresses=frozenset({ip("192.0.2.40")}))
    assert result2.kind is FailureKind.LOOP
    assert failure("implicit.test", local_names=frozenset({"implicit.test"})).kind is (
        FailureKind.LOOP
    )


def test_an_internationalised_domain_is_asked_in_a_labels() -> None:
    r = MXResolver(lookup=(lookup := StaticLookup(ZONE)))
    result = run(r.route("Bücher.test"))
    assert isinstance(result, Route) and result.domain == "xn--bcher-kva.test"
    assert lookup.queries[0] == ("xn--bcher-kva.test", "MX")


@pytest.mark.parametrize("domain", ["exa_mple.test", "☃.test", "a..test", "[300.1.1.1]"])
def test_a_bad_name_is_permanent_5_1_3_and_asks_nothing(domain: str) -> None:
    r = MXResolver(lookup=(lookup := StaticLookup(ZONE)))
    result = run(r.route(domain))
    assert isinstance(result, DnsFailure)
    assert (result.kind, result.enhanced, result.temporary) == (
        FailureKind.BAD_NAME,
        "5.1.3",
        False,
    )
    assert lookup.queries == []


@pytest.mark.parametrize(
    ("literal", "address"), [("[192.0.2.7]", "192.0.2.7"), ("[IPv6:2001:db8::7]", "2001:db8::7")]
)
def test_an_address_literal_is_delivered_to_directly(literal: str, address: str) -> None:
    r = MXResolver(lookup=(lookup := StaticLookup(ZONE)))
    result = run(r.route(literal))
    assert isinstance(result, Route) and result.literal and result.domain == literal
    assert result.exchangers == (Exchanger(host=literal, preference=0, addresses=(ip(address),)),)
    assert lookup.queries == []


def test_an_address_literal_of_ours_is_a_loop() -> None:
    result = failure("[192.0.2.99]", local_addresses=frozenset({ip("192.0.2.99")}))
    assert result.kind is FailureKind.LOOP


def test_max_exchangers_keeps_the_best_and_says_what_it_left() -> None:
    result = route("example.test", max_exchangers=2)
    assert [e.preference for e in result.exchangers] == [10, 10]
    assert [(s.host, s.reason) for s in result.skipped] == [
        ("mx2.example.test", "beyond the first 2")
    ]


def test_resolve_host_gives_one_exchanger() -> None:
    r = resolver()
    assert run(r.resolve_host("mx2.example.test")) == Exchanger(
        host="mx2.example.test", preference=0, addresses=(ip("192.0.2.20"), ip("192.0.2.21"))
    )
    missing = run(r.resolve_host("nowhere.test"))
    assert isinstance(missing, DnsFailure) and missing.kind is FailureKind.NO_SUCH_DOMAIN
    broken = run(r.resolve_host("broken.test"))
    assert isinstance(broken, DnsFailure) and broken.temporary


def test_tlsa_records_are_typed() -> None:
    r = resolver()
    answer = run(r.tlsa("mx1.example.test"))
    assert isinstance(answer, TlsaAnswer) and answer.name == "_25._tcp.mx1.example.test"
    (record,) = answer.records
    assert (record.usage, record.selector, record.mtype, record.data) == (3, 1, 1, b"\xab" * 32)
    assert answer.authenticated is False
    none = run(r.tlsa("mx2.example.test", 465))
    assert isinstance(none, TlsaAnswer) and none.records == ()


def test_the_mta_sts_record_is_found_among_other_txt_records() -> None:
    r = resolver()
    record = run(r.mta_sts("example.test"))
    assert record == MtaStsRecord(domain="example.test", id="20261207T1200Z", ttl=300)
    assert run(r.mta_sts("split.test")) == MtaStsRecord(domain="split.test", id="abc", ttl=300)
    assert run(r.mta_sts("two.test")) is None  # RFC 8461 §3.1: not exactly one record
    assert run(r.mta_sts("nosuch.test")) is None
    assert run(r.mta_sts("implicit.test")) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"v=STSv1; id=20160831085700Z;", ("20160831085700Z", ())),
        (b"v=STSv1;id=abc", ("abc", ())),
        (b"v=STSv1 ; id=abc ; ext_1=val:ue", ("abc", (("ext_1", "val:ue"),))),
        (b"v=STSv1; id=" + b"a" * 32, ("a" * 32, ())),
        (b"v=STSv1; id=" + b"a" * 33, None),  # id is 1*32 ALPHA / DIGIT
        (b"v=STSv1; id=ab-c", None),
        (b"v=STSv1", None),  # no id
        (b"v=STSv1; id=a; id=b", None),
        (b"v=STSv2; id=a", None),
        (b"v=STSv1; id=a; bad", None),
        (b"v=STSv1; id=a; x=has space", None),
        (b"v=STSv1; id=a; x=semi=colon", None),
        (b"V=STSv1; id=a", None),  # %s"v=STSv1": case-sensitive
    ],
)
def test_mta_sts_record_grammar(text: bytes, expected: tuple[str, Any] | None) -> None:
    record = parse_mta_sts("example.test", text)
    if expected is None:
        assert record is None
    else:
        assert record is not None and (record.id, record.extensions) == expected


def test_the_config_is_checked_and_normalised() -> None:
    config = ResolverConfig(local_names=frozenset({"MX.Bücher.test."}), nameservers=("127.0.0.1",))
    assert config.local_names == frozenset({"mx.xn--bcher-kva.test"})
    for bad in ({"families": ()}, {"families": (5,)}, {"families": (4, 4)}, {"max_exchangers": 0}):
        with pytest.raises(ValueError):
            ResolverConfig(**bad)


def test_static_lookup_answers_as_dns_does() -> None:
    lookup = StaticLookup(ZONE, failing=["broken.test"])
    nodata = run(lookup.query("implicit.test", "MX"))
    assert not isinstance(nodata, DnsFailure) and nodata.records == () and not nodata.nxdomain
    nx = run(lookup.query("nosuch.test", "A"))
    assert not isinstance(nx, DnsFailure) and nx.nxdomain
    via = run(lookup.query("alias.test", "MX"))
    assert not isinstance(via, DnsFailure) and via.canonical == "example.test"
    assert len(via.records) == 3
    assert isinstance(run(lookup.query("broken.test", "A")), DnsFailure)
    loop = StaticLookup({"a.test": {"CNAME": ["b.test."]}, "b.test": {"CNAME": ["a.test."]}})
    assert isinstance(run(loop.query("a.test", "A")), DnsFailure)


def test_we_are_found_by_name_beyond_max_exchangers() -> None:
    """Regression: the cut to max_exchangers came before the search for ourselves, so
    an MX of our own preference could stay when we were past the cut."""
    zone = {
        "peers.test": {"MX": ["10 a.test.", "10 b.test.", "10 me.test."]},
        "a.test": {"A": ["192.0.2.1"]},
        "b.test": {"A": ["192.0.2.2"]},
        "me.test": {"A": ["192.0.2.3"]},
    }
    config = ResolverConfig(local_names=frozenset({"me.test"}), max_exchangers=1)
    for seed in range(20):
        r = MXResolver(config, lookup=StaticLookup(zone), rng=random.Random(seed))
        result = run(r.route("peers.test"))
        assert isinstance(result, DnsFailure) and result.kind is FailureKind.LOOP, seed
