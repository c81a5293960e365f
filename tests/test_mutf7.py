"""Modified UTF-7 (RFC 3501 §5.1.3, RFC 9051 §5.1.3): mailagents/_mutf7.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents._mutf7 import decode_mutf7, encode_mutf7

EXAMPLES = [
    # RFC 3501 §5.1.3 / RFC 9051 §5.1.3
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("Entwürfe", "Entw&APw-rfe"),
    ("&", "&-"),
    ("A&B", "A&-B"),
    ("", ""),
    ("INBOX", "INBOX"),
    ("Gelöschte Objekte", "Gel&APY-schte Objekte"),
    ("😀", "&2D3eAA-"),  # outside the BMP: a surrogate pair
    ("é&", "&AOk-&-"),
]


@pytest.mark.parametrize(("text", "encoded"), EXAMPLES)
def test_examples(text: str, encoded: str) -> None:
    assert encode_mutf7(text) == encoded
    assert decode_mutf7(encoded) == text


@given(st.text())
def test_round_trip(text: str) -> None:
    encoded = encode_mutf7(text)
    assert all(0x20 <= ord(ch) <= 0x7E for ch in encoded)
    assert decode_mutf7(encoded) == text


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_printable_ascii_other_than_ampersand_is_itself(text: str) -> None:
    assert encode_mutf7(text) == text.replace("&", "&-")


@pytest.mark.parametrize(
    "bad",
    [
        "&",  # unterminated
        "&U,BTFw",  # unterminated
        "&AGE-",  # "a" must not be encoded
        "&U,BTFw-&ZeVnLIqe-",  # two adjacent shifts must be one
        "&U/BTFw-",  # "/" is not modified base64
        "&U,BTFw=-",  # padding
        "&A-",  # truncated
        "&AOl-",  # non-zero leftover bits
        "ü",  # 8-bit characters are never direct
        "a\tb",  # neither are controls
        "&2D0-",  # a lone surrogate
    ],
)
def test_refuses_what_it_would_not_produce(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_mutf7(bad)


def test_lone_surrogate_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        encode_mutf7("\ud800")
