"""SASLprep (RFC 4013): the examples of §3 and the rules of §2."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.sasl import saslprep

# RFC 4013 §3, "Examples": input, output (None: the preparation must fail).
RFC_4013_EXAMPLES = [
    ("I\u00adX", "IX"),  # 1 SOFT HYPHEN mapped to nothing
    ("user", "user"),  # 2 no transformation
    ("USER", "USER"),  # 3 case preserved, will not match #2
    ("\u00aa", "a"),  # 4 output is NFKC, input in ISO 8859-1
    ("\u2168", "IX"),  # 5 output is NFKC, will match #1
    ("\u0007", None),  # 6 Error - prohibited character
    ("\u0627\u0031", None),  # 7 Error - bidirectional check
]


@pytest.mark.parametrize(("given_", "expected"), RFC_4013_EXAMPLES)
def test_rfc_4013_examples(given_: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(ValueError):
            saslprep(given_)
    else:
        assert saslprep(given_) == expected


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        ("a\u00a0b", "a b"),  # §2.1: non-ASCII space (C.1.2) becomes SPACE
        ("a\u3000b", "a b"),
        ("a b", "a b"),  # the ASCII space (C.1.1) is not prohibited
        ("a\u200bb", "ab"),  # B.1: ZERO WIDTH SPACE is mapped to nothing
        ("pa\u0308ssword", "p\u00e4ssword"),  # NFKC composes
        ("\u0627\u0031\u0628", "\u0627\u0031\u0628"),  # RandALCat at both ends: fine
        ("", ""),
    ],
)
def test_mapping_and_normalisation(given_: str, expected: str) -> None:
    assert saslprep(given_) == expected


@pytest.mark.parametrize(
    "given_",
    [
        "a\x00b",  # C.2.1 ASCII control
        "a\u0085b",  # C.2.2 non-ASCII control
        "a\ue000b",  # C.3 private use
        "a\ufdd0b",  # C.4 non-character
        "a\ud800b",  # C.5 surrogate
        "a\ufff9b",  # C.6 inappropriate for plain text
        "a\u2ff0b",  # C.7 inappropriate for canonical representation
        "a\u200eb",  # C.8 change display properties
        "a\U000e0001b",  # C.9 tagging character
        "\u0627a\u0628",  # RandALCat and LCat mixed
        "\u0627\u0031",  # RandALCat string not ending with one
    ],
)
def test_prohibited(given_: str) -> None:
    with pytest.raises(ValueError):
        saslprep(given_)


def test_unassigned_code_points_only_in_queries() -> None:
    # U+0221 was unassigned in Unicode 3.2 (RFC 3454 table A.1).
    with pytest.raises(ValueError):
        saslprep("a\u0221")
    assert saslprep("a\u0221", allow_unassigned=True) == "a\u0221"


@given(st.text())
def test_only_value_error_and_idempotent(s: str) -> None:
    try:
        once = saslprep(s, allow_unassigned=True)
    except ValueError:
        return
    assert saslprep(once, allow_unassigned=True) == once
