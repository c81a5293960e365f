"""mailagents.sasl.decode_base64: the strict base64 every protocol's SASL lines use."""

from __future__ import annotations

import pytest

from mailagents.sasl import decode_base64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", b""),
        ("AGFsaWNlAHNlY3JldA==", b"\x00alice\x00secret"),
        (b"dGVzdA==", b"test"),
        ("dGVzdA", None),  # padding missing
        ("dGV zdA==", None),  # a space inside
        ("dGVzdA==\n", None),  # a line end
        ("*", None),
        ("=", None),  # the empty initial response is the protocol core's marker
        ("é", None),  # not ASCII
    ],
)
def test_decode_base64(text: str | bytes, expected: bytes | None) -> None:
    assert decode_base64(text) == expected
