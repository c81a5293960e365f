"""SEARCH, SORT and THREAD criteria as a tree (RFC 9051 §6.4.4, formal syntax in §9).

A ``search-key`` is one of a few shapes, each a frozen dataclass:

- ``FlagKey``, the keys without an argument (``ALL``, ``SEEN``, ``UNDRAFT``, and
  IMAP4rev1's ``NEW``, ``OLD``, ``RECENT``, RFC 3501 §6.4.4);
- ``TextKey`` (``BCC``, ``BODY``, ``CC``, ``FROM``, ``SUBJECT``, ``TEXT``, ``TO``)
  and ``HeaderKey`` (``HEADER field value``);
- ``DateKey`` (``BEFORE``, ``ON``, ``SINCE`` and the ``SENT*`` keys), whose dates
  carry no time and no zone;
- ``SizeKey`` (``LARGER``, ``SMALLER``, ``number64`` in IMAP4rev2);
- ``KeywordKey`` (``KEYWORD``, ``UNKEYWORD``);
- ``SetKey``: a bare ``sequence-set`` (message numbers) or ``UID sequence-set``;
  ``$`` (RFC 5182 SEARCHRES) is a set with ``saved=True``;
- ``ModSeqKey`` (RFC 7162 §3.1.5: ``MODSEQ ["/flags/\\Seen" all] 620162338``);
- ``Not``, ``Or`` and ``And`` (the parenthesised list; the keys of a
  command's top level are ANDed too, and kept as a plain tuple there).

Text values are ``str``: the octets as sent, decoded as UTF-8 with ``surrogateescape``,
so a search in another ``CHARSET`` keeps its octets; charset handling is the server's.

``SortCriterion`` is one ``sort-criterion`` of RFC 5256 §5 (and RFC 5957's
``DISPLAYFROM``/``DISPLAYTO``).

Pure data, no I/O.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal, TypeAlias

from mailagents._protocol import LocalProtocolError
from mailagents.imap._seqset import SequenceSet

__all__ = [
    "FLAG_KEYS",
    "has_modseq_key",
    "SORT_KEYS",
    "And",
    "DateKey",
    "FlagKey",
    "HeaderKey",
    "KeywordKey",
    "ModSeqKey",
    "Not",
    "Or",
    "SearchKey",
    "SetKey",
    "SizeKey",
    "SortCriterion",
    "TextKey",
    "search_depth",
]

FLAG_KEYS: frozenset[str] = frozenset(
    {
        "ALL",
        "ANSWERED",
        "DELETED",
        "DRAFT",
        "FLAGGED",
        "SEEN",
        "UNANSWERED",
        "UNDELETED",
        "UNDRAFT",
        "UNFLAGGED",
        "UNSEEN",
        "NEW",
        "OLD",
        "RECENT",
    }
)
"""The search keys without an argument (``NEW``, ``OLD`` and ``RECENT`` are IMAP4rev1
only: RFC 9051 Appendix E drops ``\\Recent``)."""

TextKeyName: TypeAlias = Literal["BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"]
DateKeyName: TypeAlias = Literal["BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"]
TEXT_KEYS: frozenset[str] = frozenset({"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"})
DATE_KEYS: frozenset[str] = frozenset(
    {"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"}
)

SORT_KEYS: frozenset[str] = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
"""``sort-key`` of RFC 5256 §5 with ``DISPLAYFROM`` and ``DISPLAYTO`` (RFC 5957)."""

_NUMBER64_MAX = 2**63 - 1


def _check_text(value: str, what: str) -> None:
    if "\x00" in value:
        raise LocalProtocolError(f"{what} must not hold NUL")


@dataclass(frozen=True, slots=True, kw_only=True)
class FlagKey:
    """A search key without an argument; ``name`` is one of ``FLAG_KEYS``."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in FLAG_KEYS:
            raise LocalProtocolError(f"{self.name!r} is not a search key without argument")


@dataclass(frozen=True, slots=True, kw_only=True)
class TextKey:
    """``BCC``/``BODY``/``CC``/``FROM``/``SUBJECT``/``TEXT``/``TO`` ``astring``: the
    messages whose field or text contains ``value`` (RFC 9051 §6.4.4)."""

    name: TextKeyName
    value: str

    def __post_init__(self) -> None:
        if self.name not in TEXT_KEYS:
            raise LocalProtocolError(f"{self.name!r} is not a text search key")
        _check_text(self.value, "TextKey.value")


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderKey:
    """``HEADER field-name value``; an empty ``value`` matches every message that has
    the field (RFC 9051 §6.4.4)."""

    field: str
    value: str

    def __post_init__(self) -> None:
        _check_text(self.field, "HeaderKey.field")
        _check_text(self.value, "HeaderKey.value")


@dataclass(frozen=True, slots=True, kw_only=True)
class DateKey:
    """``BEFORE``/``ON``/``SINCE`` (the internal date) and ``SENTBEFORE``/``SENTON``/
    ``SENTSINCE`` (the Date: field), each with a ``date``, "disregarding time and
    timezone" (RFC 9051 §6.4.4)."""

    name: DateKeyName
    date: datetime.date

    def __post_init__(self) -> None:
        if self.name not in DATE_KEYS:
            raise LocalProtocolError(f"{self.name!r} is not a date search key")
        if type(self.date) is not datetime.date:
            raise LocalProtocolError("DateKey.date must be a datetime.date (not a datetime)")


@dataclass(frozen=True, slots=True, kw_only=True)
class SizeKey:
    """``LARGER n``/``SMALLER n``: RFC822.SIZE above or below ``size`` (``number64``)."""

    name: Literal["LARGER", "SMALLER"]
    size: int

    def __post_init__(self) -> None:
        if self.name not in ("LARGER", "SMALLER"):
            raise LocalProtocolError(f"{self.name!r} is not a size search key")
        if not 0 <= self.size <= _NUMBER64_MAX:
            raise LocalProtocolError("SizeKey.size is a number64 (0 to 2^63-1)")


@dataclass(frozen=True, slots=True, kw_only=True)
class KeywordKey:
    """``KEYWORD flag-keyword``/``UNKEYWORD flag-keyword`` (an atom, as written)."""

    name: Literal["KEYWORD", "UNKEYWORD"]
    keyword: str

    def __post_init__(self) -> None:
        if self.name not in ("KEYWORD", "UNKEYWORD"):
            raise LocalProtocolError(f"{self.name!r} is not a keyword search key")
        if not self.keyword or self.keyword.startswith("\\"):
            raise LocalProtocolError("KeywordKey.keyword is a flag-keyword atom")


@dataclass(frozen=True, slots=True, kw_only=True)
class SetKey:
    """A bare ``sequence-set`` (``uid=False``: message sequence numbers) or
    ``UID sequence-set``; ``$`` (RFC 5182 §2.1) is ``SequenceSet(saved=True)``."""

    set: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ModSeqKey:
    """``MODSEQ [entry-name entry-type-req] mod-sequence-valzer`` (RFC 7162 §3.1.5): the
    messages whose mod-sequence is at least ``modseq``; ``entry`` is the metadata item
    (``/flags/\\Seen``), ``entry_type`` ``priv``, ``shared`` or ``all`` (lower case as
    in the RFC; the parser folds case). Both or neither."""

    modseq: int
    entry: str | None = None
    entry_type: Literal["priv", "shared", "all"] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.modseq <= _NUMBER64_MAX:
            raise LocalProtocolError("ModSeqKey.modseq is a mod-sequence-valzer (0 to 2^63-1)")
        if (self.entry is None) != (self.entry_type is None):
            raise LocalProtocolError("ModSeqKey.entry and entry_type go together (RFC 7162 §7)")
        if self.entry_type is not None and self.entry_type not in ("priv", "shared", "all"):
            raise LocalProtocolError("ModSeqKey.entry_type is priv, shared or all")
        if self.entry is not None:
            _check_text(self.entry, "ModSeqKey.entry")


@dataclass(frozen=True, slots=True, kw_only=True)
class Not:
    """``NOT search-key``."""

    key: SearchKey


@dataclass(frozen=True, slots=True, kw_only=True)
class Or:
    """``OR search-key search-key``."""

    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True, kw_only=True)
class And:
    """``"(" search-key *(SP search-key) ")"``: every key must match; at least one."""

    keys: tuple[SearchKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise LocalProtocolError("a parenthesised search list holds at least one key")


SearchKey: TypeAlias = (
    FlagKey
    | TextKey
    | HeaderKey
    | DateKey
    | SizeKey
    | KeywordKey
    | SetKey
    | ModSeqKey
    | Not
    | Or
    | And
)
"""One ``search-key``."""


def search_depth(keys: tuple[SearchKey, ...]) -> int:
    """How deeply ``keys`` nest (a flat list is 1; each ``NOT``, ``OR`` and parenthesised
    list adds one). Iterative, so any tree can be measured."""
    deepest = 0
    stack: list[tuple[SearchKey, int]] = [(k, 1) for k in keys]
    while stack:
        key, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(key, Not):
            stack.append((key.key, depth + 1))
        elif isinstance(key, Or):
            stack.append((key.left, depth + 1))
            stack.append((key.right, depth + 1))
        elif isinstance(key, And):
            stack.extend((k, depth + 1) for k in key.keys)
    return deepest


def has_modseq_key(keys: tuple[SearchKey, ...]) -> bool:
    """Whether the criteria hold a MODSEQ key anywhere (RFC 7162 §3.1.5: only then does
    the SEARCH response carry ``(MODSEQ n)``, and such a SEARCH turns CONDSTORE on).
    Iterative, so any tree can be searched."""
    stack: list[SearchKey] = list(keys)
    while stack:
        key = stack.pop()
        if isinstance(key, ModSeqKey):
            return True
        if isinstance(key, Not):
            stack.append(key.key)
        elif isinstance(key, Or):
            stack += (key.left, key.right)
        elif isinstance(key, And):
            stack.extend(key.keys)
    return False


@dataclass(frozen=True, slots=True, kw_only=True)
class SortCriterion:
    """``["REVERSE" SP] sort-key`` (RFC 5256 §5); ``key`` is one of ``SORT_KEYS``."""

    key: str
    reverse: bool = False

    def __post_init__(self) -> None:
        if self.key not in SORT_KEYS:
            raise LocalProtocolError(f"{self.key!r} is not a sort key (RFC 5256, RFC 5957)")
