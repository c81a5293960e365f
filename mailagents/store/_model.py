"""The mailbox model shared by every store format: what an MDA writes and what an MAA
(IMAP, POP3) reads.

A :class:`Store` holds one user's folders; a :class:`Folder` holds messages, each with a
UID that is strictly ascending and never reused within one UIDVALIDITY (RFC 9051 §2.3.1.1),
flags and keywords, an INTERNALDATE, a size, and a MODSEQ (RFC 7162). Message bytes are
kept on disk with LF line ends, as Maildir and mbox tools expect; the API hands out CRLF
bytes and CRLF sizes, which is what SMTP, POP3 octet counts and IMAP RFC822.SIZE need.

Every method here blocks (it touches the disk). Async code runs it in the store's own
executor: ``await store.run(folder.messages)``.
"""

from __future__ import annotations

import abc
import asyncio
import datetime
import functools
import re
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Literal, ParamSpec, TypeVar

if TYPE_CHECKING:
    from mailagents.store._cache import FolderCache
    from mailagents.store._cache_format import CachedMessage
    from mailagents.store._limits import Limits

__all__ = [
    "FlagMode",
    "SEEN",
    "ANSWERED",
    "FLAGGED",
    "DELETED",
    "DRAFT",
    "SYSTEM_FLAGS",
    "SPECIAL_USE",
    "AppendResult",
    "AppendWriter",
    "Changes",
    "CopyResult",
    "Folder",
    "FolderExistsError",
    "FolderInfo",
    "FolderNotFoundError",
    "FolderStatus",
    "InvalidFolderNameError",
    "MessageInfo",
    "MessageNotFoundError",
    "Store",
    "StoreError",
    "apply_flags",
    "check_keyword",
    "same_flags",
]

_P = ParamSpec("_P")
_T = TypeVar("_T")

SEEN = "\\Seen"
ANSWERED = "\\Answered"
FLAGGED = "\\Flagged"
DELETED = "\\Deleted"
DRAFT = "\\Draft"
SYSTEM_FLAGS = frozenset({SEEN, ANSWERED, FLAGGED, DELETED, DRAFT})
"""The IMAP system flags a store keeps (RFC 9051 §2.3.2; \\Recent is session state)."""

SPECIAL_USE = frozenset(
    {"\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive", "\\All", "\\Flagged"}
)
"""Special-use folder attributes (RFC 6154 §2)."""

# RFC 9051 §9: flag-keyword = "$MDNSent" / "$Forwarded" / ... / atom; atom excludes
# atom-specials: ( ) { SP CTL % * " \ ]
_ATOM = re.compile(r"[^\x00-\x20\x7f(){%*\"\\\]]+")


def check_keyword(flag: str) -> str:
    """Return ``flag`` if it is a system flag or a valid keyword atom, else raise
    :class:`ValueError`. Keywords keep their case; system flags are canonicalised."""
    for system in SYSTEM_FLAGS:
        if flag.lower() == system.lower():
            return system
    if not flag.isascii() or not _ATOM.fullmatch(flag) or len(flag) > 255:
        raise ValueError(f"not a valid keyword: {flag!r}")
    return flag


def apply_flags(old: frozenset[str], wanted: frozenset[str], mode: FlagMode) -> frozenset[str]:
    """The flags of a message after STORE: ``old`` changed by ``wanted`` (checked by
    :func:`check_keyword`) in ``mode``, the rule every store follows. Flags compare
    without regard to case (RFC 9051 §9: alphabetic characters of the grammar are
    case-insensitive, and keywords are atoms; system flags are canonical already), and
    a keyword a message has keeps the spelling it has: adding ``work`` to a message
    with ``Work`` changes nothing, and neither does setting it."""
    have = {f.lower(): f for f in old}
    if mode == "add":
        return old | frozenset(f for f in wanted if f.lower() not in have)
    if mode == "remove":
        gone = {f.lower() for f in wanted}
        return frozenset(f for f in old if f.lower() not in gone)
    if mode == "set":
        result: dict[str, str] = {}
        for f in wanted:
            result.setdefault(f.lower(), have.get(f.lower(), f))
        return frozenset(result.values())
    raise ValueError(f"unknown mode {mode!r}")


def same_flags(a: Collection[str], b: Collection[str]) -> bool:
    """Whether two flag sets are the same under :func:`apply_flags`'s rule."""
    return {f.lower() for f in a} == {f.lower() for f in b}


class StoreError(Exception):
    """Base class of store errors. Disk-full and permission problems surface as
    :class:`OSError` subclasses, leaving the store consistent."""


class FolderNotFoundError(StoreError, KeyError):
    """No folder of that name."""


class FolderExistsError(StoreError):
    """A folder of that name exists already."""


class InvalidFolderNameError(StoreError, ValueError):
    """A folder name that is empty, holds NUL or control characters, has an empty
    level, or would leave the store's root (``..``, absolute paths)."""


class MessageNotFoundError(StoreError, KeyError):
    """No message with that UID (it may have been expunged)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageInfo:
    """What a folder knows of one message without reading its body."""

    uid: int
    flags: frozenset[str]
    """System flags (``\\Seen``...) and keywords."""
    internaldate: datetime.datetime
    """When the message arrived (timezone-aware)."""
    size: int
    """Octets with CRLF line ends: RFC822.SIZE, POP3 octet counts."""
    modseq: int
    """The MODSEQ of the last change to this message (RFC 7162 §3.1.1)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FolderStatus:
    """The numbers IMAP STATUS and SELECT report (RFC 9051 §6.3.11, RFC 7162 §3.1.2,
    RFC 3501 §6.3.10 for RECENT)."""

    messages: int
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    unseen: int
    """Messages without ``\\Seen``."""
    deleted: int = 0
    """Messages with ``\\Deleted`` (STATUS DELETED)."""
    size: int = 0
    """The CRLF octets of all messages (STATUS SIZE)."""
    recent: int = 0
    """Messages that no session has claimed as ``\\Recent`` yet (see
    :meth:`Folder.claim_recent`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FolderInfo:
    """One folder in a listing."""

    name: str
    """The full name, levels joined by the store's separator; ``INBOX`` for the inbox."""
    attributes: frozenset[str] = frozenset()
    """``\\HasChildren`` / ``\\HasNoChildren``, ``\\Noselect`` for a level that exists
    only as a parent, and the special-use attributes (RFC 6154)."""
    subscribed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Changes:
    """What changed in a folder since a point (a MODSEQ, or the last refresh)."""

    uidvalidity: int
    highestmodseq: int
    added: tuple[MessageInfo, ...] = ()
    """New messages, by ascending UID."""
    changed: tuple[MessageInfo, ...] = ()
    """Messages whose flags changed (not new ones)."""
    expunged: tuple[int, ...] = ()
    """UIDs that are gone."""
    expunged_complete: bool = True
    """Whether ``expunged`` is exact. ``False`` from
    :meth:`Folder.changes_since` when the store's expunge history no longer reaches
    back to the MODSEQ asked about (it keeps the newest expunges only, and says from
    which MODSEQ on it is whole): ``expunged`` then holds every UID below UIDNEXT that
    is not in the folder, a superset that RFC 7162 §3.2.5 lets a server send as
    ``VANISHED (EARLIER)``. Clients must not be told a HIGHESTMODSEQ-based answer is
    exact then."""

    @property
    def empty(self) -> bool:
        """Nothing changed."""
        return not (self.added or self.changed or self.expunged)


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendResult:
    """The outcome of a committed append (what IMAP UIDPLUS's APPENDUID needs)."""

    uidvalidity: int
    uid: int | None
    """``None`` when the append did not assign a UID (the fast MDA path: the UID is
    assigned the next time the folder is read)."""
    size: int
    """CRLF size of the stored message."""


class CopyResult(dict[int, int]):
    """What :meth:`Folder.copy` and :meth:`Folder.move` return: a dict of source UID →
    new UID in the target (messages that were gone are left out), with the target's
    UIDVALIDITY, the two things UIDPLUS's COPYUID response code needs (RFC 4315 §3)."""

    uidvalidity: int
    """The target folder's UIDVALIDITY under which the new UIDs were given."""

    def __init__(self, mapping: dict[int, int] | None = None, *, uidvalidity: int) -> None:
        super().__init__(mapping or {})
        self.uidvalidity = uidvalidity

    def __repr__(self) -> str:
        return f"CopyResult({dict(self)!r}, uidvalidity={self.uidvalidity})"


class AppendWriter(abc.ABC):
    """A message being appended, streamed: ``write(chunk)`` as the bytes arrive,
    then ``commit()``, which returns only after the message is durable (file and
    directory fsynced); ``abort()`` leaves nothing behind. As a context manager it
    commits on success and aborts on an exception.

    Chunks are the message with CRLF (or LF) line ends; the store keeps LF on disk and
    counts the CRLF size. ``result`` is set by a successful :meth:`commit`; a second
    ``commit()`` returns it again, and ``abort()`` after a commit does nothing.
    """

    result: AppendResult | None = None

    @abc.abstractmethod
    def write(self, chunk: bytes) -> None:
        """Add the next piece of the message."""

    @abc.abstractmethod
    def commit(self) -> AppendResult:
        """Make the message durable and visible; return its UID (when assigned)."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Throw the partial message away. Safe to call twice or after a failure."""

    def __enter__(self) -> AppendWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        elif self.result is None:
            self.abort()


FlagMode = Literal["set", "add", "remove"]


class Folder(abc.ABC):
    """An open folder. A handle sees a snapshot that :meth:`refresh` brings up to date;
    changes made through other handles, other processes or other programs (mutt,
    Dovecot) appear at the next refresh."""

    name: str

    @abc.abstractmethod
    def status(self) -> FolderStatus:
        """Counts, UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ of this handle's snapshot."""

    @abc.abstractmethod
    def messages(self) -> list[MessageInfo]:
        """Every message of the snapshot, by ascending UID (reads no message body)."""

    @abc.abstractmethod
    def info(self, uid: int) -> MessageInfo:
        """One message's metadata; :class:`MessageNotFoundError` if there is none."""

    @abc.abstractmethod
    def open_message(self, uid: int, start: int = 0, length: int | None = None) -> BinaryIO:
        """A binary stream of the message with CRLF line ends (never loaded whole):
        from CRLF offset ``start`` on, and at most ``length`` octets when given (IMAP
        partial fetches, ``BODY[]<start.length>``, RFC 9051 §6.4.5); what lies past
        the window is not read. :class:`ValueError` for a negative start or length."""

    def read_message(self, uid: int) -> bytes:
        """The whole message with CRLF line ends."""
        with self.open_message(uid) as stream:
            return stream.read()

    @abc.abstractmethod
    def append(
        self,
        *,
        flags: Collection[str] = (),
        internaldate: datetime.datetime | None = None,
        assign_uid: bool = True,
    ) -> AppendWriter:
        """Start appending a message (see :class:`AppendWriter`)."""

    def append_bytes(
        self,
        data: bytes,
        *,
        flags: Collection[str] = (),
        internaldate: datetime.datetime | None = None,
        assign_uid: bool = True,
    ) -> AppendResult:
        """Append a whole message in one call."""
        writer = self.append(flags=flags, internaldate=internaldate, assign_uid=assign_uid)
        try:
            writer.write(data)
            return writer.commit()
        except BaseException:
            writer.abort()
            raise

    @abc.abstractmethod
    def set_flags(
        self,
        uids: Collection[int],
        flags: Collection[str],
        mode: FlagMode = "set",
        *,
        unchanged_since: int | None = None,
    ) -> tuple[list[MessageInfo], list[int]]:
        """Change flags (IMAP STORE) by the rule of :func:`apply_flags` (no regard to
        case, a keyword keeps the spelling it has). Returns the messages whose flags
        changed, as changed (not those already as asked), and the UIDs not changed
        because their MODSEQ is above ``unchanged_since`` (RFC 7162 §3.1.3). UIDs that
        do not exist are ignored. Each changed message gets a new MODSEQ."""

    @abc.abstractmethod
    def copy(self, uids: Collection[int], target: Folder) -> CopyResult:
        """Copy messages into ``target`` keeping flags and INTERNALDATE; returns
        source UID → new UID with the target's UIDVALIDITY (UIDPLUS COPYUID)."""

    @abc.abstractmethod
    def move(self, uids: Collection[int], target: Folder) -> CopyResult:
        """Copy, then expunge the originals (RFC 6851); returns what :meth:`copy`
        does. A crash in between leaves a message in both folders, never in neither:
        the copies are durable before any original is removed."""

    @abc.abstractmethod
    def expunge(self, uids: Collection[int] | None = None) -> list[int]:
        """Remove the messages flagged ``\\Deleted`` (only those in ``uids`` if given,
        as UID EXPUNGE does); returns the UIDs removed."""

    @abc.abstractmethod
    def refresh(self) -> Changes:
        """Bring the snapshot up to date and say what changed since the last refresh
        (or the opening) of this handle."""

    @abc.abstractmethod
    def changes_since(self, modseq: int) -> Changes:
        """What changed after ``modseq`` (CONDSTORE/QRESYNC): messages added or changed
        with a higher MODSEQ, and UIDs expunged since, as far as the store remembers."""

    @property
    def deliver_only(self) -> bool:
        """The handle was opened for delivery only (see :meth:`Store.folder`)."""
        return False

    def message_cache(self) -> FolderCache | None:
        """The folder's persistent message cache (``FolderCache``, see
        :doc:`/stores`), opened on first use under the folder's UIDVALIDITY; ``None``
        when the folder keeps none (the base class, a delivery handle)."""
        return None

    def cached(self, uid: int) -> CachedMessage:
        """What IMAP FETCH, SEARCH and SORT need of message ``uid`` without reading it
        again (``CachedMessage``: the MIME part map behind BODYSTRUCTURE and every
        ``BODY[section]`` span, the ENVELOPE fields, References, the base subject and
        the sent date). :class:`MessageNotFoundError` if there is no such message.

        It is ``info = self.info(uid)``, then, when :meth:`message_cache` gives a
        cache, ``cache.structure(uid, lambda: self.open_message(uid), info.size)``
        (the entry from the cache, or computed from the message and queued for
        writing), else ``build_entry`` over :meth:`open_message`'s stream."""
        info = self.info(uid)
        cache = self.message_cache()
        if cache is not None:
            return cache.structure(uid, lambda: self.open_message(uid), info.size)
        from mailagents.store._cache import build_entry

        with self.open_message(uid) as stream:
            return build_entry(uid, iter(functools.partial(stream.read, 1 << 20), b""))

    def keywords(self) -> frozenset[str]:
        """The keywords in use in this folder (not the system flags): what IMAP FLAGS
        and PERMANENTFLAGS list besides the system flags (RFC 9051 §7.1). The base
        class collects them from :meth:`messages`."""
        found: set[str] = set()
        for info in self.messages():
            found.update(f for f in info.flags if f not in SYSTEM_FLAGS)
        return frozenset(found)

    def can_create_keywords(self) -> bool:
        """Whether a new keyword can still be kept where every program sharing the
        folder sees it; when not, an IMAP server leaves ``\\*`` out of PERMANENTFLAGS
        (RFC 9051 §7.1). The base class has no limit."""
        return True

    def claim_recent(self) -> list[int]:
        """Claim ``\\Recent`` for this session (IMAP4rev1, RFC 3501 §2.3.2): the UIDs of
        the snapshot that no session has claimed yet, claimed now, durably, so that
        exactly one session sees each message as recent. A server calls it after
        SELECT and after each :meth:`refresh` and keeps the union for the session;
        EXAMINE (read-only) and POP3 sessions do not call it, and leave the messages
        recent for the next IMAP session. The base class claims nothing."""
        return []

    @abc.abstractmethod
    def close(self) -> None:
        """Release the handle."""

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Store(abc.ABC):
    """One user's folders. ``INBOX`` always exists (case-insensitive, RFC 9051 §5.1)."""

    separator: str = "/"
    """The hierarchy separator in folder names."""

    def __init__(
        self, *, max_workers: int = 16, executor: ThreadPoolExecutor | None = None
    ) -> None:
        self._max_workers = max_workers
        self._executor: ThreadPoolExecutor | None = executor
        self._owns_executor = executor is None
        self._executor_lock = threading.Lock()
        self._user_limits: Limits | None = None
        self._folder_limits: dict[str, Limits] = {}

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The thread pool for blocking work: the one given to the constructor (shared
        by many stores, see :class:`~mailagents.store.StoreResolver`), else the store's
        own, created on first use (about 16 threads, so that the fsyncs of concurrent
        deliveries overlap)."""
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._max_workers, thread_name_prefix="mailagents-store"
                )
            return self._executor

    async def run(self, func: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run blocking store work in :attr:`executor` from async code."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(func, *args, **kwargs))

    # --- quota and APPENDLIMIT (see mailagents.store._limits) ---------------------------

    @staticmethod
    def _limit_key(name: str) -> str:
        return "INBOX" if name.upper() == "INBOX" else name.strip(Store.separator)

    def set_limits(self, limits: Limits | None, *, folder: str | None = None) -> None:
        """Set (``None``: remove) the limits of the whole store, or of one folder: its
        STORAGE and MESSAGE quota (RFC 9208) and APPENDLIMIT (RFC 7889). Every append,
        delivery and copy into the store then meets both the user's and the folder's
        limits. Kept in memory: the agent that makes the store sets them."""
        if folder is None:
            self._user_limits = limits
        elif limits is None:
            self._folder_limits.pop(self._limit_key(folder), None)
        else:
            self._folder_limits[self._limit_key(folder)] = limits

    def limits(self, folder: str | None = None) -> Limits:
        """The limits set for the store, or for ``folder`` (no limits if none)."""
        from mailagents.store._limits import Limits

        found = (
            self._user_limits
            if folder is None
            else self._folder_limits.get(self._limit_key(folder))
        )
        return found if found is not None else Limits()

    def append_limit(self, folder: str) -> int | None:
        """The APPENDLIMIT that applies to ``folder``: the lower of the user's and the
        folder's (``None``: none)."""
        values = [v for v in (self.limits().append_limit, self.limits(folder).append_limit) if v]
        return min(values) if values else None

    def usage(self, folder: str | None = None) -> tuple[int, int]:
        """``(octets, messages)`` used by the store, or by ``folder`` (RFC 9208 STORAGE
        and MESSAGE usage), from :meth:`status` of each folder."""
        if folder is not None:
            status = self.status(folder)
            return status.size, status.messages
        octets = count = 0
        for info in self.folders():
            if "\\Noselect" in info.attributes or "\\NonExistent" in info.attributes:
                continue
            status = self.status(info.name)
            octets += status.size
            count += status.messages
        return octets, count

    def check_room(self, folder: str, octets: int, count: int = 1) -> None:
        """Raise ``QuotaExceededError`` (from ``mailagents.store``) if ``count`` messages
        of ``octets`` in all (CRLF) may not go into ``folder`` (the APPENDLIMIT is for
        appends alone: :meth:`limited`); nothing when no quota is set."""
        from mailagents.store._limits import QuotaExceededError

        for scope, limits in (("", self.limits()), (folder, self.limits(folder))):
            if limits.storage is None and limits.messages is None:
                continue
            used, messages = self.usage(scope or None)
            if limits.storage is not None and used + octets > limits.storage:
                raise QuotaExceededError(
                    f"over the STORAGE quota of {scope or 'the user'}",
                    resource="STORAGE",
                    scope=scope,
                )
            if limits.messages is not None and messages + count > limits.messages:
                raise QuotaExceededError(
                    f"over the MESSAGE quota of {scope or 'the user'}",
                    resource="MESSAGE",
                    scope=scope,
                )

    def limited(self, writer: AppendWriter, folder: str) -> AppendWriter:
        """``writer`` held to the limits of ``folder`` (unchanged when none are set):
        what each format's :meth:`Folder.append` returns."""
        from mailagents.store._limits import LimitedWriter

        if self._user_limits is None and self._limit_key(folder) not in self._folder_limits:
            return writer
        return LimitedWriter(
            writer,
            append_limit=self.append_limit(folder),
            check=lambda size: self.check_room(folder, size),
        )

    def limited_batch(
        self,
        folder: str,
        messages: Sequence[bytes],
        deliver: Callable[[Sequence[bytes]], list[AppendResult | Exception]],
    ) -> list[AppendResult | Exception]:
        """``deliver(messages)`` held to the limits of ``folder``: a message over the
        APPENDLIMIT gets ``MessageTooBigError`` in its place, and if the rest do not
        fit the quota together they all get ``QuotaExceededError``; the others are
        delivered. What a format's ``append_batch`` returns."""
        from mailagents.store._limits import MessageTooBigError, QuotaExceededError, crlf_length

        if self._user_limits is None and self._limit_key(folder) not in self._folder_limits:
            return deliver(messages)
        limit = self.append_limit(folder)
        outcomes: list[AppendResult | Exception | None] = [None] * len(messages)
        sizes = [crlf_length(m) for m in messages]
        for i, size in enumerate(sizes):
            if limit is not None and size > limit:
                outcomes[i] = MessageTooBigError(f"over the APPENDLIMIT of {limit}", limit=limit)
        todo = [i for i, o in enumerate(outcomes) if o is None]
        try:
            self.check_room(folder, sum(sizes[i] for i in todo), len(todo))
        except QuotaExceededError as exc:
            for i in todo:
                outcomes[i] = exc
            todo = []
        if todo:
            for i, done in zip(todo, deliver([messages[i] for i in todo]), strict=True):
                outcomes[i] = done
        return [o for o in outcomes if o is not None]

    @abc.abstractmethod
    def folders(self) -> list[FolderInfo]:
        """Every folder, INBOX first, then by name."""

    @abc.abstractmethod
    def folder(self, name: str, *, deliver_only: bool = False) -> Folder:
        """Open a folder; :class:`FolderNotFoundError` if it does not exist.

        ``deliver_only``: a handle for delivery (an MDA, an MRA handing messages over):
        it may be given nothing the readers would notice (Maildir leaves ``new/`` as it
        is, and such a handle only appends, without UIDs). A format with nothing to
        spare the readers opens an ordinary handle."""

    def status(self, name: str, items: Collection[str] | None = None) -> FolderStatus:
        """A folder's STATUS numbers without opening it for reading (no sync, no change
        on disk that a mail client could see; see the formats' own docs for what is
        counted). :class:`FolderNotFoundError` if it does not exist.

        ``items``: the STATUS items wanted (``MESSAGES``, ``SIZE``... as in RFC 9051
        §6.3.11, any case), ``None`` for all. A store may leave out the work of the
        others: the figure of an item not asked for may be 0 (a Maildir skips SIZE,
        which may read message files, when it is not asked for). The base class opens
        the folder."""
        with self.folder(name) as folder:
            return folder.status()

    @abc.abstractmethod
    def create_folder(self, name: str, *, special_use: str | None = None) -> None:
        """Create a folder (and missing parents)."""

    def set_special_use(self, name: str, attribute: str | None) -> None:
        """Give an existing folder a special-use attribute (RFC 6154; taken from the
        folder that had it), or with ``None`` take its attribute away (a default one
        included: Maildir's ``Sent`` and so on). :class:`FolderNotFoundError` if there
        is no such folder, :class:`ValueError` for an attribute not in
        ``SPECIAL_USE``. The base class cannot."""
        raise StoreError("this store keeps no special-use attributes")

    def list_folders(self, *, nonexistent: bool = False) -> list[FolderInfo]:
        """:meth:`folders` for IMAP LIST (RFC 9051 §6.3.9): each subscribed folder's
        attributes include ``\\Subscribed``, and with ``nonexistent`` the subscribed
        names whose folder is gone are listed too, as ``\\NonExistent`` (which implies
        ``\\Noselect``) and ``\\Subscribed``, in name order after the others. Costs
        one listing and one read of the subscriptions."""
        listed = self.folders()
        known = {info.name for info in listed}
        result = [
            FolderInfo(
                name=info.name,
                attributes=info.attributes | {"\\Subscribed"},
                subscribed=True,
            )
            if info.subscribed
            else info
            for info in listed
        ]
        if nonexistent:
            gone = sorted(set(self.subscriptions()) - known)
            result.extend(
                FolderInfo(
                    name=name,
                    attributes=frozenset({"\\NonExistent", "\\Subscribed"}),
                    subscribed=True,
                )
                for name in gone
            )
        return result

    @abc.abstractmethod
    def rename_folder(self, old: str, new: str) -> None:
        """Rename a folder and its children (RFC 9051 §6.3.6; renaming INBOX moves its
        messages into the new folder and leaves INBOX empty)."""

    @abc.abstractmethod
    def delete_folder(self, name: str) -> None:
        """Delete a folder (not INBOX; a folder with children becomes ``\\Noselect``)."""

    @abc.abstractmethod
    def subscribe(self, name: str) -> None:
        """Add to the subscriptions."""

    @abc.abstractmethod
    def unsubscribe(self, name: str) -> None:
        """Remove from the subscriptions."""

    @abc.abstractmethod
    def subscriptions(self) -> list[str]:
        """Subscribed folder names."""

    def close(self) -> None:
        """Stop the store's own executor (waiting for running work); an executor given
        to the constructor is left running for the stores that share it."""
        if not self._owns_executor:
            return
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
