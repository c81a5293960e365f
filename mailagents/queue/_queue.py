"""The durable outbound queue: a directory of queue files and message files."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import replace

from mailagents.delivery import Message
from mailagents.queue._model import (
    Notice,
    NoticeKind,
    Outcome,
    QueuedMessage,
    QueuedRecipient,
)
from mailagents.queue._records import QueueFileError, decode, encode
from mailagents.queue._schedule import RetrySchedule
from mailagents.smtp import Envelope
from mailagents.store._fileio import fsync_dir, write_all

__all__ = ["Queue", "UnknownMessage"]

log = logging.getLogger(__name__)

_CONTENT = ".msg"
_TEMP = ".tmp"
_counter = 0
_counter_lock = threading.Lock()


class UnknownMessage(KeyError):
    """No message with this id is in the queue (never was, or finished)."""


def _new_id(now: float) -> str:
    """A queue id: the time in microseconds, the process and a counter, in hex, so that
    ids sort by arrival and never repeat on one machine."""
    global _counter
    with _counter_lock:
        _counter = (_counter + 1) % (1 << 24)
        count = _counter
    return f"{int(now * 1_000_000):013X}{os.getpid() & 0xFFFFF:05X}{count:06X}"


class Queue:
    """The outbound queue in ``directory``: the spool and each recipient's state, and
    nothing else (it never opens a socket; the MTA's delivery loop does).

    Every method blocks on the disk: call them from an executor in asyncio code. A
    message is in two files in ``directory/queue``: ``ID.msg``, its content, written
    once, and ``ID``, its queue file (see :doc:`/queue`), replaced
    whole at each change. :meth:`enqueue` returns only when both files and their
    directory are on disk (fsync), so the caller may then say 250; each state change
    is written to a temporary file, fsynced and renamed over the queue file. The
    current time is always passed in (``now``), and the retry arithmetic is the
    ``schedule``'s, so a test runs a week of retries in a moment.

    Opening the queue recovers what an earlier run left: every queue file that is
    whole is loaded; a damaged one is moved with its content to
    ``directory/corrupt`` and logged (never deleted); a content file without a queue
    file (a message never accepted) and temporary files are removed.

    One delivery attempt per message at a time is the caller's rule: the queue
    serialises writes to one message, but two workers recording attempts of the same
    recipient would both be kept.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        schedule: RetrySchedule | None = None,
        fsync: bool = True,
    ) -> None:
        self.directory = os.path.abspath(os.fspath(directory))
        """The queue's directory."""
        self.schedule = schedule if schedule is not None else RetrySchedule()
        """The retry schedule."""
        self.fsync = fsync
        """Whether writes are fsynced (turn off only in tests)."""
        self._active = os.path.join(self.directory, "queue")
        self._corrupt = os.path.join(self.directory, "corrupt")
        for path in (self.directory, self._active, self._corrupt):
            os.makedirs(path, mode=0o700, exist_ok=True)
        self._messages: dict[str, QueuedMessage] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._stamps: dict[str, tuple[int, int]] = {}  # (inode, mtime) of each queue file
        self._lock = threading.Lock()
        self.recovered = self._recover()
        """How many messages were found on opening."""

    # --- reading ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._messages)

    def __contains__(self, id: object) -> bool:
        return id in self._messages

    def get(self, id: str) -> QueuedMessage:
        """The message ``id``; :class:`UnknownMessage` when it is not queued."""
        try:
            return self._messages[id]
        except KeyError:
            raise UnknownMessage(id) from None

    def messages(self) -> list[QueuedMessage]:
        """Every queued message, oldest first."""
        with self._lock:
            found = list(self._messages.values())
        return sorted(found, key=lambda m: (m.arrival, m.id))

    def due(self, now: float) -> list[QueuedMessage]:
        """The messages with a recipient due at ``now``, the longest waiting first."""
        found = [m for m in self.messages() if m.due(now)]
        return sorted(found, key=lambda m: (m.next_attempt or 0.0, m.id))

    def current(self, id: str) -> QueuedMessage | None:
        """The message ``id`` as it stands now, or ``None`` when it is not queued."""
        return self._messages.get(id)

    def next_wakeup(self, exclude: Collection[str] = ()) -> float | None:
        """When the next recipient is due (``None`` when nothing is queued), leaving
        out the messages ``exclude`` names (those under way)."""
        with self._lock:
            found = list(self._messages.values())
        times = [t for m in found if m.id not in exclude and (t := m.next_attempt) is not None]
        return min(times) if times else None

    def open(self, id: str) -> Message:
        """The content of the message ``id``, read from its file in chunks (close it
        when done)."""
        self.get(id)
        return Message.open(self._content_path(id))

    # --- accepting ------------------------------------------------------------------

    def enqueue(
        self,
        envelope: Envelope,
        message: Message,
        *,
        now: float | None = None,
        identity: str | None = None,
        client: str | None = None,
        notice: str | None = None,
    ) -> QueuedMessage:
        """Queue ``message`` for every recipient of ``envelope`` and return once it is
        durable. ``notice`` marks a notice the MTA made itself: ``"dsn"`` for a delivery
        status notification, ``"postmaster"`` for a notice to the postmaster about a
        notice that failed (if that fails too it is dropped, never bounced again)."""
        now = time.time() if now is None else now
        params = envelope.mail_parameters
        sender = envelope.mail_from.mailbox
        recipients = tuple(
            QueuedRecipient(
                address=str(r.path.mailbox) if r.path.mailbox is not None else "postmaster",
                orcpt=r.parameters.orcpt,
                notify=r.parameters.notify,
                next_attempt=now,
            )
            for r in envelope.recipients
        )
        if not recipients:
            raise ValueError("a message needs at least one recipient")
        queued = QueuedMessage(
            id=_new_id(now),
            sender=str(sender) if sender is not None else "",
            recipients=recipients,
            arrival=now,
            size=message.size,
            body=params.body,
            smtputf8=params.smtputf8,
            requiretls=params.requiretls,
            ret=params.ret,
            envid=params.envid,
            identity=identity,
            client=client,
            notice=notice,
        )
        content = self._content_path(queued.id)
        fd = os.open(content, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                for chunk in message.chunks(1 << 20):
                    write_all(fd, chunk)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            # The content's directory entry and the queue file's rename are in one
            # directory: the fsync of it below makes both durable at once. A crash
            # before it leaves at most a message nobody was told was accepted.
            self._write(queued, sync_directory=False)
            if self.fsync:
                fsync_dir(self._active)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self._state_path(queued.id))
            with contextlib.suppress(OSError):
                os.unlink(content)
            raise
        with self._lock:
            self._messages[queued.id] = queued
            self._locks.setdefault(queued.id, threading.Lock())
        log.info("%s: queued from <%s> for %d recipient(s), %d octets", queued.id,
                 queued.sender, len(recipients), queued.size)
        return queued

    # --- attempts and notices ---------------------------------------------------------

    def record(self, id: str, outcomes: Iterable[Outcome], *, now: float) -> QueuedMessage:
        """Record one delivery attempt made at ``now``: ``"delivered"``,
        ``"transferred"`` and ``"relayed"`` recipients are done, ``"permanent"`` ones failed, and
        ``"temporary"`` ones are due again by the schedule (or failed, marked
        :attr:`~QueuedRecipient.expired`, once it gives up). A recipient already final
        is left as it is: what one hop accepted is never tried again. Returns the new
        state; the message is removed when nothing more is owed for it."""
        schedule = self.schedule

        def change(message: QueuedMessage) -> QueuedMessage:
            recipients = list(message.recipients)
            for outcome in outcomes:
                if not 0 <= outcome.index < len(recipients):
                    raise IndexError(f"{id}: no recipient {outcome.index}")
                r = recipients[outcome.index]
                if r.final:
                    continue
                attempts = r.attempts + 1
                common = {"attempts": attempts, "last_attempt": now, "reply": outcome.reply,
                          "remote_mta": outcome.remote_mta}
                if outcome.status in ("delivered", "transferred", "relayed"):
                    r = replace(r, state=outcome.status, **common)  # type: ignore[arg-type]
                elif outcome.status == "permanent":
                    r = replace(r, state="failed", **common)  # type: ignore[arg-type]
                else:
                    again = schedule.next_attempt(
                        attempts=attempts, arrival=message.arrival, now=now
                    )
                    if again is None:
                        r = replace(r, state="failed", expired=True, **common)  # type: ignore[arg-type]
                    else:
                        r = replace(r, next_attempt=again, **common)  # type: ignore[arg-type]
                recipients[outcome.index] = r
            return message.with_recipients(tuple(recipients))

        return self._update(id, change, now)

    def notices(self, id: str, *, now: float) -> list[Notice]:
        """The notices owed for the message ``id`` at ``now`` (RFC 3461 §4.1's NOTIFY
        obeyed; none for a message from the null sender but one to the postmaster for
        its failures, RFC 5321 §4.5.5). Mark each as sent with :meth:`mark_notified`
        once the notice is itself queued."""
        return self.owed(self.get(id), now=now)

    def owed(self, message: QueuedMessage, *, now: float) -> list[Notice]:
        """:meth:`notices` for a message state already at hand."""
        failed: list[int] = []
        delayed: list[int] = []
        succeeded: list[int] = []
        delay_due = self.schedule.delay_due(message.arrival, now)
        for i, r in enumerate(message.recipients):
            if r.state == "failed":
                if "failure" not in r.notified and (r.wants("failure") or not message.sender):
                    failed.append(i)
            elif r.state == "queued":
                if delay_due and r.attempts and "delay" not in r.notified and r.wants("delay"):
                    delayed.append(i)
            elif r.state != "transferred" and "success" not in r.notified and r.wants(
                "success"
            ):
                # A next hop with DSN reports the success itself (RFC 3461 §4.1).
                succeeded.append(i)
        if not message.sender:
            # Never a notice to <>: a failure goes to the postmaster, unless the message
            # was that notice already (then it is dropped, and logged).
            if failed and message.notice != "postmaster":
                return [Notice(kind="failure", recipients=tuple(failed), to_postmaster=True)]
            return []
        out = []
        if failed:
            out.append(Notice(kind="failure", recipients=tuple(failed)))
        if delayed:
            out.append(Notice(kind="delay", recipients=tuple(delayed)))
        if succeeded:
            out.append(Notice(kind="success", recipients=tuple(succeeded)))
        return out

    def mark_notified(
        self, id: str, kind: NoticeKind, recipients: Sequence[int], *, now: float
    ) -> QueuedMessage:
        """Record that a notice of ``kind`` about ``recipients`` was queued (or is not
        to be sent). The message is removed when nothing more is owed for it."""

        def change(message: QueuedMessage) -> QueuedMessage:
            rs = list(message.recipients)
            for i in recipients:
                rs[i] = replace(rs[i], notified=rs[i].notified | {kind})
            return message.with_recipients(tuple(rs))

        return self._update(id, change, now)

    def finished(self, message: QueuedMessage, *, now: float) -> bool:
        """Whether nothing more is to be done for ``message``: every recipient final
        and every notice owed sent."""
        return not message.pending and not self.owed(message, now=now)

    # --- administration ---------------------------------------------------------------

    def retry(self, id: str, *, now: float) -> QueuedMessage:
        """Make every queued recipient of ``id`` due at ``now``."""

        def change(message: QueuedMessage) -> QueuedMessage:
            return message.with_recipients(tuple(
                r if r.final else replace(r, next_attempt=now) for r in message.recipients
            ))

        return self._update(id, change, now)

    def delete(self, id: str) -> None:
        """Remove the message ``id`` without any notice (an administrator's act)."""
        lock = self._lock_of(id)
        with lock:
            self.get(id)
            self._remove(id)
        log.info("%s: deleted from the queue", id)

    # --- files ------------------------------------------------------------------------

    def _state_path(self, id: str) -> str:
        return os.path.join(self._active, id)

    def _content_path(self, id: str) -> str:
        return os.path.join(self._active, id + _CONTENT)

    def _lock_of(self, id: str) -> threading.Lock:
        try:
            return self._locks[id]
        except KeyError:
            raise UnknownMessage(id) from None

    def _update(
        self, id: str, change: Callable[[QueuedMessage], QueuedMessage], now: float
    ) -> QueuedMessage:
        with self._lock_of(id):
            message = self.get(id)
            if not os.path.exists(self._state_path(id)):  # deleted by another process
                self._remove(id)
                raise UnknownMessage(id)
            new = change(message)
            if self.finished(new, now=now):
                self._remove(id)
                log.info("%s: done", id)
            elif new != message:
                self._write(new, sync_directory=True)
                with self._lock:
                    self._messages[id] = new
            return new

    def _write(self, message: QueuedMessage, *, sync_directory: bool) -> None:
        """Write the queue file anew: a temporary file, fsync, rename (and the
        directory's fsync)."""
        path = self._state_path(message.id)
        tmp = f"{path}.{threading.get_ident()}{_TEMP}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            write_all(fd, encode(message))
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.rename(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._stamp(message.id)
        if sync_directory and self.fsync:
            fsync_dir(self._active)

    def _remove(self, id: str) -> None:
        # The queue file first: a content file left alone is removed at recovery.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._state_path(id))
        if self.fsync:
            fsync_dir(self._active)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._content_path(id))
        with self._lock:
            self._messages.pop(id, None)
            self._locks.pop(id, None)
            self._stamps.pop(id, None)

    def _stamp(self, id: str) -> tuple[int, int] | None:
        """Note the queue file's identity, to tell our writes from other processes'."""
        try:
            st = os.stat(self._state_path(id))
        except FileNotFoundError:
            return None
        stamp = self._stamps[id] = (st.st_ino, st.st_mtime_ns)
        return stamp

    def refresh(self) -> int:
        """Take in what another process changed in the directory (``python -m
        mailagents queue retry`` or ``delete`` while the MTA runs): queue files
        written by others are read again, new ones loaded, removed ones dropped.
        Returns how many messages changed. A message being delivered when it was
        deleted elsewhere is dropped when its attempt is recorded."""
        changed = 0
        names = {n for n in os.listdir(self._active) if not n.endswith((_CONTENT, _TEMP))}
        for id in set(self._messages) - names:
            with self._lock:
                self._messages.pop(id, None)
                self._stamps.pop(id, None)
            changed += 1
        for id in names:
            try:
                st = os.stat(self._state_path(id))
            except FileNotFoundError:
                continue
            if self._stamps.get(id) == (st.st_ino, st.st_mtime_ns):
                continue
            lock = self._locks.setdefault(id, threading.Lock())
            with lock:
                try:
                    with open(self._state_path(id), "rb") as f:
                        message = decode(f.read())
                except (OSError, QueueFileError) as error:
                    log.warning("%s: not read again: %s", id, error)
                    continue
                with self._lock:
                    self._messages[id] = message
                    self._stamps[id] = (st.st_ino, st.st_mtime_ns)
            changed += 1
        return changed

    def _recover(self) -> int:
        names = os.listdir(self._active)
        states = {n for n in names if not n.endswith((_CONTENT, _TEMP))}
        for name in names:
            path = os.path.join(self._active, name)
            if name.endswith(_TEMP):
                os.unlink(path)  # a state change never renamed in
            elif name.endswith(_CONTENT) and name[: -len(_CONTENT)] not in states:
                log.info("%s: removing a message that was never accepted", name[: -len(_CONTENT)])
                os.unlink(path)
        for name in sorted(states):
            path = os.path.join(self._active, name)
            try:
                with open(path, "rb") as f:
                    message = decode(f.read())
                if message.id != name:
                    raise QueueFileError(f"the file names message {message.id!r}")
                size = os.stat(self._content_path(name)).st_size
                if size != message.size:
                    raise QueueFileError(f"the content has {size} octets, not {message.size}")
            except (OSError, QueueFileError) as error:
                self._quarantine(name, error)
                continue
            self._messages[name] = message
            self._locks[name] = threading.Lock()
            self._stamp(name)
        if self._messages:
            log.info("recovered %d queued message(s) from %s", len(self._messages),
                     self.directory)
        return len(self._messages)

    def _quarantine(self, name: str, error: Exception) -> None:
        log.error("%s: damaged queue file moved to %s: %s", name, self._corrupt, error)
        for file in (name, name + _CONTENT):
            with contextlib.suppress(FileNotFoundError):
                os.rename(os.path.join(self._active, file), os.path.join(self._corrupt, file))
