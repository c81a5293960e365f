"""``sequence-set`` (RFC 9051 §9) as data, never expanded.

A set is kept as the ranges it was written with: ``1:4294967295`` is one range, not four
billion numbers, and ``*`` (the largest number in use) stays ``None`` until the caller
says what it stands for. RFC 9051 §9: ``seq-range`` "2:4" and "4:2" are equivalent, and
"the server should respond with message numbers in use"; both orders are kept as read.
``$`` (RFC 5182 SEARCHRES, "the saved search result") is ``saved=True`` with no ranges.

Pure data, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mailagents._protocol import LocalProtocolError

__all__ = ["MAX_NUMBER", "SequenceSet"]

MAX_NUMBER = 4294967295
"""``nz-number`` is at most 2^32 - 1 (RFC 9051 §9, ``number``)."""

_SET = re.compile(rb"(?:\d+|\*)(?::(?:\d+|\*))?(?:,(?:\d+|\*)(?::(?:\d+|\*))?)*")

Bound = int | None


def _bound(text: bytes) -> Bound:
    if text == b"*":
        return None
    value = int(text)
    if not 0 < value <= MAX_NUMBER:
        raise ValueError(f"sequence number out of range: {text!r}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class SequenceSet:
    """A ``sequence-set``: ``ranges`` of ``(first, last)`` in wire order, a single number
    ``n`` as ``(n, n)``, ``*`` as ``None``; or ``saved=True`` (``$``, RFC 5182) with no
    ranges."""

    ranges: tuple[tuple[Bound, Bound], ...] = ()
    saved: bool = False

    def __post_init__(self) -> None:
        if self.saved:
            if self.ranges:
                raise LocalProtocolError("a saved-result SequenceSet ($) has no ranges")
            return
        if not self.ranges:
            raise LocalProtocolError("a SequenceSet holds at least one range")
        for first, last in self.ranges:
            for bound in (first, last):
                if bound is not None and (type(bound) is not int or not 0 < bound <= MAX_NUMBER):
                    raise LocalProtocolError(f"sequence number out of range: {bound!r}")

    @classmethod
    def parse(cls, text: str | bytes) -> SequenceSet:
        """Read the wire form (``ValueError`` if it is not a ``sequence-set`` or ``$``)."""
        data = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
        if data == b"$":
            return cls(saved=True)
        if not _SET.fullmatch(data):
            raise ValueError(f"not a sequence-set: {data[:50]!r}")
        ranges: list[tuple[Bound, Bound]] = []
        for item in data.split(b","):
            first, sep, last = item.partition(b":")
            low = _bound(first)
            ranges.append((low, _bound(last) if sep else low))
        return cls(ranges=tuple(ranges))

    @classmethod
    def from_numbers(cls, numbers: Iterable[int]) -> SequenceSet:
        """The shortest set holding exactly ``numbers`` (sorted, runs compressed:
        ``1,2,3,7`` is ``1:3,7``)."""
        ordered = sorted(set(numbers))
        if not ordered:
            raise LocalProtocolError("a SequenceSet holds at least one number")
        ranges: list[tuple[Bound, Bound]] = []
        start = prev = ordered[0]
        for n in ordered[1:]:
            if n != prev + 1:
                ranges.append((start, prev))
                start = n
            prev = n
        ranges.append((start, prev))
        return cls(ranges=tuple(ranges))

    def _intervals(self, largest: int) -> list[tuple[int, int]]:
        """The ranges with ``*`` resolved, ordered and merged, clipped to ``largest``."""
        if self.saved:
            raise LocalProtocolError("the saved search result ($) has no numbers of its own")
        spans = []
        for first, last in self.ranges:
            a = largest if first is None else first
            b = largest if last is None else last
            if a > b:
                a, b = b, a
            a = max(a, 1)
            b = min(b, largest)
            if a <= b:
                spans.append((a, b))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1] + 1:
                if b > merged[-1][1]:
                    merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        return merged

    def contains(self, n: int, largest: int) -> bool:
        """Whether ``n`` is in the set when ``*`` stands for ``largest`` (RFC 9051 §9:
        ``*`` is the largest number in use; a range is the same in either order)."""
        if self.saved:
            raise LocalProtocolError("the saved search result ($) has no numbers of its own")
        if n < 1:
            return False
        for first, last in self.ranges:
            a = largest if first is None else first
            b = largest if last is None else last
            if a <= n <= b or b <= n <= a:
                return True
        return False

    def iter_numbers(self, largest: int) -> Iterator[int]:
        """The numbers of the set up to ``largest`` (``*`` is ``largest``), ascending,
        each once; the caller's ``largest`` bounds the work."""
        for a, b in self._intervals(largest):
            yield from range(a, b + 1)

    def __str__(self) -> str:
        if self.saved:
            return "$"
        parts = []
        for first, last in self.ranges:
            a = "*" if first is None else str(first)
            if first == last:
                parts.append(a)
            else:
                parts.append(f"{a}:{'*' if last is None else last}")
        return ",".join(parts)
