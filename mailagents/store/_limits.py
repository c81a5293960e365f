"""Quota and APPENDLIMIT, enforced by the store itself so that every agent (an MDA, an
IMAP APPEND, a COPY) meets them: per user (the whole store) and per folder.

* ``storage``: the octets all messages may take, CRLF-counted (RFC 9208's STORAGE
  resource, which IMAP reports in units of 1024 octets);
* ``messages``: how many messages there may be (RFC 9208's MESSAGE resource);
* ``append_limit``: the largest message accepted (RFC 7889 APPENDLIMIT).

Usage is counted from :meth:`~mailagents.store.Store.status` of the folders concerned
when a message is committed (no counter to drift: what is on disk is the usage), and
only when a limit is set. An append that would go over raises, and nothing of it is
kept; the check and the commit are not one atomic step, so two concurrent appends may
together pass a limit by one message each (RFC 9208 §4.1.3 allows a server to be
approximate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mailagents.store._model import AppendResult, AppendWriter, StoreError

__all__ = [
    "Limits",
    "LimitedWriter",
    "MessageTooBigError",
    "QuotaExceededError",
    "crlf_length",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Limits of a store (per user) or of one folder; ``None`` is no limit."""

    storage: int | None = None
    """Octets (CRLF-counted) all messages together may take."""
    messages: int | None = None
    """How many messages there may be."""
    append_limit: int | None = None
    """The largest message, in CRLF octets, that an append accepts."""

    @property
    def unlimited(self) -> bool:
        """No limit is set."""
        return self.storage is None and self.messages is None and self.append_limit is None


class QuotaExceededError(StoreError):
    """The message would take the user or the folder over its STORAGE or MESSAGE quota
    (IMAP ``[OVERQUOTA]``, RFC 9208 §4.3). Nothing of it was kept."""

    def __init__(self, message: str, *, resource: str, scope: str) -> None:
        super().__init__(message)
        self.resource = resource
        """``"STORAGE"`` or ``"MESSAGE"``."""
        self.scope = scope
        """``""`` for the user's quota, else the folder's name."""


class MessageTooBigError(StoreError):
    """The message is larger than the APPENDLIMIT (IMAP ``[TOOBIG]``, RFC 7889 §4).
    Nothing of it was kept."""

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit
        """The limit, in octets."""


def crlf_length(chunk: bytes) -> int:
    """The CRLF size of a chunk with CRLF or LF line ends (each bare LF counts two)."""
    return len(chunk) + chunk.count(b"\n") - chunk.count(b"\r\n")


class LimitedWriter(AppendWriter):
    """An :class:`~mailagents.store.AppendWriter` that meets an APPENDLIMIT as the bytes
    arrive and calls ``check(size)`` (which raises when over quota) before its commit."""

    def __init__(
        self,
        inner: AppendWriter,
        *,
        append_limit: int | None,
        check: Callable[[int], None],
    ) -> None:
        self._inner = inner
        self._limit = append_limit
        self._check = check
        self._size = 0
        self._cr = False  # the last chunk ended in CR (its LF may start the next)

    def write(self, chunk: bytes) -> None:
        """Add the next piece; :class:`MessageTooBigError` (and the append aborted)
        once the message is over the APPENDLIMIT."""
        if not chunk:
            return
        self._size += crlf_length(chunk) - (1 if self._cr and chunk[:1] == b"\n" else 0)
        self._cr = chunk[-1:] == b"\r"
        if self._limit is not None and self._size > self._limit:
            self._inner.abort()
            raise MessageTooBigError(
                f"message over the APPENDLIMIT of {self._limit} octets", limit=self._limit
            )
        self._inner.write(chunk)

    def commit(self) -> AppendResult:
        """Check the quota, then commit; :class:`QuotaExceededError` (and the append
        aborted) if the message does not fit."""
        if self.result is not None:
            return self.result
        try:
            self._check(self._size)
        except BaseException:
            self._inner.abort()
            raise
        self.result = self._inner.commit()
        return self.result

    def abort(self) -> None:
        """Throw the partial message away."""
        if self.result is None:
            self._inner.abort()
