"""ENVELOPE and BODYSTRUCTURE as data (RFC 9051 §7.5.2, formal syntax in §9).

The same classes serve both sides: the server computes them from a message
(:mod:`mailagents.imap._mime`), the writer puts them on the wire, the client's parser
reads them back. Text fields are ``str``: the octets of an nstring decoded as UTF-8
with ``surrogateescape``, so any octets survive a round trip unchanged (RFC 2047 words
stay encoded, as the RFC wants them in ENVELOPE). ``None`` stands for NIL.

Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "Address",
    "Body",
    "BodyExtension",
    "Envelope",
    "MultipartBody",
    "Parameters",
    "SinglePartBody",
]

Parameters: TypeAlias = tuple[tuple[str, str], ...]
"""``body-fld-param``: attribute/value pairs in wire order; ``()`` stands for NIL."""

BodyExtension: TypeAlias = "str | int | tuple[BodyExtension, ...] | None"
"""``body-extension``: a future extension's data, kept as read (nstring, number or a
parenthesised list of them)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    """One ``address`` of an ENVELOPE: personal name, source route (``adl``), mailbox
    and host. RFC 9051 §7.5.2: a group starts with ``host`` NIL and the group's name in
    ``mailbox``, and ends with ``mailbox`` and ``host`` both NIL."""

    name: str | None = None
    adl: str | None = None
    mailbox: str | None = None
    host: str | None = None

    @property
    def is_group_start(self) -> bool:
        """Whether this entry opens a group (``mailbox`` holds the group's name)."""
        return self.host is None and self.mailbox is not None

    @property
    def is_group_end(self) -> bool:
        """Whether this entry closes a group."""
        return self.host is None and self.mailbox is None


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """``envelope`` (RFC 9051 §7.5.2): the header fields in the RFC's order. An empty
    address list is NIL on the wire, so ``()`` and ``None`` both mean "no address"; the
    parser gives ``None``."""

    date: str | None = None
    subject: str | None = None
    from_: tuple[Address, ...] | None = None
    sender: tuple[Address, ...] | None = None
    reply_to: tuple[Address, ...] | None = None
    to: tuple[Address, ...] | None = None
    cc: tuple[Address, ...] | None = None
    bcc: tuple[Address, ...] | None = None
    in_reply_to: str | None = None
    message_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SinglePartBody:
    """A non-multipart ``body-type-1part``.

    ``lines`` is set for ``text/*`` and ``message/rfc822`` (and ``message/global``,
    RFC 6532 / RFC 9051), ``envelope`` and ``body`` for the message types only. The
    extension data (``md5``, ``disposition``, ``language``, ``location``,
    ``extensions``) is what BODYSTRUCTURE carries and BODY leaves out: ``extended``
    says whether it was (or is to be) written at all.
    """

    type: str
    subtype: str
    params: Parameters = ()
    id: str | None = None
    description: str | None = None
    encoding: str = "7BIT"
    size: int = 0
    lines: int | None = None
    envelope: Envelope | None = None
    body: Body | None = None
    extended: bool = False
    md5: str | None = None
    disposition: tuple[str, Parameters] | None = None
    language: tuple[str, ...] | None = None
    location: str | None = None
    extensions: tuple[BodyExtension, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MultipartBody:
    """``body-type-mpart``: the parts (at least one) and the subtype; with
    ``extended``, the multipart extension data (``params`` holds the boundary)."""

    parts: tuple[Body, ...]
    subtype: str
    extended: bool = False
    params: Parameters = ()
    disposition: tuple[str, Parameters] | None = None
    language: tuple[str, ...] | None = None
    location: str | None = None
    extensions: tuple[BodyExtension, ...] = ()


Body: TypeAlias = SinglePartBody | MultipartBody
"""A ``body``: one part or a multipart."""
