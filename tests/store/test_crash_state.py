"""Crash safety of what an IMAP session writes: MOVE, flag changes and \\Recent claims,
in a process killed with SIGKILL at random moments.

After every kill: each message is in one of the two folders, or both, never in neither
(and whole); under an unchanged UIDVALIDITY, HIGHESTMODSEQ never went backwards; the
side files (MODSEQ journal, mbox index, \\Recent watermark) still read.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import signal
import time
from pathlib import Path

import pytest

from mailagents.store import DELETED, FLAGGED, SEEN, Folder, Store
from tests.store.test_crash import expected_message, open_store

TIME_BUDGET = 20.0  # seconds per format
MIN_KILLS = 8  # see tests/store/test_crash.py for why only a floor
COUNT = 30


def compact(folder: Folder) -> None:
    """Rewrite the folder's side file whole (what a grown journal gets now and then)."""
    core = getattr(folder, "_core", None)
    if core is not None:  # Maildir: the MODSEQ journal, written anew and renamed over
        with core.uidlist.lock(), core.mutex:
            core.state.refresh()
            core.state.start(core.uidlist.uidvalidity)
            core.state.compact()
    else:  # mbox: the index, written anew and renamed over (with the mbox itself)
        folder.sync()  # type: ignore[attr-defined]


def shuffle_forever(kind: str, path: str, seed: int) -> None:
    """Child: move random batches between INBOX and Archive, change flags, claim
    \\Recent, for ever."""
    rng = random.Random(seed)
    store = open_store(kind, Path(path))
    while True:
        source, target = rng.sample(["INBOX", "Archive"], 2)
        with store.folder(source) as src, store.folder(target) as dst:
            uids = [m.uid for m in src.messages()]
            if not uids:
                continue
            batch = rng.sample(uids, min(len(uids), rng.randrange(1, 6)))
            action = rng.random()
            if action < 0.6:
                src.move(batch, dst)
            elif action < 0.9:
                src.set_flags(batch, [rng.choice([SEEN, FLAGGED, "Work", "$Label1"])], "add")
                src.set_flags(batch[:1], [SEEN, FLAGGED], "remove")
            elif action < 0.95:
                src.claim_recent()
            else:
                compact(src)


def snapshot(store: Store) -> dict[str, tuple[int, int, list[int]]]:
    """Per folder: UIDVALIDITY, HIGHESTMODSEQ and the message indexes found; every
    message is checked whole."""
    out = {}
    for name in ("INBOX", "Archive"):
        with store.folder(name) as folder:
            found = []
            for info in folder.messages():
                assert DELETED not in info.flags
                data = folder.read_message(info.uid)
                match = re.search(rb"Subject: crash (\d+)\r\n", data)
                assert match, f"a partial or foreign message is visible: {data[:80]!r}"
                index = int(match.group(1))
                assert data == expected_message(index), f"message {index} is not whole"
                found.append(index)
            status = folder.status()
            assert status.highestmodseq >= max((m.modseq for m in folder.messages()), default=0)
            out[name] = (status.uidvalidity, status.highestmodseq, found)
    return out


@pytest.mark.parametrize("kind", ["maildir", "mbox"])
def test_sigkill_during_moves_and_state_writes(kind: str, tmp_path: Path) -> None:
    with open_store(kind, tmp_path) as store:
        store.create_folder("Archive")
        with store.folder("INBOX") as inbox:
            for i in range(COUNT):
                inbox.append_bytes(expected_message(i))
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(99)
    last: dict[str, tuple[int, int]] = {}
    kills = moved_some = 0
    deadline = time.monotonic() + TIME_BUDGET
    while time.monotonic() < deadline:
        child = ctx.Process(target=shuffle_forever, args=(kind, str(tmp_path), kills))
        child.start()
        time.sleep(rng.uniform(0.01, 0.15))
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        kills += 1
        with open_store(kind, tmp_path) as store:
            seen = snapshot(store)
        everywhere = set(seen["INBOX"][2]) | set(seen["Archive"][2])
        assert everywhere == set(range(COUNT)), f"lost: {set(range(COUNT)) - everywhere}"
        moved_some += bool(seen["Archive"][2])
        for name, (uidvalidity, highest, _) in seen.items():
            before = last.get(name)
            if before is not None and before[0] == uidvalidity:
                assert highest >= before[1], f"{name}: HIGHESTMODSEQ went backwards"
            last[name] = (uidvalidity, highest)
    assert kills >= MIN_KILLS, f"only {kills} kills within the time budget"
    assert moved_some, "no kill happened after a move: nothing was tested"
