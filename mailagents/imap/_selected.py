"""The session's view of the selected mailbox: what the client knows, what changed in
the store since, and which of those changes may be told now.

RFC 9051 §2.3.1 numbers messages two ways: UIDs, strictly ascending and never reused
within a UIDVALIDITY (§2.3.1.1), and message sequence numbers, 1 to the number of
messages the client knows (§2.3.1.2). The two agree only through what the server has
told the client: a message expunged from the store keeps its sequence number until an
EXPUNGE (or, with QRESYNC, a VANISHED, RFC 7162 §3.2.10) has been sent for it, and a
new message has none until an EXISTS counted it. :class:`SelectedMailbox` keeps that
view (UIDs in an ``array('I')``, four octets a message, so a 1,000,000-message mailbox
costs 4 MB) and the changes the application told it, and hands out the updates the
rules allow at each point:

- RFC 9051 §7.5.1: an EXPUNGE (and a VANISHED, which RFC 7162 §3.2.10 holds to the
  same restrictions) MUST NOT be sent while no command is in progress, nor while
  responding to FETCH, STORE or SEARCH; the UID forms are different commands and may
  carry them. SORT and THREAD answer with sequence numbers like SEARCH and are held
  to the same rule here (RFC 5256 does not say; holding back is always allowed).
- RFC 9051 §5.3: any other untagged response (EXISTS, a FETCH of new flags) may be sent
  even while no command is in progress.
- Where expunges may be told they come first, in ascending order, each number valid
  at the moment it is sent (RFC 9051 §6.4.3's example: ``* 3 EXPUNGE`` twice for
  messages 3 and 4), then one EXISTS counting the new messages (RFC 2177's example:
  ``* 2 EXPUNGE`` then ``* 3 EXISTS``), then the flag changes by their numbers as they
  stand. Where expunges may not be told, the expunged messages keep their numbers and
  EXISTS counts them too, so it never goes down (RFC 9051 §7.4.1).
- RFC 7162 §3.1: once a CONDSTORE enabling command was issued, every untagged FETCH
  of new flags carries MODSEQ; §3.2.4: with QRESYNC it carries UID too.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mailagents._protocol import LocalProtocolError
from mailagents.imap._seqset import SequenceSet

__all__ = [
    "Exists",
    "Expunge",
    "FlagsUpdate",
    "SelectedMailbox",
    "Update",
    "Vanished",
    "may_expunge",
]

_UID_MAX = 4_294_967_295
# RFC 9051 §7.5.1: no EXPUNGE "while responding to a FETCH, STORE, or SEARCH command".
_NO_EXPUNGE = frozenset({"FETCH", "STORE", "SEARCH", "SORT", "THREAD"})


def may_expunge(command: str | None, *, uid: bool = False) -> bool:
    """Whether EXPUNGE or VANISHED may be sent now (RFC 9051 §7.5.1): ``command`` is the
    verb in progress (upper case, ``None`` when none is), ``uid`` its UID form."""
    if command is None:
        return False
    return uid or command not in _NO_EXPUNGE


@dataclass(frozen=True, slots=True, kw_only=True)
class Exists:
    """``* n EXISTS``: the client now knows ``count`` messages (RFC 9051 §7.4.1)."""

    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Expunge:
    """``* n EXPUNGE``: message ``seq`` is gone, the later ones move down (§7.5.1)."""

    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Vanished:
    """``* VANISHED uids`` (RFC 7162 §3.2.10): the messages with these UIDs are gone;
    the count goes down by their number."""

    uids: SequenceSet


@dataclass(frozen=True, slots=True, kw_only=True)
class FlagsUpdate:
    """``* seq FETCH (FLAGS (...) [UID uid] [MODSEQ (m)])``: new flags of a message the
    client knows (RFC 9051 §7.5.2); ``uid`` when QRESYNC is on, ``modseq`` with
    CONDSTORE (RFC 7162)."""

    seq: int
    flags: tuple[str, ...]
    uid: int | None = None
    modseq: int | None = None


Update = Exists | Expunge | Vanished | FlagsUpdate
"""One untagged update for the client."""


class SelectedMailbox:
    """The client's view of one selected mailbox and the store's changes not yet told.

    ``uids`` are the mailbox's messages at SELECT time, ascending. The application
    tells the view what happens in the store (:meth:`appended`, :meth:`expunged`,
    :meth:`flags_changed`); the server core asks :meth:`updates` what to send at each
    point where untagged data may go out.
    """

    __slots__ = ("_expunged", "_flags", "_high", "_new", "_uids", "condstore", "qresync")

    def __init__(
        self, uids: Iterable[int], *, condstore: bool = False, qresync: bool = False
    ) -> None:
        self._uids = array("I", uids)
        for i in range(1, len(self._uids)):
            if self._uids[i] <= self._uids[i - 1]:
                raise LocalProtocolError("UIDs must be strictly ascending (RFC 9051 §2.3.1.1)")
        if self._uids and self._uids[0] == 0:
            raise LocalProtocolError("UIDs start at 1 (RFC 9051 §2.3.1.1)")
        self._high = self._uids[-1] if self._uids else 0
        self._new = array("I")
        self._expunged: set[int] = set()
        self._flags: dict[int, tuple[tuple[str, ...], int | None]] = {}
        self.condstore = condstore or qresync  # RFC 7162 §3.2.3: QRESYNC implies it
        self.qresync = qresync

    # --- what the client knows ---------------------------------------------------------

    @property
    def exists(self) -> int:
        """The number of messages the client knows (its largest sequence number)."""
        return len(self._uids)

    @property
    def highest_uid(self) -> int:
        """The highest UID the view knows, told to the client or not (0 when none)."""
        return self._high

    def uid(self, seq: int) -> int:
        """The UID of message ``seq`` as the client numbers it."""
        if not 1 <= seq <= len(self._uids):
            raise LocalProtocolError(f"no message {seq} in the client's view")
        return self._uids[seq - 1]

    def seq(self, uid: int) -> int | None:
        """The client's sequence number of ``uid``, or ``None`` if it knows none."""
        i = bisect.bisect_left(self._uids, uid)
        if i < len(self._uids) and self._uids[i] == uid:
            return i + 1
        return None

    def is_expunged(self, uid: int) -> bool:
        """Gone from the store but still in the client's view (RFC 2180 §4.1)."""
        return uid in self._expunged

    def messages(self, numbers: SequenceSet, *, uid: bool = False) -> Iterator[tuple[int, int]]:
        """``(seq, uid)`` of the client's messages in ``numbers``, ascending: sequence
        numbers, or UIDs with ``uid`` (``*`` is the largest in the view, RFC 9051 §9; a
        UID range is never expanded beyond the messages that exist, so ``1:4294967295``
        costs what the mailbox holds)."""
        uids = self._uids
        if not uids:
            return
        largest = uids[-1] if uid else len(uids)
        spans: list[tuple[int, int]] = []
        for first, last in numbers.ranges:
            a = largest if first is None else first
            b = largest if last is None else last
            spans.append((min(a, b), max(a, b)))
        spans.sort()
        done = 0  # the index below which everything was yielded
        for a, b in spans:
            if uid:
                lo = max(bisect.bisect_left(uids, a), done)
                hi = bisect.bisect_right(uids, b)
            else:
                lo, hi = max(a - 1, done), min(b, len(uids))
            for i in range(lo, hi):
                yield i + 1, uids[i]
            done = max(done, hi)

    # --- what the application tells --------------------------------------------------

    def appended(self, uids: Iterable[int]) -> None:
        """New messages in the store, UIDs above every UID so far (§2.3.1.1)."""
        for uid in uids:
            if uid <= self._high or uid > _UID_MAX:
                raise LocalProtocolError(
                    f"new UID {uid} is not above {self._high} (RFC 9051 §2.3.1.1)"
                )
            self._new.append(uid)
            self._high = uid

    def expunged(self, uids: Iterable[int]) -> None:
        """Messages removed from the store. Those the client has not been told about are
        simply forgotten; the others wait for a point where EXPUNGE may be sent."""
        drop = set()
        for uid in uids:
            if self.seq(uid) is not None:
                self._expunged.add(uid)
            else:
                drop.add(uid)
            self._flags.pop(uid, None)
        if drop:
            self._new = array("I", (u for u in self._new if u not in drop))

    def flags_changed(self, uid: int, flags: Iterable[str], modseq: int | None = None) -> None:
        """New flags (and with CONDSTORE their mod-sequence) of one message."""
        if uid > self._high:
            raise LocalProtocolError(f"flags of UID {uid}, which was never appended")
        if uid in self._expunged:
            return
        if self.seq(uid) is None and uid not in self._new:
            return  # expunged and told already
        self._flags[uid] = (tuple(flags), modseq)

    def restate_flags(
        self, uid: int, flags: Iterable[str], modseq: int | None = None, *, told: bool
    ) -> None:
        """The application itself just changed the flags of ``uid`` (a STORE): a flag
        update still waiting for it was read before and is stale. It is dropped when
        the client was ``told`` the new flags already, else it carries the new ones,
        so that the client never ends on flags older than what it was told."""
        if uid in self._flags:
            if told:
                del self._flags[uid]
            else:
                self._flags[uid] = (tuple(flags), modseq)

    @property
    def pending(self) -> bool:
        """Changes wait to be told."""
        return bool(self._new or self._expunged or self._flags)

    # --- what may be sent ----------------------------------------------------------

    def updates(self, command: str | None, *, uid: bool = False) -> list[Update]:
        """The updates that may go out now, applied to the client's view: ``command``
        is the verb in progress (``None`` while no command is), ``uid`` its UID form.
        See the module text for the rules and their order."""
        out: list[Update] = []
        if self._expunged and may_expunge(command, uid=uid):
            gone = self._expunged
            if self.qresync:
                out.append(Vanished(uids=SequenceSet.from_numbers(gone)))
            else:
                # Ascending, each number as it stands once the earlier ones are gone
                # (RFC 9051 §7.5.1: "* 3 EXPUNGE" three times for messages 3, 4, 5).
                seqs = [i + 1 for i, u in enumerate(self._uids) if u in gone]
                out.extend(Expunge(seq=s - n) for n, s in enumerate(seqs))
            self._uids = array("I", (u for u in self._uids if u not in gone))
            self._expunged = set()
        if self._new:
            self._uids.extend(self._new)
            self._new = array("I")
            out.append(Exists(count=len(self._uids)))
        if self._flags:
            for u in sorted(self._flags):
                flags, modseq = self._flags[u]
                seq = self.seq(u)
                if seq is None:
                    continue
                out.append(
                    FlagsUpdate(
                        seq=seq,
                        flags=flags,
                        uid=u if self.qresync else None,
                        modseq=modseq if self.condstore else None,
                    )
                )
            self._flags.clear()
        return out
