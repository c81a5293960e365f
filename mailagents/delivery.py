"""The delivery interface every agent shares: a message handed over with its envelope
(:class:`Handoff`), and one :class:`RecipientResult` per recipient back.

The MSA hands what it accepted to a delivery callable (:data:`Deliver`); the MDA is one,
the LMTP server answers each recipient from its results, the queue will be one. The
message is a :class:`Message`: in memory while small, in an unnamed temporary file
above a threshold (:class:`MessageSpool` collects it as it arrives), so that no agent
holds a large message whole in memory. Headers an agent adds (``Received:``,
``Return-Path:``) are spliced in front of or into the header section without copying
the content (:meth:`Message.prepend`, :meth:`Message.insert_at_header_end`).

This module touches the disk (the spool file) and is in layer 2, beside the stores.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Literal

from mailagents.smtp import Envelope, Recipient, Reply

__all__ = [
    "HEADER_LIMIT",
    "MEMORY_LIMIT",
    "Deliver",
    "DeliveryStatus",
    "Handoff",
    "Message",
    "MessageSpool",
    "RecipientResult",
    "all_delivered",
]

DeliveryStatus = Literal["delivered", "temporary", "permanent"]
"""A recipient's fate: its copy is durable (``"delivered"``), it may succeed later
(``"temporary"``, a 4xx reply), or it never will (``"permanent"``, a 5xx reply)."""

_CLASS_OF: dict[DeliveryStatus, int] = {"delivered": 2, "temporary": 4, "permanent": 5}
_DELIVERED = Reply(code=250, enhanced="2.0.0", lines=("Delivered",))

MEMORY_LIMIT = 1 << 20
"""The default size up to which a :class:`MessageSpool` keeps a message in memory."""
HEADER_LIMIT = 1 << 18
"""The default length of the header section a :class:`MessageSpool` looks for its end
in (a header section longer than this is reported as incomplete)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientResult:
    """What became of one recipient: its ``status`` and the SMTP ``reply`` that says so
    (a 2xx reply for ``"delivered"``, 4xx for ``"temporary"``, 5xx for ``"permanent"``;
    checked at construction). ``location`` may say where the copy went (a folder, for
    the logs)."""

    recipient: Recipient
    """The envelope recipient this is about."""
    status: DeliveryStatus
    """``"delivered"``, ``"temporary"`` or ``"permanent"``."""
    reply: Reply
    """The reply an LMTP server gives for this recipient."""
    location: str | None = None
    """Where the copy was written, when it was (for logs)."""

    def __post_init__(self) -> None:
        expected = _CLASS_OF.get(self.status)
        if expected is None:
            raise ValueError(f"unknown delivery status {self.status!r}")
        if self.reply.code // 100 != expected:
            raise ValueError(f"a {self.status} result needs a {expected}xx reply, "
                             f"not {self.reply.code}")

    @property
    def delivered(self) -> bool:
        """The copy is durable."""
        return self.status == "delivered"

    @classmethod
    def ok(
        cls, recipient: Recipient, *, reply: Reply | None = None, location: str | None = None
    ) -> RecipientResult:
        """A delivered result (``250 2.0.0`` unless ``reply`` says more)."""
        return cls(recipient=recipient, status="delivered", reply=reply or _DELIVERED,
                   location=location)

    @classmethod
    def failed(cls, recipient: Recipient, reply: Reply) -> RecipientResult:
        """A failed result, temporary or permanent by the class of ``reply``."""
        status: DeliveryStatus = "permanent" if reply.code >= 500 else "temporary"
        return cls(recipient=recipient, status=status, reply=reply)


def all_delivered(results: Sequence[RecipientResult], recipients: Sequence[Recipient]) -> bool:
    """Whether ``results`` says every one of ``recipients`` was delivered (one result
    per recipient, in order)."""
    return len(results) == len(recipients) and all(
        r.delivered and r.recipient == rcpt for r, rcpt in zip(results, recipients, strict=True)
    )


class _Storage:
    """The octets of one spooled message: bytes, or an unnamed file read by offset
    (``os.pread``, so that readers in several threads do not share a position)."""

    __slots__ = ("data", "file", "size")

    def __init__(self, data: bytes | None, file: IO[bytes] | None, size: int) -> None:
        self.data = data
        self.file = file
        self.size = size

    def read(self, start: int, stop: int) -> bytes:
        if self.data is not None:
            return self.data[start:stop]
        file = self.file
        if file is None:
            raise ValueError("the message was closed")
        parts = []
        fd = file.fileno()
        while start < stop:
            piece = os.pread(fd, stop - start, start)
            if not piece:
                raise OSError(f"the spool file ended at {start} of {stop} octets")
            parts.append(piece)
            start += len(piece)
        return b"".join(parts)

    def close(self) -> None:
        file, self.file = self.file, None
        if file is not None:
            file.close()


# A segment of a message: bytes given, or a range of the storage.
_Segment = bytes | tuple[int, int]


class Message:
    """A message's content (CRLF line ends), read in chunks: in memory, or a spool file
    with the octets an agent added in front of or inside its header section.

    :attr:`header_end` is where the header section ends: the offset of the empty line
    that ends it (``0`` if the message starts with one, :attr:`size` if there is none),
    or ``-1`` if it was not found in the first :data:`HEADER_LIMIT` octets (then
    :attr:`header` holds those). Derived messages (:meth:`prepend`,
    :meth:`insert_at_header_end`) share the storage: :meth:`close` closes it for all.
    """

    __slots__ = ("_header", "_segments", "_storage", "header_end", "size")

    def __init__(
        self,
        storage: _Storage,
        segments: tuple[_Segment, ...],
        header: bytes,
        header_end: int,
    ) -> None:
        self._storage = storage
        self._segments = segments
        self._header = header
        self.size = sum(map(_length, segments))
        """The message's length in octets."""
        self.header_end = header_end
        """The offset of the empty line ending the header section (see the class)."""

    @classmethod
    def from_bytes(cls, data: bytes) -> Message:
        """A message held in memory."""
        spool = MessageSpool(memory_limit=len(data) + 1)
        spool.write(data)
        return spool.finish()

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, header_limit: int = HEADER_LIMIT) -> Message:
        """The message in the file ``path`` (CRLF line ends), read in place: the file
        stays open until :meth:`close`; its header section is looked for in the first
        ``header_limit`` octets, as :class:`MessageSpool` does."""
        file = open(path, "rb")  # noqa: SIM115 - closed by close()
        try:
            size = os.fstat(file.fileno()).st_size
            storage = _Storage(None, file, size)
            finder = MessageSpool(memory_limit=0, header_limit=header_limit)
            head = storage.read(0, min(size, header_limit))
            if head:
                finder._find_header_end(head)
            header_end = size if finder._searching else finder._header_end
            return cls(storage, ((0, size),) if size else (), bytes(finder._header), header_end)
        except BaseException:
            file.close()
            raise

    @property
    def in_memory(self) -> bool:
        """Whether the content is held in memory (no spool file)."""
        return self._storage.data is not None

    @property
    def header(self) -> bytes:
        """The header section's fields (up to :attr:`header_end`, the empty line not
        included), or its first :data:`HEADER_LIMIT` octets if its end was not found."""
        return self._header

    @property
    def header_complete(self) -> bool:
        """Whether the end of the header section was found."""
        return self.header_end >= 0

    def chunks(self, size: int = 1 << 16) -> Iterator[bytes]:
        """The content in pieces of at most ``size`` octets (blocking file reads)."""
        storage = self._storage
        for segment in self._segments:
            if isinstance(segment, bytes):
                if segment:
                    yield segment
                continue
            start, stop = segment
            while start < stop:
                end = min(stop, start + size)
                yield storage.read(start, end)
                start = end

    def read(self) -> bytes:
        """The whole content, in memory (for small messages and tests)."""
        if len(self._segments) == 1 and isinstance(self._segments[0], bytes):
            return self._segments[0]
        return b"".join(self.chunks(1 << 20))

    def prepend(self, data: bytes) -> Message:
        """This message with ``data`` (whole header fields, CRLF-terminated) in front;
        the content is shared, not copied."""
        if not data:
            return self
        end = self.header_end
        header = data + self._header
        if end < 0 and len(header) > HEADER_LIMIT:
            header = header[:HEADER_LIMIT]
        return Message(self._storage, (data, *self._segments), header,
                       end + len(data) if end >= 0 else -1)

    def insert_at_header_end(self, data: bytes) -> Message:
        """This message with ``data`` inserted where its header section ends (before
        the empty line); if the message is one unterminated header line, a line end is
        put first. Raises :class:`ValueError` when :attr:`header_complete` is false."""
        end = self.header_end
        if end < 0:
            raise ValueError("the end of the header section is not known")
        if not data:
            return self
        if end == self.size and self._header and not self._header.endswith(b"\r\n"):
            data = b"\r\n" + data
        added = data
        segments: list[_Segment] = []
        offset = 0
        for segment in self._segments:
            length = len(segment) if isinstance(segment, bytes) else segment[1] - segment[0]
            if data and offset <= end <= offset + length:
                cut = end - offset
                if isinstance(segment, bytes):
                    pieces: list[_Segment] = [segment[:cut], data, segment[cut:]]
                else:
                    pieces = [(segment[0], segment[0] + cut), data, (segment[0] + cut, segment[1])]
                segments += [p for p in pieces if _length(p)]
                data = b""
            else:
                segments.append(segment)
            offset += length
        if data:  # an empty message
            segments.append(data)
        return Message(self._storage, tuple(segments), self._header + added, end + len(added))

    def close(self) -> None:
        """Close the spool file (shared with the messages derived from this one)."""
        self._storage.close()

    def __enter__(self) -> Message:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "memory" if self.in_memory else "spool file"
        return f"<Message {self.size} octets in {where}>"


def _length(segment: _Segment) -> int:
    return len(segment) if isinstance(segment, bytes) else segment[1] - segment[0]


class MessageSpool:
    """Collects a message as it arrives, in memory up to ``memory_limit`` octets, then
    in an unnamed temporary file in ``directory`` (the system's temporary directory by
    default); it finds the end of the header section on the way (within
    ``header_limit`` octets). :meth:`finish` gives the :class:`Message`;
    :meth:`discard` throws it away. Writes to the file block (page cache)."""

    def __init__(
        self,
        *,
        memory_limit: int = MEMORY_LIMIT,
        header_limit: int = HEADER_LIMIT,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        if memory_limit < 0 or header_limit < 0:
            raise ValueError("memory_limit and header_limit must not be negative")
        self.memory_limit = memory_limit
        """Octets kept in memory before the content moves to a file."""
        self.header_limit = header_limit
        """Octets searched for the end of the header section."""
        self.directory = None if directory is None else os.fspath(directory)
        """Where the spool file is made (``None``: the temporary directory)."""
        self.size = 0
        """Octets written so far."""
        self._buffer = bytearray()
        self._file: IO[bytes] | None = None
        self._header = bytearray()
        self._header_end = -1
        self._searching = True

    def write(self, chunk: bytes) -> None:
        """Add the next piece of the message."""
        if not chunk:
            return
        if self._searching:
            self._find_header_end(chunk)
        self.size += len(chunk)
        if self._file is not None:
            self._file.write(chunk)
            return
        self._buffer += chunk
        if len(self._buffer) > self.memory_limit:
            # Kept open past this call: closed by finish()'s Message, or discard().
            file = self._file = tempfile.TemporaryFile(dir=self.directory)  # noqa: SIM115
            file.write(self._buffer)
            self._buffer = bytearray()

    def _find_header_end(self, chunk: bytes) -> None:
        header = self._header
        before = len(header)
        room = self.header_limit - before
        header += chunk[: max(room, 0)]
        if header.startswith(b"\r\n"):  # an empty header section
            self._header_end = 0
            header.clear()
            self._searching = False
            return
        # The empty line: CRLF CRLF, whose second CRLF may start in this chunk.
        found = header.find(b"\r\n\r\n", max(before - 3, 0))
        if found >= 0:
            self._header_end = found + 2
            del header[found + 2 :]
            self._searching = False
        elif room <= len(chunk):
            self._searching = False  # not within the limit: incomplete

    def finish(self) -> Message:
        """The message collected (the spool is then spent)."""
        header_end = self._header_end
        header = bytes(self._header)
        if self._searching:  # no empty line: the message is all header
            header_end = self.size
        file, self._file = self._file, None
        if file is None:
            data = bytes(self._buffer)
            self._buffer = bytearray()
            storage = _Storage(data, None, len(data))
            return Message(storage, (data,), header, header_end)
        file.flush()
        storage = _Storage(None, file, self.size)
        return Message(storage, ((0, self.size),), header, header_end)

    def discard(self) -> None:
        """Throw away what was collected."""
        file, self._file = self._file, None
        if file is not None:
            file.close()
        self._buffer = bytearray()
        self.size = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Handoff:
    """A message handed to a delivery callable, with its envelope."""

    id: str
    """The identifier the receiving agent gave it (its logs, its ``Received:`` field)."""
    envelope: Envelope
    """The envelope: reverse-path, the recipients to deliver to, parameters."""
    message: Message
    """The content, with the trace fields the receiving agent added."""
    identity: str | None = None
    """The authenticated identity that submitted it (an MSA's user), if any."""


Deliver = Callable[[Handoff], Awaitable[Sequence[RecipientResult]]]
"""A delivery: an async callable that, given a :class:`Handoff`, returns one
:class:`RecipientResult` per envelope recipient, in order, once each delivered copy is
durable. It raises only for a failure of the whole (then every recipient is taken as
temporarily failed)."""
