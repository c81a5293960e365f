"""Two concurrent IMAP sessions on one INBOX, driven by a Hypothesis state machine.

Our server (``StoreIMAPHandler`` over a Maildir, and over an mbox) runs on an event
loop in a thread the machine owns; two clients talk to it over raw sockets, and each
response frame is parsed with ``mailagents.imap.parse_response`` in the order it
arrived, so that every untagged response is seen where it was sent. A third party,
"another program" (a second ``Store`` over the same files, as an MDA would be),
appends, flags and expunges between the sessions' commands.

Each session keeps a model of its view, built only from what it was told: the UID of
each sequence number (``None`` until a FETCH told it), the flags and MODSEQs told. The
checks, at every response:

- UIDs strictly ascending with the sequence numbers, never reused (RFC 9051
  §2.3.1.1); UIDVALIDITY constant, UIDNEXT never going down;
- every ``* n EXPUNGE`` names a message the client knows, and moves the later ones
  down (§7.5.1); EXISTS never lowers the count (§7.4.1); no EXPUNGE (nor VANISHED,
  RFC 7162 §3.2.10) while no command is in progress, nor during FETCH, STORE or
  SEARCH (§7.5.1: the UID forms may carry them); with QRESYNC, VANISHED instead of
  EXPUNGE;
- with CONDSTORE, every untagged FETCH of flags carries MODSEQ (RFC 7162 §3.1), with
  QRESYNC also UID (§3.2.4), and a message's MODSEQ never goes down, and goes up
  when its flags change;

and at a sync point (both sessions NOOP): each view equals what a fresh
``FETCH 1:* (UID FLAGS)`` answers and what the store holds, and the two sessions agree
on the flags. A reselect with QRESYNC (RFC 7162 §3.2.5) must report every message
gone since (VANISHED (EARLIER)) and every flag change (FETCH).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from mailagents.agents._imap_session import StoreIMAPHandler, imap_config
from mailagents.aio.imap import IMAPServer
from mailagents.imap import Frame, SequenceSet, parse_response
from mailagents.imap import responses as r
from mailagents.store import MaildirStore, MboxStore, Store
from tests.agents.test_imap_session import QUICK, Users, message

T = TypeVar("T")
TIMEOUT = 30.0
RECENT = "\\Recent"
FLAGS = ["\\Seen", "\\Flagged", "\\Answered", "\\Deleted", "\\Draft", "$Label1", "Work"]
_LITERAL = re.compile(rb"~?\{(\d+)\+?\}$")
_NO_EXPUNGE = frozenset({"FETCH", "STORE", "SEARCH"})


def numbers_of(numbers: SequenceSet, largest: int) -> set[int]:
    """The numbers of a sequence set (``*`` is ``largest``)."""
    out: set[int] = set()
    for first, last in numbers.ranges:
        a = largest if first is None else first
        b = largest if last is None else last
        out.update(range(min(a, b), max(a, b) + 1))
    return out


def unknown_slot(view: list[int | None], uid: int) -> int | None:
    """The index of an entry of ``view`` whose UID is unknown and where ``uid`` fits
    in ascending order (the first of a run of such entries), or ``None``."""
    below = 0
    for i, known in enumerate(view):
        if known is not None:
            if known > uid:
                return None
            below = known
        elif below < uid:
            after = [u for u in view[i:] if u is not None]
            if not after or uid < after[0]:
                return i
    return None


def visible(flags: tuple[str, ...] | frozenset[str] | set[str]) -> frozenset[str]:
    """Flags as the store keeps them (``\\Recent`` is the session's own)."""
    return frozenset(f for f in flags if f != RECENT)


# --- the server, on a loop of its own -------------------------------------------------


class ServerThread:
    """Our IMAP server over ``store``, on an event loop in a thread."""

    def __init__(self, store: Store, *, watch: bool = True) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def stores(identity: str) -> Store:
            return store

        handler = StoreIMAPHandler(Users(), stores, watch=watch)
        config = imap_config(allow_plaintext_login=True)
        self.server = IMAPServer(handler, config, limits=QUICK)
        try:
            self.call(self.server.start("127.0.0.1", 0))
        except BaseException:
            self.stop_loop()
            raise
        self.port = self.server.port

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    def stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        if not self.thread.is_alive():
            self.loop.close()

    def close(self) -> None:
        try:
            self.call(self.server.close(2.0))
        finally:
            self.stop_loop()


# --- one client session -----------------------------------------------------------------


class Session:
    """A raw-socket IMAP client and its model of the selected INBOX."""

    def __init__(self, name: str, port: int, *, rev2: bool, condstore: bool, qresync: bool):
        self.name = name
        self.rev2 = rev2
        self.qresync = qresync
        self.condstore = condstore or qresync  # RFC 7162 §3.2.3
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = bytearray()
        self.n = 0
        self.log: list[str] = []
        # The model of the selected mailbox.
        self.uids: list[int | None] = []
        self.flags: dict[int, frozenset[str]] = {}
        self.modseqs: dict[int, int] = {}
        self.flags_at: dict[int, int] = {}  # the MODSEQ that came with the flags told
        self.gone: set[int] = set()  # UIDs told expunged: never again
        self.high = 0  # the highest UID this session was ever told
        self.uidvalidity: int | None = None
        self.uidnext = 0
        self.highestmodseq = 0
        self.read_only = False
        self.selected = False
        self.selected_at = 0
        # What the command in progress was told, for the rules to check.
        self.fetched: list[r.FetchData] = []
        self.fetched_uids: list[int | None] = []  # the UID of each, as numbered then
        self.searched: list[int] | None = None
        self.vanished_earlier: set[int] = set()
        self.codes: list[Any] = []
        greeting = self.read()
        assert isinstance(greeting, r.StatusResponse) and greeting.status == "OK", greeting
        self.command("LOGIN user secret")
        enable = (["IMAP4rev2"] if rev2 else []) + (
            ["QRESYNC"] if qresync else ["CONDSTORE"] if condstore else []
        )
        if enable:
            self.command("ENABLE " + " ".join(enable))
        self.select()

    def close(self) -> None:
        try:
            self.sock.sendall(b"z LOGOUT\r\n")
        except OSError:
            pass
        self.sock.close()

    # --- the wire ---------------------------------------------------------------------

    def _frame(self) -> Frame | None:
        """A whole response frame from the buffer, or ``None`` yet."""
        lines: list[bytes] = []
        literals: list[bytes] = []
        pos = 0
        while True:
            end = self.buf.find(b"\r\n", pos)
            if end < 0:
                return None
            line = bytes(self.buf[pos:end])
            lines.append(line)
            literal = _LITERAL.search(line)
            if literal is None:
                del self.buf[: end + 2]
                return Frame(lines=tuple(lines), literals=tuple(literals))
            start = end + 2
            size = int(literal.group(1))
            if len(self.buf) < start + size:
                return None
            literals.append(bytes(self.buf[start : start + size]))
            pos = start + size

    def _recv(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, BlockingIOError):
            return False
        finally:
            self.sock.settimeout(TIMEOUT)
        assert data, f"{self.name}: the server closed the connection"
        self.buf += data
        return True

    def read(self, timeout: float = TIMEOUT) -> r.Response:
        deadline = time.monotonic() + timeout
        while (frame := self._frame()) is None:
            left = deadline - time.monotonic()
            assert left > 0, f"{self.name}: no response in {timeout} s"
            self._recv(left)
        response = parse_response(frame, utf8=self.rev2)
        self.log.append(b" / ".join(frame.lines)[:200].decode("utf-8", "replace"))
        del self.log[:-60]
        return response

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def collect(self, wait: float, verb: str | None, quiet: float = TIMEOUT) -> None:
        """Apply what arrives within ``wait`` seconds (and at most ``quiet`` seconds
        after the last frame), as received while ``verb`` was in progress."""
        deadline = time.monotonic() + wait
        while True:
            while (frame := self._frame()) is not None:
                line = b" / ".join(frame.lines)[:200].decode("utf-8", "replace")
                self.log.append(f"({verb or 'unsolicited'}) {line}")
                self.apply(parse_response(frame, utf8=self.rev2), verb, False)
                deadline = min(deadline, time.monotonic() + quiet)
            if not self._recv(max(0.0, deadline - time.monotonic())):
                return

    def drain(self) -> None:
        """What the server sent while no command was in progress."""
        self.collect(0.0, None)

    def command(
        self, text: str, literal: bytes | None = None, *, ok: tuple[str, ...] = ("OK",)
    ) -> r.StatusResponse:
        """Send one command, apply every untagged response, return the tagged one."""
        self.drain()
        self.n += 1
        tag = f"{self.name}{self.n}"
        words = text.split()
        uid_form = words[0].upper() == "UID"
        verb = (words[1] if uid_form else words[0]).upper()
        self.fetched, self.fetched_uids, self.searched, self.codes = [], [], None, []
        self.vanished_earlier = set()
        self.log.append(f">>> {tag} {text}")
        if literal is None:
            self.send(f"{tag} {text}\r\n".encode())
        else:
            self.send(f"{tag} {text} {{{len(literal)}+}}\r\n".encode() + literal + b"\r\n")
        return self.finish(tag, verb, uid_form, ok)

    def finish(self, tag: str, verb: str, uid_form: bool, ok: tuple[str, ...]) -> r.StatusResponse:
        while True:
            response = self.read()
            if isinstance(response, r.StatusResponse) and response.tag == tag:
                assert response.status in ok, (self.name, response, self.log[-10:])
                if response.code is not None:
                    self.codes.append(response.code)
                return response
            self.apply(response, verb, uid_form)

    # --- the model --------------------------------------------------------------------

    def fail(self, why: str) -> None:
        raise AssertionError(f"{self.name}: {why}\n" + "\n".join(self.log[-25:]))

    def check(self, condition: bool, why: str) -> None:
        if not condition:
            self.fail(why)

    def learn_uid(self, seq: int, uid: int) -> None:
        known = self.uids[seq - 1]
        if known is not None:
            self.check(known == uid, f"* {seq} FETCH says UID {uid}, it was {known}")
            return
        self.check(uid not in self.gone, f"UID {uid} came back after its expunge")
        before = [u for u in self.uids[: seq - 1] if u is not None]
        after = [u for u in self.uids[seq:] if u is not None]
        self.check(not before or before[-1] < uid, f"UID {uid} at {seq} not above {before[-1:]}")
        self.check(not after or uid < after[0], f"UID {uid} at {seq} not below {after[:1]}")
        self.uids[seq - 1] = uid
        self.high = max(self.high, uid)

    def apply(self, response: r.Response, verb: str | None, uid_form: bool) -> None:
        """One untagged response, received while ``verb`` was in progress."""
        may_expunge = verb is not None and (uid_form or verb not in _NO_EXPUNGE)
        if isinstance(response, r.ExistsData):
            self.check(response.count >= len(self.uids), f"EXISTS went down: {response}")
            self.uids.extend([None] * (response.count - len(self.uids)))
        elif isinstance(response, r.ExpungeData):
            self.check(may_expunge, f"EXPUNGE during {verb} (uid {uid_form})")
            self.check(not self.qresync, "EXPUNGE with QRESYNC on (RFC 7162 §3.2.10)")
            n = response.number
            self.check(1 <= n <= len(self.uids), f"EXPUNGE {n} of {len(self.uids)}")
            uid = self.uids.pop(n - 1)
            if uid is not None:
                self.gone.add(uid)
                self.flags.pop(uid, None)
        elif isinstance(response, r.VanishedData):
            uids = numbers_of(response.uids, 0)
            if response.earlier:
                self.check(verb in ("SELECT", "EXAMINE", "FETCH"), f"VANISHED (EARLIER) in {verb}")
                self.vanished_earlier |= uids
                return
            self.check(self.qresync, "VANISHED without QRESYNC")
            self.check(may_expunge, f"VANISHED during {verb} (uid {uid_form})")
            for uid in sorted(uids):
                if uid in self.uids:
                    self.uids.remove(uid)
                else:
                    # A message whose UID the client was not told yet: a slot where
                    # that UID fits between the known ones (any of a run of such slots).
                    self.uids.pop(self.slot_for(uid))
                self.gone.add(uid)
                self.flags.pop(uid, None)
        elif isinstance(response, r.FetchData):
            self.fetched.append(response)
            n = response.number
            self.check(1 <= n <= len(self.uids), f"FETCH {n} of {len(self.uids)}")
            if response.flags is not None and self.condstore:
                self.check(response.modseq is not None, "FETCH FLAGS without MODSEQ")
            if response.flags is not None and self.qresync:
                self.check(response.uid is not None, "FETCH FLAGS without UID (QRESYNC)")
            if response.uid is not None:
                self.learn_uid(n, response.uid)
            uid = self.uids[n - 1]
            self.fetched_uids.append(uid)
            if uid is None:
                return
            old_flags = self.flags.get(uid)
            if response.flags is not None:
                self.flags[uid] = visible(response.flags)
            if response.modseq is not None:
                old = self.modseqs.get(uid, 0)
                self.check(response.modseq >= old, f"MODSEQ of {uid} down: {old}->{response}")
                self.modseqs[uid] = response.modseq
                if response.flags is not None:
                    if old_flags is not None and visible(response.flags) != old_flags:
                        at = self.flags_at.get(uid, 0)
                        self.check(response.modseq > at, f"flags of {uid} changed, MODSEQ not")
                    self.flags_at[uid] = response.modseq
        elif isinstance(response, r.SearchData):
            self.searched = list(response.numbers)
        elif isinstance(response, r.ESearchData):
            self.searched = sorted(numbers_of(response.all, 0)) if response.all else []
        elif isinstance(response, r.StatusResponse):
            code = response.code
            self.codes.append(code)
            if getattr(code, "name", None) == "CLOSED":
                # RFC 9051 §6.3.2: what follows is the newly selected mailbox's.
                self.check(verb in ("SELECT", "EXAMINE"), f"CLOSED during {verb}")
                self.uids, self.flags = [], {}
            elif isinstance(code, r.UidValidityCode):
                if self.uidvalidity is not None:
                    self.check(code.uidvalidity == self.uidvalidity, "UIDVALIDITY changed")
                self.uidvalidity = code.uidvalidity
            elif isinstance(code, r.UidNextCode):
                self.check(code.uidnext >= self.uidnext, f"UIDNEXT down {self.uidnext}->{code}")
                self.check(code.uidnext > self.high, f"UIDNEXT {code} not above {self.high}")
                self.uidnext = code.uidnext
            elif isinstance(code, r.HighestModSeqCode):
                self.check(code.modseq >= self.highestmodseq, "HIGHESTMODSEQ went down")
                self.highestmodseq = code.modseq

    def slot_for(self, uid: int) -> int:
        """The index of an unknown entry where ``uid`` fits in ascending order."""
        slot = unknown_slot(self.uids, uid)
        if slot is None:
            self.fail(f"VANISHED {uid}, a UID the client does not know: {self.uids}")
            raise AssertionError  # not reached
        return slot

    def check_view(self) -> None:
        """The model is consistent: UIDs known, strictly ascending."""
        known = [u for u in self.uids if u is not None]
        self.check(known == sorted(set(known)), f"UIDs not ascending: {self.uids}")
        self.check(not set(known) & self.gone, "an expunged UID is back")

    def learn(self) -> None:
        """Ask the UIDs (and flags) of the messages EXISTS announced."""
        for _ in range(5):
            unknown = [n for n, u in enumerate(self.uids, 1) if u is None]
            if not unknown:
                return
            items = "UID FLAGS MODSEQ" if self.condstore else "UID FLAGS"
            self.command(f"FETCH {unknown[0]}:* ({items})")
        self.fail(f"UIDs still unknown: {self.uids}")

    # --- commands the rules use ---------------------------------------------------------

    def select(self, *, examine: bool = False, resync: bool = False) -> None:
        self.drain()
        old = {u: f for u, f in self.flags.items() if u in self.uids}
        old_view = list(self.uids)
        old_uids = [u for u in self.uids if u is not None]
        since = self.highestmodseq
        verb = "EXAMINE" if examine else "SELECT"
        if resync and self.qresync and self.uidvalidity is not None and since:
            known = SequenceSet.from_numbers(old_uids) if old_uids else None
            extra = f" {known}" if known is not None else ""
            self.command(f"{verb} INBOX (QRESYNC ({self.uidvalidity} {since}{extra}))")
        else:
            resync = False
            self.command(f"{verb} INBOX")
        self.selected, self.read_only = True, examine
        self.selected_at = self.highestmodseq  # HIGHESTMODSEQ of this SELECT
        self.high = max([self.high, *old_uids])
        resynced = {f.uid: visible(f.flags) for f in self.fetched if f.uid and f.flags is not None}
        earlier = set(self.vanished_earlier)
        self.learn()
        now = [u for u in self.uids if u is not None]
        for uid in now:
            # Known before, or new, or announced before without its UID asked.
            fits = unknown_slot(old_view, uid) is not None
            self.check(uid in old_uids or uid > max(old_uids, default=0) or fits,
                       f"UID {uid} new after the reselect, below known ones")  # fmt: skip
        if resync:
            # RFC 7162 §3.2.5: every message expunged since, every flag change since.
            for uid in old_uids:
                if uid not in now:
                    self.check(uid in earlier or uid in self.gone,
                               f"UID {uid} gone, not in VANISHED (EARLIER)")  # fmt: skip
            for uid in now:
                if uid in old and self.flags.get(uid) != old[uid]:
                    self.check(uid in resynced, f"flags of {uid} changed, no FETCH in SELECT")

    def fetch_all(self) -> list[tuple[int, frozenset[str], int | None]]:
        """``FETCH 1:* (UID FLAGS [MODSEQ])`` as (uid, flags, modseq) by number."""
        if not self.uids:
            self.command("NOOP")
            return []
        items = "UID FLAGS MODSEQ" if self.condstore else "UID FLAGS"
        self.command(f"FETCH 1:* ({items})")
        got = {f.number: f for f in self.fetched if f.uid is not None}
        self.check(sorted(got) == list(range(1, len(self.uids) + 1)), f"FETCH 1:* gave {got}")
        return [(got[n].uid or 0, visible(got[n].flags or ()), got[n].modseq) for n in sorted(got)]


# --- the state machine -------------------------------------------------------------------


def open_store(kind: str, root: Path) -> Store:
    if kind == "maildir":
        return MaildirStore(root / "Maildir", fsync=False)
    return MboxStore(root / "mail", inbox=root / "inbox", fsync=False)


sessions = st.sampled_from([0, 1])
flag_sets = st.frozensets(st.sampled_from(FLAGS), max_size=3)
picks = st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=3)


class TwoSessions(RuleBasedStateMachine):
    """Session 0 is IMAP4rev1 (CONDSTORE or not), session 1 IMAP4rev2 (QRESYNC or
    CONDSTORE), both on INBOX; ``mda`` is another program on the same files."""

    kind = "maildir"

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="mailagents-two-"))
        self.store = open_store(self.kind, self.tmp)
        self.mda = open_store(self.kind, self.tmp)
        self.store.create_folder("Other")
        with self.mda.folder("INBOX") as inbox:
            for n in range(3):
                inbox.append_bytes(message(n), flags=("\\Seen",) if n == 0 else ())
        self.server: ServerThread | None = None
        self.s: list[Session] = []
        self.counter = 10
        self.watch = True

    @initialize(a_condstore=st.booleans(), b_qresync=st.booleans())
    def start(self, a_condstore: bool, b_qresync: bool) -> None:
        self.server = ServerThread(self.store, watch=self.watch)
        port = self.server.port  # each session is closed by teardown once it is made
        self.s.append(Session("a", port, rev2=False, condstore=a_condstore, qresync=False))
        self.s.append(Session("b", port, rev2=True, condstore=True, qresync=b_qresync))

    def teardown(self) -> None:
        try:
            for session in self.s:
                session.close()
            if self.server is not None:
                self.server.close()
        finally:
            self.mda.close()
            self.store.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- helpers ------------------------------------------------------------------------

    def next_message(self) -> bytes:
        self.counter += 1
        return message(self.counter)

    def store_state(self) -> dict[int, tuple[frozenset[str], int]]:
        with self.mda.folder("INBOX") as inbox:
            return {m.uid: (frozenset(m.flags), m.modseq) for m in inbox.messages()}

    def seqset(self, s: Session, pick: list[int], uid: bool) -> str:
        """A set of sequence numbers (or UIDs) of messages the session knows; a UID
        form may name a UID that no longer exists."""
        if uid:
            known = [u for u in s.uids if u is not None] + sorted(s.gone)[-2:]
            if not known:
                return "1:*"
            return ",".join(str(known[p % len(known)]) for p in pick)
        count = len(s.uids)
        if pick[0] % 7 == 0:
            return "1:*"
        return ",".join(str(1 + p % count) for p in pick)

    def after(self, s: Session) -> None:
        s.learn()
        s.check_view()

    # --- rules --------------------------------------------------------------------------

    @rule(i=sessions, flags=flag_sets)
    def append(self, i: int, flags: frozenset[str]) -> None:
        s = self.s[i]
        listed = " ".join(sorted(flags))
        done = s.command(f"APPEND INBOX ({listed})", self.next_message())
        code = done.code
        assert isinstance(code, r.AppendUidCode), done
        (uid,) = numbers_of(code.uids, 0)
        s.check(uid > s.high and uid not in s.gone, f"APPENDUID {uid} not above {s.high}")
        self.after(s)

    @rule(flags=flag_sets, assign=st.booleans())
    def mda_append(self, flags: frozenset[str], assign: bool) -> None:
        with self.mda.folder("INBOX") as inbox:
            inbox.append_bytes(self.next_message(), flags=flags, assign_uid=assign)

    @rule(pick=picks, flags=flag_sets, mode=st.sampled_from(["add", "remove", "set"]))
    def mda_flags(self, pick: list[int], flags: frozenset[str], mode: Any) -> None:
        with self.mda.folder("INBOX") as inbox:
            uids = [m.uid for m in inbox.messages()]
            if uids:
                inbox.set_flags({uids[p % len(uids)] for p in pick}, flags, mode)

    @rule(pick=picks)
    def mda_expunge(self, pick: list[int]) -> None:
        with self.mda.folder("INBOX") as inbox:
            uids = [m.uid for m in inbox.messages()]
            if uids:
                gone = {uids[p % len(uids)] for p in pick}
                inbox.set_flags(gone, ["\\Deleted"], "add")  # as a client would, first
                assert set(inbox.expunge(gone)) == gone

    @rule(
        i=sessions,
        pick=picks,
        uid=st.booleans(),
        action=st.sampled_from(["+", "-", ""]),
        silent=st.booleans(),
        flags=flag_sets,
    )
    def store_flags(
        self, i: int, pick: list[int], uid: bool, action: str, silent: bool, flags: frozenset[str]
    ) -> None:
        s = self.s[i]
        if not s.uids:
            return
        numbers = self.seqset(s, pick, uid)
        verb = f"{action}FLAGS{'.SILENT' if silent else ''}"
        command = f"{'UID ' if uid else ''}STORE {numbers} {verb} ({' '.join(sorted(flags))})"
        if s.read_only:
            s.command(command, ok=("NO",))
            self.after(s)
            return
        known = [u for u in s.uids if u is not None]
        if uid:
            named = numbers_of(SequenceSet.parse(numbers), max(known, default=0))
            targets = {u for u in known if u in named}
        else:
            named = numbers_of(SequenceSet.parse(numbers), len(s.uids))
            targets = {u for n, u in enumerate(s.uids, 1) if n in named and u is not None}
        targets &= set(self.store_state())
        s.command(command, ok=("OK", "NO"))
        last: dict[int, frozenset[str]] = {}
        with_uid: set[int] = set()
        for data, at in zip(s.fetched, s.fetched_uids, strict=True):
            if at not in targets:
                continue  # another program's change, told now
            if data.uid is not None:
                with_uid.add(at)
            if data.flags is not None:
                last[at] = visible(data.flags)
        if not silent:
            s.check(set(last) >= targets, f"STORE told nothing of {sorted(targets - set(last))}")
            # RFC 9051 §6.4.9: the FETCH of a UID STORE carries UID (an update of
            # another program's change may come too, without).
            s.check(not uid or with_uid >= targets, f"UID STORE: no UID for {targets - with_uid}")
        for u in targets:
            # What the client was told last must hold the change (an update of another
            # program's change, sent after the STORE's FETCH, must be as new). After
            # .SILENT the client applies its change to what it knew: a FETCH sent by
            # a wake just before the command may arrive during it.
            old = last.get(u, s.flags.get(u, frozenset()))
            new = old | flags if action == "+" else old - flags if action == "-" else flags
            if not silent:
                s.check(last[u] == new, f"{verb} {sorted(flags)}: {u} told {sorted(last[u])}")
            s.flags[u] = new
        self.after(s)

    @rule(i=sessions, pick=picks, flags=flag_sets, uid=st.booleans())
    def store_unchangedsince(
        self, i: int, pick: list[int], flags: frozenset[str], uid: bool
    ) -> None:
        """RFC 7162 §3.1.3: STORE (UNCHANGEDSINCE m) with the MODSEQ the session was
        told: refused (MODIFIED) exactly for the messages changed since."""
        s = self.s[i]
        known = [(n, u) for n, u in enumerate(s.uids, 1) if u is not None and u in s.modseqs]
        if not s.condstore or s.read_only or not known:
            return
        n, u = known[pick[0] % len(known)]
        told = s.modseqs[u]
        before = self.store_state().get(u)
        if before is None:
            return  # expunged by another: RFC 2180 lets the server answer either way
        number = u if uid else n
        listed = " ".join(sorted(flags))
        done = s.command(
            f"{'UID ' if uid else ''}STORE {number} (UNCHANGEDSINCE {told}) +FLAGS ({listed})"
        )
        code = done.code
        refused = numbers_of(code.uids, 0) if isinstance(code, r.ModifiedCode) else set()
        changed_since = before[1] > told
        s.check((number in refused) == changed_since,
                f"UNCHANGEDSINCE {told}, store MODSEQ {before[1]}: MODIFIED {refused}")  # fmt: skip
        after = self.store_state()[u]
        if changed_since:
            s.check(after == before, f"refused STORE changed {u}: {before} -> {after}")
        else:
            s.check(flags <= after[0], f"STORE +FLAGS {sorted(flags)} gave {after}")
        self.after(s)

    @rule(i=sessions, pick=picks, uid=st.booleans(), move=st.booleans(),
          into=st.sampled_from(["Other", "INBOX"]))  # fmt: skip
    def copy_or_move(self, i: int, pick: list[int], uid: bool, move: bool, into: str) -> None:
        s = self.s[i]
        if not s.uids:
            return
        target = "Other" if move else into
        numbers = self.seqset(s, pick, uid)
        verb = "MOVE" if move else "COPY"
        command = f"{'UID ' if uid else ''}{verb} {numbers} {target}"
        if move and s.read_only:
            s.command(command, ok=("NO",))
            self.after(s)
            return
        s.command(command, ok=("OK", "NO"))
        for code in s.codes:
            if isinstance(code, r.CopyUidCode) and target == "INBOX":
                for new in numbers_of(code.destination, 0):
                    s.check(new > s.high, f"COPYUID {new} not above {s.high}")
        self.after(s)

    @rule(i=sessions)
    def expunge(self, i: int) -> None:
        s = self.s[i]
        s.command("EXPUNGE", ok=("NO",) if s.read_only else ("OK",))
        if not s.read_only:
            deleted = [u for u, (f, _) in self.store_state().items() if "\\Deleted" in f]
            s.check(not deleted, f"\\Deleted messages left after EXPUNGE: {deleted}")
        self.after(s)

    @rule(i=sessions, pick=picks)
    def uid_expunge(self, i: int, pick: list[int]) -> None:
        s = self.s[i]
        if not s.uids:
            return
        numbers = self.seqset(s, pick, True)
        s.command(f"UID EXPUNGE {numbers}", ok=("NO",) if s.read_only else ("OK",))
        self.after(s)

    @rule(i=sessions, pick=picks, uid=st.booleans())
    def fetch(self, i: int, pick: list[int], uid: bool) -> None:
        s = self.s[i]
        if not s.uids:
            return
        numbers = self.seqset(s, pick, uid)
        items = "FLAGS UID MODSEQ" if s.condstore else "FLAGS UID"
        s.command(f"{'UID ' if uid else ''}FETCH {numbers} ({items})")
        self.after(s)

    @rule(i=sessions, pick=picks, uid=st.booleans(), peek=st.booleans())
    def fetch_body(self, i: int, pick: list[int], uid: bool, peek: bool) -> None:
        """A body fetch: without PEEK it sets \\Seen, and says so (RFC 9051 §6.4.5)."""
        s = self.s[i]
        if not s.uids:
            return
        numbers = self.seqset(s, pick, uid)
        section = "BODY.PEEK[HEADER]" if peek else "BODY[]"
        unseen = {u for u, (f, _) in self.store_state().items() if "\\Seen" not in f}
        s.command(f"{'UID ' if uid else ''}FETCH {numbers} ({section})", ok=("OK", "NO"))
        in_store = self.store_state()
        for data, at in zip(s.fetched, s.fetched_uids, strict=True):
            if not data.sections or peek or s.read_only or at not in in_store:
                continue
            if at in unseen or data.flags is not None:
                s.check(data.flags is not None and "\\Seen" in data.flags,
                        f"BODY[] without FLAGS (\\Seen): {data}")  # fmt: skip
        self.after(s)

    @rule(i=sessions, uid=st.booleans(),
          key=st.sampled_from(["ALL", "DELETED", "UNSEEN", "FLAGGED", "KEYWORD Work"]))  # fmt: skip
    def search(self, i: int, uid: bool, key: str) -> None:
        s = self.s[i]
        s.drain()
        knew = {u for u in s.uids if u is not None}
        s.command(f"{'UID ' if uid else ''}SEARCH {key}")
        found = s.searched
        s.check(found is not None, "no SEARCH data")
        assert found is not None
        in_store = self.store_state()
        if uid:
            hits = set(found)
            s.learn()  # the UIDs of messages EXISTS announced during the SEARCH
            strange = hits - knew - {u for u in s.uids if u is not None}
            # Messages announced (before or during the SEARCH) and expunged before
            # their UIDs were asked: above every UID the client knew.
            s.check(all(h > max(knew, default=0) for h in strange),
                    f"UID SEARCH found UIDs the client does not know: {found}")  # fmt: skip
        else:
            s.check(all(1 <= n <= len(s.uids) for n in found), f"SEARCH numbers {found}")
            hits = {u for n in found if (u := s.uids[n - 1]) is not None}
        flag = {"DELETED": "\\Deleted", "UNSEEN": "\\Seen", "FLAGGED": "\\Flagged",
                "KEYWORD Work": "Work"}.get(key)  # fmt: skip
        for u in s.uids:
            if u not in knew or u not in in_store or u not in s.flags:
                # New during the SEARCH (its EXISTS may follow the result), or expunged
                # by another: either answer is right (RFC 2180 §4.1).
                continue
            has = flag is None or (flag in s.flags[u]) != (key == "UNSEEN")
            s.check((u in hits) == has, f"SEARCH {key}: {u} {s.flags[u]} hits {sorted(hits)}")
        self.after(s)

    @rule(i=sessions)
    def noop(self, i: int) -> None:
        self.s[i].command("NOOP")
        self.after(self.s[i])

    @rule(i=sessions, meanwhile=st.sampled_from(["append", "flag", "expunge", "other"]),
          pick=picks)  # fmt: skip
    def idle(self, i: int, meanwhile: str, pick: list[int]) -> None:
        s, other = self.s[i], self.s[1 - i]
        s.drain()
        s.n += 1
        tag = f"{s.name}{s.n}"
        s.log.append(f">>> {tag} IDLE")
        s.send(f"{tag} IDLE\r\n".encode())
        while not isinstance(response := s.read(), r.Continuation):
            s.apply(response, "IDLE", False)
        if meanwhile == "append":
            self.mda_append(frozenset(), True)
        elif meanwhile == "flag":
            self.mda_flags(pick, frozenset({"\\Flagged"}), "add")
        elif meanwhile == "expunge":
            self.mda_expunge(pick)
        elif other.uids and not other.read_only:
            other.command(f"STORE {1 + pick[0] % len(other.uids)} +FLAGS (\\Answered)")
            self.after(other)
        # The watch wakes the session; whatever came in a moment is applied in order.
        # (no timing is asserted: what did not come yet comes at the next command).
        s.collect(0.3, "IDLE", quiet=0.05)
        s.send(b"DONE\r\n")
        s.finish(tag, "IDLE", False, ("OK",))
        self.after(s)

    @rule(i=sessions, expunge=st.booleans())
    def close_and_select(self, i: int, expunge: bool) -> None:
        """CLOSE (expunges \\Deleted quietly, RFC 9051 §6.4.1) or UNSELECT (RFC 3691),
        then SELECT again."""
        s = self.s[i]
        s.command("CLOSE" if expunge else "UNSELECT")
        if expunge and not s.read_only:
            deleted = [u for u, (f, _) in self.store_state().items() if "\\Deleted" in f]
            s.check(not deleted, f"\\Deleted messages left after CLOSE: {deleted}")
        s.high = max([s.high, *(u for u in s.uids if u is not None)])
        s.uids, s.flags = [], {}
        s.select()
        self.after(s)

    @rule(pick=picks)
    def changedsince_vanished(self, pick: list[int]) -> None:
        """UID FETCH (CHANGEDSINCE m VANISHED) in the QRESYNC session, m its SELECT's
        HIGHESTMODSEQ (RFC 7162 §3.2.6): every UID expunged since and every message
        changed since, nothing older."""
        s = self.s[1]
        if not s.qresync or not s.selected_at:
            return
        s.drain()
        since = s.selected_at
        before = set(self.store_state())
        knew = {u for u in s.uids if u is not None} | s.gone
        s.command(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {since} VANISHED)")
        state = self.store_state()
        s.check(before == set(state), "the store changed during the command")
        for uid in knew - set(state):
            s.check(uid in s.vanished_earlier or uid in s.gone,
                    f"UID {uid} expunged since {since}, not in VANISHED (EARLIER)")  # fmt: skip
        s.check(not s.vanished_earlier & set(state), f"VANISHED {s.vanished_earlier} exist")
        told = {f.uid: f.modseq for f in s.fetched if f.uid is not None}
        for uid, (_, modseq) in state.items():
            if uid in knew and modseq > since:
                s.check(uid in told, f"UID {uid} changed (MODSEQ {modseq} > {since}), no FETCH")
        for uid, modseq in told.items():
            s.check(modseq is not None, f"FETCH of {uid} without MODSEQ under CHANGEDSINCE")
        self.after(s)

    @rule(i=sessions, examine=st.booleans(), resync=st.booleans())
    def reselect(self, i: int, examine: bool, resync: bool) -> None:
        s = self.s[i]
        s.select(examine=examine, resync=resync)
        self.after(s)

    @rule()
    def sync(self) -> None:
        """Both NOOP: each view is what a fresh FETCH and the store say, and the two
        sessions agree on every flag."""
        for s in self.s:
            s.command("NOOP")
            s.learn()
        state = self.store_state()
        views = []
        for s in self.s:
            fresh = s.fetch_all()
            s.check([u for u, _, _ in fresh] == s.uids, f"FETCH 1:* {fresh} vs {s.uids}")
            s.check([u for u, _, _ in fresh] == sorted(state), f"store {sorted(state)}")
            for uid, flags, modseq in fresh:
                s.check(s.flags.get(uid) == flags, f"{uid}: told {s.flags.get(uid)}, now {flags}")
                s.check(state[uid][0] == flags, f"{uid}: store {state[uid][0]}, IMAP {flags}")
                if modseq is not None:
                    s.check(modseq == state[uid][1], f"{uid}: MODSEQ {modseq} vs {state[uid]}")
            views.append({u: f for u, f, _ in fresh})
        assert views[0] == views[1], views

    @invariant()
    def views_hold(self) -> None:
        for s in self.s:
            s.check_view()
            s.check(None not in s.uids, f"UIDs unknown after a step: {s.uids}")


class TwoSessionsMbox(TwoSessions):
    kind = "mbox"


SETTINGS = settings(
    # 40 in CI; the longer profiles (HYPOTHESIS_PROFILE=dev or thorough) run theirs.
    max_examples=max(40, settings.default.max_examples)
    if settings.default.max_examples > 60
    else 40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize("machine", [TwoSessions, TwoSessionsMbox], ids=["maildir", "mbox"])
def test_two_sessions_keep_the_rfc_invariants(machine: type[TwoSessions]) -> None:
    run_state_machine_as_test(machine, settings=SETTINGS)


# --- what the machine found, as plain regression tests -----------------------------------

MACHINES = {"maildir": TwoSessions, "mbox": TwoSessionsMbox}


@contextmanager
def rig(
    kind: str, *, a_condstore: bool = False, b_qresync: bool = True, watch: bool = True
) -> Iterator[TwoSessions]:
    """The machine's set-up, for a hand-written sequence of its rules (``watch``
    false: no wake between commands, so what a command is told is all its own)."""
    machine = MACHINES[kind]()
    machine.watch = watch
    try:
        machine.start(a_condstore=a_condstore, b_qresync=b_qresync)
        yield machine
    finally:
        machine.teardown()


@pytest.mark.parametrize("kind", MACHINES)
def test_store_in_a_qresync_session_tells_the_uid(kind: str) -> None:
    """RFC 7162 §3.2.4: with QRESYNC on, the FETCH a plain STORE causes carries UID
    and MODSEQ (it had MODSEQ only)."""
    with rig(kind) as m:
        b = m.s[1]
        b.command("STORE 2 +FLAGS (\\Answered)")
        assert [(f.number, f.uid) for f in b.fetched] == [(2, b.uids[1])]
        assert b.fetched[0].modseq is not None


@pytest.mark.parametrize("kind", MACHINES)
@pytest.mark.parametrize("silent", [False, True], ids=["told", "silent"])
def test_store_after_another_programs_change_tells_no_older_flags(kind: str, silent: bool) -> None:
    """Another program flags every message \\Deleted; then the session's STORE
    replaces the flags. The update of the other change, read before the STORE, went
    out after it with the old flags, so the client was left believing \\Deleted."""
    with rig(kind, a_condstore=False, watch=False) as m:
        a = m.s[0]
        m.mda_flags([0, 1, 2], frozenset({"\\Deleted"}), "add")
        a.command(f"STORE 1:* FLAGS{'.SILENT' if silent else ''} (\\Answered)")
        told = [(f.number, visible(f.flags)) for f in a.fetched if f.flags is not None]
        assert all(flags == {"\\Answered"} for _, flags in told), told
        assert {n for n, _ in told} == {1, 2, 3}  # the update still goes out: newest flags
        m.sync()


@pytest.mark.parametrize("kind", MACHINES)
def test_body_fetch_setting_seen_in_a_qresync_session(kind: str) -> None:
    """FETCH BODY[] sets \\Seen: with QRESYNC on, the FETCH says UID and MODSEQ
    (RFC 7162 §3.2.4), and another program's change read before it is not told after
    it with the older flags."""
    with rig(kind, watch=False) as m:
        b = m.s[1]
        m.mda_flags([1], frozenset({"\\Flagged"}), "add")
        b.command("FETCH 2 (BODY[])")
        (data,) = b.fetched
        assert data.uid == b.uids[1] and data.modseq == m.store_state()[data.uid][1]
        assert data.flags is not None and set(data.flags) == {"\\Flagged", "\\Seen"}
        m.sync()
