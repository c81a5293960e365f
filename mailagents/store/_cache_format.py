"""The on-disk form of a folder's message cache (see ``_cache``): a file header and
appended records, each checked by CRC-32.

File::

    header  = "MACACHE" %x01 version:u32 uidvalidity:u32 crc32:u32   ; 20 octets
    record* = "MR" kind:u8 0:u8 length:u32 uid:u32 uidvalidity:u32 payload crc32:u32

All integers big-endian; a record's CRC covers everything before it in the record, so
a record cut short by a crash, or still being written, fails it. ``kind`` 1 is an entry
(its payload below), 2 a tombstone (empty payload: the UID's entry is gone). The
latest record of a UID wins.

Entry payload: varints and length-prefixed UTF-8 (a text is 0 for absent, else its
length + 1, then the octets)::

    size  10 field*10  references  base-subject  date  part-map

``size`` is the message's CRLF size (checked against the caller's at every read), the
fields those of ``ENVELOPE_FIELDS`` in order, ``date`` 0 when absent, else 1, the UTC
POSIX seconds + 2**40 and the zone's offset in minutes + 2**20, and ``part-map``, to
the record's end, what ``PartMap.to_bytes`` wrote (last, so that SEARCH and SORT read
the fields without decoding it).

Pure computation, no I/O.
"""

from __future__ import annotations

import datetime
import struct
import zlib
from dataclasses import dataclass, field

from mailagents.imap._mime import ENVELOPE_FIELDS, PartMap, PartMapError
from mailagents.imap._varint import VarintReader, put_number, put_text
from mailagents.store._cache_subject import base_subject, sent_date

__all__ = [
    "DROP",
    "ENTRY",
    "FILE_HEADER",
    "RECORD_HEAD",
    "CacheFormatError",
    "CachedMessage",
    "decode_entry",
    "decode_header",
    "encode_entry",
    "encode_header",
    "encode_record",
    "record_at",
]

MAGIC = b"MACACHE\x01"
VERSION = 0x0100 + PartMap.VERSION
"""The file format's version: ours in the high octet, ``PartMap.VERSION`` in the low
one (a library whose part maps differ starts the file afresh)."""
FILE_HEADER = struct.Struct(">8sII")
HEADER_SIZE = FILE_HEADER.size + 4
RECORD_HEAD = struct.Struct(">2sBBIII")
RECORD_OVERHEAD = RECORD_HEAD.size + 4
ENTRY = 1
DROP = 2
MAX_PAYLOAD = 64 << 20
"""A record longer than this is taken as damage, not read (a part map of the
scanner's 10,000 parts with their fields is well below)."""

_DATE_BIAS = 1 << 40
_ZONE_BIAS = 1 << 20
_INDEX = {name: i for i, name in enumerate(ENVELOPE_FIELDS)}


class CacheFormatError(ValueError):
    """Cache octets that are not valid (wrong magic or version, a CRC that fails,
    figures out of range)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedMessage:
    """What the cache keeps of one message: the header fields SEARCH, SORT and
    ENVELOPE use (``fields``, the unfolded values of ``ENVELOPE_FIELDS`` of the
    message; ``references``, for THREAD=REFERENCES), the RFC 5256 base subject, the
    parsed Date (``None`` when absent or unreadable), and the MIME part map
    (offsets and ``Content-*`` fields, from which BODYSTRUCTURE and every
    ``BODY[section]`` span follow). The part map is kept serialised and read on first
    use of :attr:`part_map`, so that SEARCH and SORT over many messages do not pay
    for it."""

    uid: int
    size: int
    """The message's CRLF size (RFC822.SIZE)."""
    fields: tuple[str | None, ...]
    references: str | None
    base_subject: str
    sent_date: datetime.datetime | None
    part_map_bytes: bytes = field(repr=False)
    """What ``PartMap.to_bytes`` wrote."""
    _memo: dict[str, PartMap] = field(default_factory=dict, init=False, compare=False, repr=False)

    @classmethod
    def of(cls, uid: int, part_map: PartMap, references: str | None) -> CachedMessage:
        """The entry of a message whose part map and References value are known."""
        envelope = part_map.root.envelope or (None,) * len(ENVELOPE_FIELDS)
        entry = cls(
            uid=uid,
            size=part_map.crlf_size,
            fields=envelope,
            references=references,
            base_subject=base_subject(envelope[1]),
            sent_date=sent_date(envelope[0]),
            part_map_bytes=part_map.to_bytes(),
        )
        entry._memo["map"] = part_map
        return entry

    @property
    def part_map(self) -> PartMap:
        """The part map (read back once, then kept). :class:`CacheFormatError` if the
        stored form does not read back, which a record that passed its CRC under this
        file version never does."""
        found = self._memo.get("map")
        if found is None:
            try:
                found = PartMap.from_bytes(self.part_map_bytes)
            except PartMapError as exc:
                raise CacheFormatError(f"cached part map: {exc}") from exc
            self._memo["map"] = found
        return found

    def header(self, name: str) -> str | None:
        """The unfolded value of ``References`` or of one of the ENVELOPE fields
        (``Date``, ``Subject``, ``From``, ``Sender``, ``Reply-To``, ``To``, ``Cc``,
        ``Bcc``, ``In-Reply-To``, ``Message-ID``; repeated address fields joined by
        LF), ``None`` when the message has none. :class:`KeyError` for another name."""
        key = name.lower()
        if key == "references":
            return self.references
        return self.fields[_INDEX[key]]


def encode_header(uidvalidity: int) -> bytes:
    """A file header for ``uidvalidity``."""
    head = FILE_HEADER.pack(MAGIC, VERSION, uidvalidity)
    return head + struct.pack(">I", zlib.crc32(head))


def decode_header(data: bytes) -> int:
    """The UIDVALIDITY of a file header; :class:`CacheFormatError` if not valid."""
    if len(data) < HEADER_SIZE:
        raise CacheFormatError("cache header cut short")
    head = data[: FILE_HEADER.size]
    magic, version, uidvalidity = FILE_HEADER.unpack(head)
    (crc,) = struct.unpack_from(">I", data, FILE_HEADER.size)
    if magic != MAGIC or crc != zlib.crc32(head):
        raise CacheFormatError("not a cache header")
    if version != VERSION:
        raise CacheFormatError(f"cache version {version} is not {VERSION}")
    return int(uidvalidity)


def encode_record(kind: int, uid: int, uidvalidity: int, payload: bytes = b"") -> bytes:
    """One record, its CRC included."""
    head = RECORD_HEAD.pack(b"MR", kind, 0, len(payload), uid, uidvalidity)
    body = head + payload
    return body + struct.pack(">I", zlib.crc32(body))


def record_at(data: bytes | memoryview, pos: int) -> tuple[int, int, int, int, int] | None:
    """The record at ``pos`` of ``data``: ``(kind, uid, uidvalidity, payload_start,
    end)``. ``None`` when ``data`` ends before the record does (a tail still being
    written, or cut off); :class:`CacheFormatError` when the octets there are not a
    record (bad framing, or a CRC that fails)."""
    if len(data) - pos < RECORD_HEAD.size:
        return None
    magic, kind, zero, length, uid, uidvalidity = RECORD_HEAD.unpack_from(data, pos)
    if magic != b"MR" or kind not in (ENTRY, DROP) or zero or length > MAX_PAYLOAD:
        raise CacheFormatError("not a cache record")
    end = pos + RECORD_HEAD.size + length + 4
    if end > len(data):
        return None
    (crc,) = struct.unpack_from(">I", data, end - 4)
    if crc != zlib.crc32(data[pos : end - 4]):
        raise CacheFormatError("cache record CRC fails")
    return kind, uid, uidvalidity, pos + RECORD_HEAD.size, end


def encode_entry(message: CachedMessage) -> bytes:
    """The payload of an entry record."""
    out = bytearray()
    put_number(out, message.size)
    put_number(out, len(message.fields))
    for text in message.fields:
        put_text(out, text, "surrogatepass")
    put_text(out, message.references, "surrogatepass")
    put_text(out, message.base_subject, "surrogatepass")
    date = message.sent_date
    if date is None:
        out.append(0)
    else:
        offset = date.utcoffset() or datetime.timedelta()
        out.append(1)
        put_number(out, int(date.timestamp()) + _DATE_BIAS)
        put_number(out, int(offset.total_seconds()) // 60 + _ZONE_BIAS)
    out += message.part_map_bytes
    return bytes(out)


def decode_entry(uid: int, payload: bytes) -> CachedMessage:
    """Read back :func:`encode_entry`; :class:`CacheFormatError` if not valid. The part
    map is checked for its magic and version only (it is read on first use)."""
    cur = VarintReader(payload, error=CacheFormatError, what="cache entry")
    size = cur.number()
    if cur.number() != len(ENVELOPE_FIELDS):
        raise CacheFormatError("cache entry fields of the wrong length")
    fields = tuple(cur.text("surrogatepass") for _ in ENVELOPE_FIELDS)
    references = cur.text("surrogatepass")
    subject = cur.text("surrogatepass")
    date: datetime.datetime | None = None
    flag = cur.number()
    if flag:
        seconds = cur.number() - _DATE_BIAS
        minutes = cur.number() - _ZONE_BIAS
        try:
            zone = datetime.timezone(datetime.timedelta(minutes=minutes))
            date = datetime.datetime.fromtimestamp(seconds, zone)
        except (ValueError, OverflowError, OSError) as exc:
            raise CacheFormatError("cached date out of range") from exc
    part_map = payload[cur.pos :]
    if flag > 1 or subject is None or part_map[:4] != b"MPM" + bytes([PartMap.VERSION]):
        raise CacheFormatError("cache entry not valid")
    return CachedMessage(
        uid=uid,
        size=size,
        fields=fields,
        references=references,
        base_subject=subject,
        sent_date=date,
        part_map_bytes=part_map,
    )
