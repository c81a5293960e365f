"""The MSA's From:/Sender: parse (``field_addresses`` in mailagents/agents/_headers.py,
cached): the same answer as the email package's own parse of the field, and a cache
that stays bounded."""

from __future__ import annotations

import email.parser
import email.policy

from hypothesis import given
from hypothesis import strategies as st

from mailagents.agents import _headers

SAMPLES = [
    "Alice <alice@example.test>",
    "alice@example.test, Bob <BOB@Example.Test>",
    "undisclosed:;",
    "<alice@example.test",
    "",
    "=?utf-8?q?Zo=C3=AB?= <zoe@example.test>",
    "Group: a@example.test, b@example.test;",
    '"quoted, name" <q@example.test>',
    "a@example.test (comment)",
    "@",
]


def reference(name: str, value: str) -> tuple[str, ...] | None:
    """What the MSA decided before the cache: the parsed message's get_all."""
    message = email.parser.Parser(policy=email.policy.default).parsestr(
        f"{name}: {value}\r\n\r\n", headersonly=True
    )
    try:
        (field,) = message.get_all(name)
    except Exception:  # the email package fails on some malformed fields
        return None
    addresses = getattr(field, "addresses", ())
    if getattr(field, "defects", ()) or not addresses:
        return None
    return tuple(f"{a.username}@{a.domain}".lower() for a in addresses)


def parsed_raw(name: str, value: str) -> tuple[str, str]:
    message = email.parser.Parser(policy=email.policy.default).parsestr(
        f"{name}: {value}\r\n\r\n", headersonly=True
    )
    ((raw_name, raw_value),) = list(message.raw_items())
    return raw_name, raw_value


def test_samples_agree_with_the_email_package() -> None:
    for name in ("From", "Sender", "from"):
        for value in SAMPLES:
            raw_name, raw_value = parsed_raw(name, value)
            assert _headers.field_addresses(raw_name, raw_value) == reference(name, value), value
            # A second (cached) answer is the same.
            assert _headers.field_addresses(raw_name, raw_value) == reference(name, value), value


@given(st.text(alphabet=st.sampled_from(list('ab@.<>,;:"() \\=?Zoë-')), max_size=40))
def test_any_value_agrees_with_the_email_package(value: str) -> None:
    raw_name, raw_value = parsed_raw("From", value)
    assert _headers.field_addresses(raw_name, raw_value) == reference("From", value)


def test_a_field_the_email_package_fails_on_is_refused() -> None:
    raw_name, raw_value = parsed_raw("From", '"')
    assert _headers.field_addresses(raw_name, raw_value) is None


def test_long_values_are_not_cached() -> None:
    _headers.parse_addresses.cache_clear()
    long_value = "x" * 2000 + "@example.test"
    assert _headers.field_addresses("From", long_value) == ("x" * 2000 + "@example.test",)
    assert _headers.parse_addresses.cache_info().currsize == 0
    assert _headers.field_addresses("From", "a@example.test") == ("a@example.test",)
    assert _headers.parse_addresses.cache_info().currsize == 1
    assert _headers.parse_addresses.cache_info().maxsize is not None
