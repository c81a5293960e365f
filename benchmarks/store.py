"""How fast are the mail stores? Durable deliveries, opening a big folder, memory.

Prints, for Maildir and mbox:

* durable deliveries per second of 10 KB messages through ``append`` (file and directory
  fsynced before it returns), one at a time and from 16 threads at once (what an MDA
  serving many SMTP sessions sees), beside Python's ``mailbox`` module adding the same
  messages (which does not fsync at all);
* opening a folder of 100,000 messages and listing UIDs and flags, each in a new
  process: cold (the first open after the messages arrived, so UIDs get assigned and
  the state is built) and warm (a later open: state on disk, files in the page cache);
* a second open in that same process (what the next session of a long-running IMAP or
  POP3 server sees), and the peak RSS of the process (the interpreter included);
* a partial fetch, ``BODY[]<0.1024>`` of a 50 MB message (``open_message(uid, 0,
  1024)``), beside reading the message whole: time and bytes read (``/proc/self/io``).

The last line is the ratio of our concurrent durable Maildir delivery rate to
``mailbox.Maildir.add``; the goal is 0.4 or better.

Run: ``python benchmarks/store.py`` (``--quick`` for 10,000 messages in the big folder).
"""

from __future__ import annotations

import argparse
import mailbox
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mailagents.store import Store  # noqa: E402
from mailagents.store.maildir import MaildirStore  # noqa: E402
from mailagents.store.mbox import MboxStore  # noqa: E402

SIZE = 10 * 1024


def message(i: int) -> bytes:
    head = (
        f"From: bench@example.test\r\nTo: user@example.test\r\nSubject: message {i}\r\n"
        f"Message-ID: <{i}@bench.example.test>\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = (line * (SIZE // len(line) + 1))[: SIZE - len(head)]
    return head + body


def make_store(kind: str, root: Path) -> Store:
    if kind == "maildir":
        return MaildirStore(root / "Maildir")
    return MboxStore(root / "mail")


def deliveries(kind: str, count: int, threads: int) -> float:
    root = Path(tempfile.mkdtemp(prefix="bench-store-"))
    try:
        store = make_store(kind, root)
        inbox = store.folder("INBOX")
        messages = [message(i) for i in range(count)]

        def one(i: int) -> None:
            inbox.append_bytes(messages[i], assign_uid=False)

        start = time.perf_counter()
        if threads == 1:
            for i in range(count):
                one(i)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(one, range(count)))
        elapsed = time.perf_counter() - start
        inbox.close()
        store.close()
        return count / elapsed
    finally:
        shutil.rmtree(root, ignore_errors=True)


def python_mailbox(kind: str, count: int) -> float:
    root = Path(tempfile.mkdtemp(prefix="bench-mailbox-"))
    try:
        box: mailbox.Mailbox  # type: ignore[type-arg]
        if kind == "maildir":
            box = mailbox.Maildir(str(root / "Maildir"), create=True)
        else:
            box = mailbox.mbox(str(root / "mbox"))
        messages = [message(i).replace(b"\r\n", b"\n") for i in range(count)]
        start = time.perf_counter()
        if kind == "mbox":
            box.lock()
        for data in messages:
            box.add(data)
        if kind == "mbox":
            box.flush()
            box.unlock()
        return count / (time.perf_counter() - start)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fill(kind: str, root: Path, count: int) -> None:
    """A folder of ``count`` messages, delivered without fsync to save time."""
    store: Store
    if kind == "maildir":
        store = MaildirStore(root / "Maildir", fsync=False)
    else:
        store = MboxStore(root / "mail", fsync=False)
    with store, store.folder("INBOX") as inbox:
        data = message(0)
        for _ in range(count):
            inbox.append_bytes(data, assign_uid=False)


OPEN_SCRIPT = """
import resource, sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
from mailagents.store.maildir import MaildirStore
from mailagents.store.mbox import MboxStore
root = Path({root!r})
def open_once():
    start = time.perf_counter()
    store = MaildirStore(root / "Maildir") if {kind!r} == "maildir" else MboxStore(root / "mail")
    folder = store.folder("INBOX")
    listing = [(m.uid, m.flags) for m in folder.messages()]
    elapsed = time.perf_counter() - start
    folder.close()
    store.close()
    return elapsed, len(listing)
first, count = open_once()
again, _ = open_once()  # a second session of the same serving process
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(first, count, rss, again)
"""


def open_in_new_process(kind: str, root: Path) -> tuple[float, int, int, float]:
    """(seconds, messages listed, peak RSS in octets, seconds of a second open in the
    same process) for a fresh process."""
    script = OPEN_SCRIPT.format(repo=str(HERE.parent), root=str(root), kind=kind)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, check=True, text=True, timeout=600
    ).stdout.split()
    return float(out[0]), int(out[1]), int(out[2]), float(out[3])


def _rchar() -> int:
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def ranged_read(kind: str, size: int = 50_000_000) -> tuple[float, int, float, int]:
    """(seconds, bytes read) for 1 KB of a ``size`` message, then for all of it."""
    root = Path(tempfile.mkdtemp(prefix="bench-range-"))
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    data = b"Subject: big\r\n\r\n" + line * (size // len(line))
    try:
        with make_store(kind, root) as store, store.folder("INBOX") as inbox:
            uid = inbox.append_bytes(data).uid
            assert uid is not None
            inbox.refresh()
            figures = []
            for length in (1024, None):
                before, start = _rchar(), time.perf_counter()
                with inbox.open_message(uid, 0, length) as stream:
                    got = len(stream.read())
                figures += [time.perf_counter() - start, _rchar() - before]
                assert got == (length or len(data))
            return figures[0], figures[1], figures[2], figures[3]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def best(func: Callable[[], float], runs: int = 2) -> float:
    return max(func() for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--folder-size", type=int, default=100_000)
    args = parser.parse_args()
    count = 500 if args.quick else args.deliveries
    big = 10_000 if args.quick else args.folder_size
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, 10 KB messages, "
        f"{count} deliveries per run, best of 2"
    )
    ratios: dict[str, float] = {}
    for kind in ("maildir", "mbox"):
        serial = best(lambda k=kind: deliveries(k, count, 1))  # type: ignore[misc]
        parallel = best(lambda k=kind: deliveries(k, count, 16))  # type: ignore[misc]
        peer = best(lambda k=kind: python_mailbox(k, count))  # type: ignore[misc]
        ratios[kind] = parallel / peer
        print(f"{kind:8} durable deliveries, one at a time : {serial:>9,.0f}/s")
        print(f"{kind:8} durable deliveries, 16 threads    : {parallel:>9,.0f}/s")
        print(
            f"{kind:8} mailbox.{'Maildir' if kind == 'maildir' else 'mbox'}.add (no fsync)"
            f"{'' if kind == 'maildir' else '   '}: {peer:>9,.0f}/s"
        )
        root = Path(tempfile.mkdtemp(prefix="bench-open-"))
        try:
            start = time.perf_counter()
            fill(kind, root, big)
            print(f"{kind:8} filled {big:,} messages in {time.perf_counter() - start:.1f} s")
            # Cold: the first open after delivery (UIDs assigned, state built). Warm: a
            # later open by a new process (state on disk, files in the page cache).
            cold, listed, _, _ = open_in_new_process(kind, root)
            warm, listed2, rss, again = min(open_in_new_process(kind, root) for _ in range(3))
            assert listed == listed2 == big, (listed, listed2, big)
            print(
                f"{kind:8} open {big:,} messages, list UIDs and flags: cold {cold:.2f} s, "
                f"warm {warm:.2f} s (new process), {again:.2f} s (again in the same "
                f"process); peak RSS {rss / 1e6:.0f} MB"
            )
        finally:
            shutil.rmtree(root, ignore_errors=True)
        part, part_read, whole, whole_read = ranged_read(kind)
        print(
            f"{kind:8} BODY[]<0.1024> of a 50 MB message: {part * 1e3:.2f} ms, "
            f"{part_read:,} bytes read; whole: {whole:.2f} s, {whole_read:,} bytes read"
        )
    print(f"ratio mbox 16-thread durable / mailbox.mbox.add: {ratios['mbox']:.2f}")
    print(
        f"ratio maildir 16-thread durable / mailbox.Maildir.add: {ratios['maildir']:.2f} (goal 0.4)"
    )


if __name__ == "__main__":
    main()
