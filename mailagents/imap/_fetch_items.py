"""FETCH data items and body sections as data (RFC 9051 §6.4.5, formal syntax in §9).

The same classes serve the command side (``FETCH 1 BODY.PEEK[1.2.HEADER]<0.100>``) and
the response side (``* 1 FETCH (BODY[1.2.HEADER]<0> {100}...)``, where only the origin
of a partial fetch is repeated): ``Section`` is the part between the brackets.

The relevant rules of RFC 9051 §9::

    fetch-att       = "ENVELOPE" / "FLAGS" / "INTERNALDATE" /
                      "RFC822.SIZE" /
                      "BODY" ["STRUCTURE"] / "UID" /
                      "BODY" section [partial] /
                      "BODY.PEEK" section [partial] /
                      "BINARY" [".PEEK"] section-binary [partial] /
                      "BINARY.SIZE" section-binary
    section         = "[" [section-spec] "]"
    section-spec    = section-msgtext / (section-part ["." section-text])
    section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list / "TEXT"
    section-part    = nz-number *("." nz-number)
    section-text    = section-msgtext / "MIME"
    section-binary  = "[" [section-part] "]"
    partial         = "<" number64 "." nz-number64 ">"

``MIME`` needs a part number (it is the MIME header of a body part); ``BINARY`` takes
part numbers only (RFC 3516 §4.1). IMAP4rev1 (RFC 3501) adds ``RFC822``,
``RFC822.HEADER`` and ``RFC822.TEXT``; CONDSTORE adds ``MODSEQ`` (RFC 7162 §3.1.4),
OBJECTID ``EMAILID`` and ``THREADID`` (RFC 8474), SAVEDATE ``SAVEDATE`` (RFC 8514).

Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from mailagents._protocol import LocalProtocolError

__all__ = [
    "ATTRIBUTE_NAMES",
    "MACROS",
    "FetchAttribute",
    "FetchBinarySize",
    "FetchBody",
    "FetchItem",
    "FetchMacro",
    "Section",
    "SectionText",
    "expand_macro",
]

SectionText: TypeAlias = Literal["HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"]
"""The text part of a ``section-spec``; ``None`` in ``Section`` means the whole
part (``BODY[]``, ``BODY[1.2]``)."""

SECTION_TEXTS: frozenset[str] = frozenset(
    {"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"}
)

ATTRIBUTE_NAMES: frozenset[str] = frozenset(
    {
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.TEXT",
        "MODSEQ",
        "EMAILID",
        "THREADID",
        "SAVEDATE",
    }
)
"""The FETCH data items without a section, upper case as ``FetchAttribute`` keeps
them."""

FetchMacro: TypeAlias = Literal["ALL", "FAST", "FULL"]
"""The FETCH macros (RFC 9051 §6.4.5), kept as written in a command."""

MACROS: dict[str, tuple[str, ...]] = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
"""What each macro stands for (RFC 9051 §6.4.5)."""

_NUMBER64_MAX = 2**63 - 1


def _field_ok(name: str) -> bool:
    # RFC 5322 §3.6.8: ftext = %d33-57 / %d59-126 (printable US-ASCII but ":").
    return bool(name) and all("\x21" <= c <= "\x7e" and c != ":" for c in name)


_ATOM_SPECIALS = frozenset('(){ %*"\\]')


def _astring_wire(text: str) -> str:
    if text and not any(c in _ATOM_SPECIALS for c in text) and text.upper() != "NIL":
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True, kw_only=True)
class Section:
    """The ``section`` of ``BODY[...]``/``BINARY[...]``: what lies between the brackets.

    ``part`` is the ``section-part`` (``()`` for the message itself), ``text`` the
    ``section-text`` or ``None`` for the whole part, ``fields`` the ``header-list`` of
    ``HEADER.FIELDS`` and ``HEADER.FIELDS.NOT`` (as written, compared without regard to
    case by the server) and ``()`` otherwise.

    ``str(section)`` is its wire form without the brackets (``1.2.HEADER.FIELDS (From
    To)``); header names that are not atoms are quoted.
    """

    part: tuple[int, ...] = ()
    text: SectionText | None = None
    fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if any(not 1 <= n <= 0xFFFFFFFF for n in self.part):
            raise LocalProtocolError("Section.part numbers must be 1 to 4294967295")
        if self.text is not None and self.text not in SECTION_TEXTS:
            raise LocalProtocolError(f"Section.text {self.text!r} is not a section-text")
        if self.text == "MIME" and not self.part:
            raise LocalProtocolError("Section MIME needs a part number (RFC 9051 §6.4.5)")
        if self.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            if not self.fields:
                raise LocalProtocolError("HEADER.FIELDS needs at least one field name")
            if not all(_field_ok(f) for f in self.fields):
                raise LocalProtocolError(
                    "Section.fields must be header field names (RFC 5322 §3.6.8 ftext)"
                )
        elif self.fields:
            raise LocalProtocolError("Section.fields only go with HEADER.FIELDS[.NOT]")

    def __str__(self) -> str:
        out = ".".join(str(n) for n in self.part)
        if self.text is not None:
            out = f"{out}.{self.text}" if out else self.text
        if self.fields:
            out += " (" + " ".join(_astring_wire(f) for f in self.fields) + ")"
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchAttribute:
    """A FETCH data item without a section: ``name`` is one of
    ``ATTRIBUTE_NAMES`` (upper case), e.g. ``FLAGS``, ``BODYSTRUCTURE``,
    ``RFC822.SIZE``."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in ATTRIBUTE_NAMES:
            raise LocalProtocolError(f"{self.name!r} is not a FETCH attribute name")

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchBody:
    """``BODY[section]<partial>``, ``BODY.PEEK[...]`` (``peek``, which does not set
    ``\\Seen``), ``BINARY[...]`` and ``BINARY.PEEK[...]`` (``binary``, RFC 3516 §4.1: the
    content transfer encoding undone; the section is part numbers only).

    ``partial`` is ``(origin, length)`` of ``<origin.length>``; in a FETCH *response*
    only the origin is echoed (RFC 9051 §7.5.2), which the responses model keeps on
    its own.
    """

    section: Section = Section()
    partial: tuple[int, int] | None = None
    peek: bool = False
    binary: bool = False

    def __post_init__(self) -> None:
        if self.binary and self.section.text is not None:
            raise LocalProtocolError("BINARY takes part numbers only (RFC 3516 §4.1)")
        if self.partial is not None:
            origin, length = self.partial
            if not 0 <= origin <= _NUMBER64_MAX or not 1 <= length <= _NUMBER64_MAX:
                raise LocalProtocolError(
                    "FetchBody.partial is (number64, nz-number64) (RFC 9051 §9 partial)"
                )

    def __str__(self) -> str:
        name = "BINARY" if self.binary else "BODY"
        if self.peek:
            name += ".PEEK"
        out = f"{name}[{self.section}]"
        if self.partial is not None:
            out += f"<{self.partial[0]}.{self.partial[1]}>"
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchBinarySize:
    """``BINARY.SIZE[part]`` (RFC 3516 §4.2): the size of a part once decoded."""

    part: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if any(not 1 <= n <= 0xFFFFFFFF for n in self.part):
            raise LocalProtocolError("FetchBinarySize.part numbers must be 1 to 4294967295")

    def __str__(self) -> str:
        return "BINARY.SIZE[" + ".".join(str(n) for n in self.part) + "]"


FetchItem: TypeAlias = FetchAttribute | FetchBody | FetchBinarySize
"""One FETCH data item of a command."""


def expand_macro(macro: FetchMacro) -> tuple[FetchAttribute, ...]:
    """The items a FETCH macro stands for (RFC 9051 §6.4.5).

    >>> [str(i) for i in expand_macro("FAST")]
    ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE']
    """
    return tuple(FetchAttribute(name=n) for n in MACROS[macro])
