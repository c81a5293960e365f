"""The data of one FETCH response (RFC 9051 §7.5.2, ``msg-att`` in §9).

``FetchData`` has a field per data item a server sends; an item the response did
not carry is ``None`` (or ``()``). Body octets (``BODY[section]<origin>``,
``BINARY[part]``, ``RFC822``, ``RFC822.HEADER``, ``RFC822.TEXT``) are
``BodySection`` entries in wire order, their octets ``bytes`` or the ``Streamed``
placeholder of a literal passed on as chunks. ENVELOPE and BODY/BODYSTRUCTURE are the
classes of ``mailagents.imap._body_model``. Items this library does not know are
kept in ``extensions`` as read (RFC 9051 §7.5.2 allows extension items).

Pure data, no I/O.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal, TypeAlias

from mailagents._protocol import LocalProtocolError
from mailagents.imap._body_model import Body, Envelope
from mailagents.imap._fetch_items import Section
from mailagents.imap._frame import Streamed

__all__ = ["BodySection", "ExtValue", "FetchData", "SectionName"]

ExtValue: TypeAlias = "str | int | bytes | Streamed | tuple[ExtValue, ...] | None"
"""An extension's data as read: an atom or string (``str``), a number, a literal's
octets, ``NIL`` (``None``) or a parenthesised list."""

SectionName: TypeAlias = Literal["BODY", "BINARY", "RFC822", "RFC822.HEADER", "RFC822.TEXT"]
"""Which item a ``BodySection`` is."""

_MAX32 = 4294967295
_WHOLE = Section()


@dataclass(frozen=True, slots=True, kw_only=True)
class BodySection:
    """Octets of the message: ``BODY[section]<origin>`` (``name`` ``"BODY"``),
    ``BINARY[part]<origin>`` (``"BINARY"``, RFC 3516: the content transfer encoding
    undone; only part numbers in ``section``), or one of IMAP4rev1's ``RFC822``,
    ``RFC822.HEADER``, ``RFC822.TEXT`` (no section, no origin).

    ``origin`` is the ``<n>`` a partial fetch echoes (RFC 9051 §7.5.2: only the start
    is repeated, the length is the literal's); ``data`` is ``None`` for NIL.
    """

    name: SectionName = "BODY"
    section: Section = _WHOLE
    origin: int | None = None
    data: bytes | Streamed | None = None

    def __post_init__(self) -> None:
        if self.name not in ("BODY", "BINARY") and (self.section != _WHOLE or self.origin):
            raise LocalProtocolError(f"{self.name} takes no section and no origin")
        if self.name == "BINARY" and self.section.text is not None:
            raise LocalProtocolError("BINARY takes part numbers only (RFC 3516 §4.1)")
        if self.origin is not None and (type(self.origin) is not int or self.origin < 0):
            raise LocalProtocolError("BodySection.origin must be a number")


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchData:
    """``* n FETCH (...)``: ``number`` is the message sequence number.

    ``body`` is the non-extensible BODY (``extended`` false in its parts),
    ``bodystructure`` BODYSTRUCTURE; ``binary_sizes`` maps part numbers to
    ``BINARY.SIZE`` (RFC 3516 §4.2); ``modseq`` is RFC 7162 §3.1.4's ``MODSEQ (n)``;
    ``preview`` RFC 8970's PREVIEW (``None`` also for NIL: no preview available).
    """

    number: int
    flags: tuple[str, ...] | None = None
    uid: int | None = None
    internaldate: datetime.datetime | None = None
    rfc822_size: int | None = None
    envelope: Envelope | None = None
    body: Body | None = None
    bodystructure: Body | None = None
    sections: tuple[BodySection, ...] = ()
    binary_sizes: tuple[tuple[tuple[int, ...], int], ...] = ()
    modseq: int | None = None
    preview: str | None = None
    extensions: tuple[tuple[str, ExtValue], ...] = ()

    def __post_init__(self) -> None:
        if type(self.number) is not int or not 0 < self.number <= _MAX32:
            raise LocalProtocolError("FetchData.number must be an nz-number")

    def section(
        self, section: Section = _WHOLE, *, name: SectionName = "BODY"
    ) -> bytes | Streamed | None:
        """The octets of the first ``name[section]`` item (``None`` if absent or NIL)."""
        for item in self.sections:
            if item.name == name and item.section == section:
                return item.data
        return None
