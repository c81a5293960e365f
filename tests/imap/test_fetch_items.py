"""The FETCH item model: validation and wire forms (RFC 9051 §6.4.5, RFC 3516)."""

from __future__ import annotations

import pytest

from mailagents._protocol import LocalProtocolError
from mailagents.imap._fetch_items import (
    ATTRIBUTE_NAMES,
    FetchAttribute,
    FetchBinarySize,
    FetchBody,
    Section,
    expand_macro,
)


@pytest.mark.parametrize(
    ("item", "wire"),
    [
        (FetchBody(), "BODY[]"),
        (FetchBody(peek=True), "BODY.PEEK[]"),
        (FetchBody(section=Section(part=(1, 2))), "BODY[1.2]"),
        (FetchBody(section=Section(text="HEADER")), "BODY[HEADER]"),
        (FetchBody(section=Section(part=(3,), text="MIME")), "BODY[3.MIME]"),
        (
            FetchBody(
                section=Section(text="HEADER.FIELDS", fields=("DATE", "FROM")),
                peek=True,
            ),
            "BODY.PEEK[HEADER.FIELDS (DATE FROM)]",
        ),
        (
            FetchBody(section=Section(part=(4, 2), text="HEADER.FIELDS.NOT", fields=("NIL",))),
            'BODY[4.2.HEADER.FIELDS.NOT ("NIL")]',
        ),
        (
            FetchBody(section=Section(text="HEADER.FIELDS", fields=('x"]',))),
            'BODY[HEADER.FIELDS ("x\\"]")]',
        ),
        (FetchBody(section=Section(text="TEXT"), partial=(0, 2048)), "BODY[TEXT]<0.2048>"),
        (FetchBody(section=Section(part=(1,)), binary=True, peek=True), "BINARY.PEEK[1]"),
        (FetchBinarySize(part=(1, 3)), "BINARY.SIZE[1.3]"),
        (FetchAttribute(name="RFC822.SIZE"), "RFC822.SIZE"),
    ],
)
def test_wire_form(item: object, wire: str) -> None:
    assert str(item) == wire


@pytest.mark.parametrize(
    "make",
    [
        lambda: Section(part=(0,)),
        lambda: Section(text="MIME"),
        lambda: Section(text="HEADER.FIELDS"),
        lambda: Section(text="HEADER.FIELDS", fields=("a:b",)),
        lambda: Section(text="HEADER.FIELDS", fields=("",)),
        lambda: Section(text="HEADER", fields=("From",)),
        lambda: Section(text="BODY"),  # type: ignore[arg-type]
        lambda: FetchBody(section=Section(text="TEXT"), binary=True),
        lambda: FetchBody(partial=(0, 0)),
        lambda: FetchBody(partial=(-1, 5)),
        lambda: FetchBody(partial=(0, 2**63)),
        lambda: FetchBinarySize(part=(2**32,)),
        lambda: FetchAttribute(name="flags"),
    ],
)
def test_invalid_values_refused(make: object) -> None:
    with pytest.raises(LocalProtocolError):
        make()  # type: ignore[operator]


def test_macros() -> None:
    assert [str(i) for i in expand_macro("ALL")] == [
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
        "ENVELOPE",
    ]
    assert [str(i) for i in expand_macro("FULL")][-1] == "BODY"
    assert all(i.name in ATTRIBUTE_NAMES for i in expand_macro("FULL"))
