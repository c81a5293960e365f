"""How soon does a session watching a folder hear of a new message?

Issue 15 asks that a write through any store handle wake the sessions watching that
folder within 100 ms, and that changes by other programs be found too. This measures,
for a Maildir folder watched by one :class:`mailagents.aio.FolderWatch` on an event
loop, the time from the moment a message is in the folder to the moment the watch's
callback runs on the loop:

- ``hub``: a delivery through a second ``MaildirStore`` object of this process, from an
  executor thread (as the aio layer calls the store), measured from ``commit()``'s
  return;
- ``inotify``: another program's delivery, a file renamed into ``new/`` with plain
  ``os.rename`` (no store involved), found by the process's inotify descriptor;
- ``poll``: the same with inotify switched off (one ``stat`` poll per folder, every
  ``--poll-interval`` seconds, 1.0 by default as in the watcher).

Each figure is the median and the 95th percentile over ``--count`` messages (50 by
default; 10 with ``--quick``), in milliseconds, then the worst of ``hub`` and
``inotify`` against the goal. No peer: Dovecot's IDLE would need a daemon of its own,
and the goal is absolute. Run: ``python benchmarks/wake_latency.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mailagents.aio import FolderWatcher
from mailagents.store import MaildirStore

MESSAGE = b"From: a@example.test\r\nSubject: hi\r\n\r\nhello\r\n"
GOAL_MS = 100.0


async def _wait(event: asyncio.Event, seconds: float) -> None:
    await asyncio.wait_for(event.wait(), seconds)
    event.clear()


async def measure(mode: str, count: int, poll_interval: float) -> list[float]:
    """Milliseconds from "the message is in the folder" to "the watch's callback ran",
    one figure per message."""
    with tempfile.TemporaryDirectory(prefix="wake-") as tmp:
        root = Path(tmp) / "Maildir"
        store = MaildirStore(root)
        folder = store.folder("INBOX")
        folder.append_bytes(MESSAGE)  # the folder and its side files exist
        inbox = Path(folder.path)
        folder.close()
        loop = asyncio.get_running_loop()
        watcher = FolderWatcher(inotify=(mode != "poll"), poll_interval=poll_interval)
        woken = asyncio.Event()
        stamps: list[float] = []

        def callback() -> None:
            stamps.append(time.perf_counter())
            woken.set()

        watch = watcher.watch(inbox, callback)
        other = MaildirStore(root)  # a second store object: the hub, not the handle
        figures: list[float] = []
        try:
            await asyncio.sleep(0.05)
            woken.clear()
            stamps.clear()
            for i in range(count):
                if mode == "hub":

                    def deliver() -> float:
                        handle = other.folder("INBOX", deliver_only=True)
                        try:
                            handle.append_bytes(MESSAGE, assign_uid=False)
                            return time.perf_counter()
                        finally:
                            handle.close()

                    start = await loop.run_in_executor(None, deliver)
                else:
                    name = f"{time.time():.6f}.{os.getpid()}_{i}.bench"
                    tmp_file = inbox / "tmp" / name
                    tmp_file.write_bytes(MESSAGE)
                    start = time.perf_counter()
                    os.rename(tmp_file, inbox / "new" / name)
                await _wait(woken, poll_interval * 5 + 5)
                figures.append((stamps[-1] - start) * 1000)
                stamps.clear()
                await asyncio.sleep(0.02)  # the next message is a new burst
        finally:
            watch.close()
            other.close()
            store.close()
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 messages per mode")
    parser.add_argument("--count", type=int, default=50, help="messages per mode")
    parser.add_argument("--poll-interval", type=float, default=1.0)
    args = parser.parse_args()
    count = 10 if args.quick else args.count
    print(f"Python {sys.version.split()[0]}, {count} messages per mode, Maildir")
    worst = 0.0
    for mode in ("hub", "inotify", "poll"):
        figures = sorted(asyncio.run(measure(mode, count, args.poll_interval)))
        median = statistics.median(figures)
        p95 = figures[min(len(figures) - 1, int(len(figures) * 0.95))]
        print(f"    {mode:8} median {median:8.2f} ms   p95 {p95:8.2f} ms")
        if mode != "poll":
            worst = max(worst, p95)
    print(f"worst p95 of hub and inotify: {worst:.2f} ms (goal {GOAL_MS:.0f} ms)")


if __name__ == "__main__":
    main()
