"""What the IMAP server asks of a store: part maps, its cache, STATUS, ranged reads.

Prints, for a Maildir store, each beside Dovecot's ``doveadm`` (or ``imap``) doing the
same work on a copy of the same tree, when Dovecot is installed:

* the part-map scan of 10,000 messages of varied MIME structure (plain, multipart
  with base64 attachments, alternatives, embedded messages, digests, deep nesting):
  cold (each message read through ``open_message`` and scanned, its entry written to
  the folder's cache, BODYSTRUCTURE built) in MB/s and messages/s, then warm (every
  entry from the cache file by a new handle, BODYSTRUCTURE built). Dovecot: ``doveadm
  fetch 'uid imap.bodystructure' mailbox INBOX all`` after a ``fetch uid`` that built
  its index (so the cold run is the parse and ``dovecot.index.cache`` writing), and
  once more (from its cache);
* STATUS (MESSAGES UNSEEN UIDNEXT UIDVALIDITY HIGHESTMODSEQ) of 100 folders of 10,000
  messages delivered by another program, each in a new process, through
  ``Store.status(name, items)`` with those items: cold (the first look after the
  messages arrived, before any SELECT: no SIZE asked, so no message file is read) and
  warm (after one SELECT of each folder, from the STATUS numbers the store keeps in
  ``mailagents-status``; the figure without them is printed too).
  Dovecot: ``doveadm mailbox status ... '*'``, the first run (which builds its
  indexes) and a later one (from its mailbox list index);
* ``BODY[]<0.1024>`` of a 50 MB message (and the whole message): ours through
  ``open_message``; Dovecot's ``imap`` process, pre-authenticated on a pipe, answering
  ``UID FETCH 1 BODY.PEEK[]<0.1024>`` (the time of the command, process start and
  SELECT excluded).

The files are in the page cache for both (this measures the CPU work, not the disk).
The last line is the smallest of the ratios ours / Dovecot (rates; for times, Dovecot's
over ours), so 1.0 or more means as fast as Dovecot everywhere.

Run: ``python benchmarks/store_imap.py`` (``--quick`` for 1,000 messages and 10
folders of 1,000; ``--no-dovecot`` for our figures only). Dovecot runs as ``nobody``
when this runs as root (Dovecot refuses mail access as root).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mailagents.imap._bodystructure import body_structure  # noqa: E402
from mailagents.store._cache import FolderCache  # noqa: E402
from mailagents.store.maildir import MaildirStore  # noqa: E402

STATUS_ITEMS = "messages unseen uidnext uidvalidity highestmodseq"
_LINE = b"The quick brown fox jumps over the lazy dog, again and again, and again.\r\n"


# -- messages -----------------------------------------------------------------------


def _text(rng: random.Random, low: int, high: int) -> bytes:
    return _LINE * rng.randrange(low, high)


def _b64(rng: random.Random, octets: int) -> bytes:
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n"
    return line * max(1, octets // len(line))


def _head(i: int, extra: bytes = b"") -> bytes:
    return (
        f"From: Sender {i % 97} <s{i % 97}@example.test>\r\nTo: user@example.test\r\n"
        f"Subject: Re: [bench] message {i}\r\nDate: Mon, 7 Dec 2026 12:00:{i % 60:02d} +0000\r\n"
        f"Message-ID: <{i}@bench.example.test>\r\nReferences: <{i - 1}@bench.example.test>\r\n"
    ).encode() + extra


def _part(rng: random.Random, depth: int) -> bytes:
    """A body part: text, an attachment, or (while shallow) a nested multipart."""
    roll = rng.random()
    if depth < 6 and roll < 0.15:
        b = f"nest{depth}x{rng.randrange(10**6)}".encode()
        kids = b"".join(b"--" + b + b"\r\n" + _part(rng, depth + 1) for _ in range(2))
        return (
            b'Content-Type: multipart/mixed; boundary="'
            + b
            + b'"\r\n\r\n'
            + kids
            + b"--"
            + b
            + b"--\r\n"
        )
    if roll < 0.5:
        return b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + _text(rng, 1, 60)
    return (
        b'Content-Type: application/pdf; name="f.pdf"\r\nContent-Transfer-Encoding: base64\r\n'
        b'Content-Disposition: attachment; filename="f.pdf"\r\n\r\n'
        + _b64(rng, rng.choice((2_000, 10_000, 40_000)))
    )


def message(i: int) -> bytes:
    """Message ``i`` of the varied corpus (about 15 KB on average)."""
    rng = random.Random(i)
    shape = rng.random()
    mime = b"MIME-Version: 1.0\r\n"
    if shape < 0.35:
        return _head(i) + b"\r\n" + _text(rng, 2, 80)
    if shape < 0.65:
        parts = b"".join(b"--mix\r\n" + _part(rng, 1) for _ in range(rng.randrange(2, 5)))
        return (
            _head(i, mime + b'Content-Type: multipart/mixed; boundary="mix"\r\n')
            + b"\r\npreamble\r\n"
            + parts
            + b"--mix--\r\n"
        )
    if shape < 0.85:
        html = b"<html><body>" + _text(rng, 2, 40) + b"</body></html>\r\n"
        return (
            _head(i, mime + b"Content-Type: multipart/alternative; boundary=alt\r\n") + b"\r\n"
            b"--alt\r\nContent-Type: text/plain\r\n\r\n"
            + _text(rng, 2, 40)
            + b"--alt\r\nContent-Type: text/html; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + html + b"--alt--\r\n"
        )
    if shape < 0.95:
        inner = _head(i + 1_000_000) + b"\r\n" + _text(rng, 2, 40)
        return (
            _head(i, mime + b"Content-Type: multipart/mixed; boundary=fw\r\n") + b"\r\n"
            b"--fw\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n"
            b"--fw\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"--fw--\r\n"
        )
    digest = b"".join(
        b"--dg\r\n\r\n" + _head(i * 10 + k) + b"\r\n" + _text(rng, 1, 10) for k in range(5)
    )
    return (
        _head(i, mime + b"Content-Type: multipart/digest; boundary=dg\r\n")
        + b"\r\n"
        + digest
        + b"--dg--\r\n"
    )


# -- Dovecot ------------------------------------------------------------------------


class Dovecot:
    """doveadm and imap over a Maildir, with a private configuration."""

    def __init__(self, maildir: Path, work: Path) -> None:
        self.work = work
        self.maildir = maildir
        (work / "run").mkdir(parents=True, exist_ok=True)
        self.conf = work / "dovecot.conf"
        self.conf.write_text(
            f"mail_location = maildir:{maildir}:INDEX={work}/index\n"
            f"base_dir = {work}/run\nstate_dir = {work}/state\nlog_path = {work}/log\n"
            "userdb {\n  driver = static\n  args = home=" + str(work) + "\n}\n"
            "passdb {\n  driver = static\n  args = nopassword=y\n}\n"
        )
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "nobody:", str(work), str(maildir)], check=True)
            subprocess.run(["chmod", "755", str(work.parent)], check=True)
            self.prefix = ["runuser", "-u", "nobody", "--"]
        self.env = ["env", "USER=bench", f"HOME={work}"]

    def timed(self, *args: str) -> float:
        """Seconds for ``doveadm args`` (its output thrown away)."""
        start = time.perf_counter()
        subprocess.run(
            [*self.prefix, *self.env, "doveadm", "-c", str(self.conf), *args],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return time.perf_counter() - start

    def imap_fetch(self, command: bytes) -> float:
        """Seconds of one command in a pre-authenticated ``imap`` process, from sending
        it to its tagged OK (SELECT done before)."""
        binary = next(
            (
                p
                for p in ("/usr/lib/dovecot/imap", "/usr/libexec/dovecot/imap")
                if os.path.exists(p)
            ),
            None,
        )
        if binary is None:
            raise FileNotFoundError("no Dovecot imap binary")
        proc = subprocess.Popen(
            [*self.prefix, *self.env, binary, "-c", str(self.conf)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(b"s SELECT INBOX\r\n")
            proc.stdin.flush()
            while not proc.stdout.readline().startswith(b"s OK"):
                pass
            start = time.perf_counter()
            proc.stdin.write(b"f " + command + b"\r\n")
            proc.stdin.flush()
            while not proc.stdout.readline().startswith(b"f OK"):
                pass
            took = time.perf_counter() - start
            proc.stdin.write(b"l LOGOUT\r\n")
            proc.stdin.close()
            return took
        finally:
            proc.stdout.read()
            proc.wait(30)


def dovecot_available() -> bool:
    return shutil.which("doveadm") is not None


# -- the figures --------------------------------------------------------------------


def scan(root: Path, count: int, use_dovecot: bool) -> dict[str, float]:
    store_root = root / "scan" / "Maildir"
    total = 0
    with MaildirStore(store_root, fsync=False) as store, store.folder("INBOX") as inbox:
        for i in range(count):
            data = message(i)
            total += len(data)
            inbox.append_bytes(data)
        inbox.refresh()
        infos = inbox.messages()
        uidvalidity = inbox.status().uidvalidity
        cache_path = root / "scan" / "cache"
        start = time.perf_counter()
        with FolderCache(cache_path, uidvalidity, background=False) as cache:
            for n, info in enumerate(infos, 1):
                uid = info.uid
                if n % 1000 == 0:  # what the writer thread does, done here in the timing
                    cache.flush()
                entry = cache.structure(uid, lambda u=uid: inbox.open_message(u), info.size)  # type: ignore[misc]
                body_structure(entry.part_map, extended=True)
            cache.flush()
        cold = time.perf_counter() - start
        start = time.perf_counter()
        with FolderCache(cache_path, uidvalidity, background=False) as cache:
            for info in infos:
                got = cache.get(info.uid, info.size)
                assert got is not None
                body_structure(got.part_map, extended=True)
        warm = time.perf_counter() - start
        # SEARCH FROM over the cached header fields (the part maps are not read)
        start = time.perf_counter()
        with FolderCache(cache_path, uidvalidity, background=False) as cache:
            hits = 0
            for info in infos:
                got = cache.get(info.uid, info.size)
                assert got is not None
                hits += "s5@example.test" in (got.header("from") or "").lower()
        search = time.perf_counter() - start
    figures = {
        "mb": total / 1e6,
        "cold": cold,
        "warm": warm,
        "search": search,
        "cache": cache_path.stat().st_size,
    }
    print(
        f"part-map scan of {count:,} messages ({total / 1e6:.0f} MB): "
        f"cold {total / 1e6 / cold:,.0f} MB/s, {count / cold:,.0f} messages/s; "
        f"warm (from the cache, {figures['cache'] / 1e6:.1f} MB) {count / warm:,.0f} messages/s"
    )
    print(f"  SEARCH FROM over the cached fields: {count / search:,.0f} messages/s ({hits} hits)")
    if use_dovecot:
        copy = root / "scan-dovecot" / "Maildir"
        shutil.copytree(store_root, copy)
        dove = Dovecot(copy, root / "scan-dovecot" / "home")
        dove.timed("fetch", "uid", "mailbox", "INBOX", "all")
        d_cold = dove.timed("fetch", "uid imap.bodystructure", "mailbox", "INBOX", "all")
        d_warm = dove.timed("fetch", "uid imap.bodystructure", "mailbox", "INBOX", "all")
        dove.timed("search", "mailbox", "INBOX", "from", "s5@example.test")  # fills its cache
        d_search = dove.timed("search", "mailbox", "INBOX", "from", "s5@example.test")
        figures.update(d_cold=d_cold, d_warm=d_warm, d_search=d_search)
        print(f"  doveadm search from (second run): {count / d_search:,.0f} messages/s")
        print(
            f"  doveadm fetch imap.bodystructure: cold {total / 1e6 / d_cold:,.0f} MB/s, "
            f"{count / d_cold:,.0f} messages/s; warm (its cache) {count / d_warm:,.0f} messages/s"
        )
    return figures


_STATUS_CHILD = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from mailagents.store.maildir import MaildirStore
from mailagents.store._maildir_status import peek_status
start = time.perf_counter()
store = MaildirStore(sys.argv[2], fsync=False)
items = sys.argv[4].upper().split()
total = 0
for info in store.folders():
    if sys.argv[3] == "select":
        with store.folder(info.name) as folder:
            total += folder.status().messages
    elif sys.argv[3] == "uncached":
        d = os.path.join(sys.argv[2], "." + info.name) if info.name != "INBOX" else sys.argv[2]
        total += peek_status(store._core(d), size="SIZE" in items).messages
    else:
        total += store.status(info.name, items).messages
print(time.perf_counter() - start, total)
"""


def status_in_new_process(root: Path, how: str = "status") -> tuple[float, int]:
    """Seconds for STATUS of every folder (``how="select"``: opening each instead,
    which syncs it; ``"uncached"``: without the kept STATUS numbers) in a new
    process, and the messages counted."""
    done = subprocess.run(
        [sys.executable, "-c", _STATUS_CHILD, str(HERE.parent), str(root), how, STATUS_ITEMS],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds, total = done.stdout.split()
    return float(seconds), int(total)


def status(root: Path, folders: int, per_folder: int, use_dovecot: bool) -> dict[str, float]:
    store_root = root / "status" / "Maildir"
    names = [f"Folder{i:03d}" for i in range(folders)]
    with MaildirStore(store_root, fsync=False) as store:
        for name in names:
            store.create_folder(name)
    # The messages arrive as other programs deliver them: files in new/ and cur/ (one
    # in three seen), with LF line ends, hard links of one file per folder so that a
    # million of them cost no space (a file has at most 65,000 links on ext4).
    start = time.perf_counter()
    for f, name in enumerate(names):
        base = store_root / f".{name}"
        template = root / "status" / f"template{f}"
        template.write_bytes(message(f).replace(b"\r\n", b"\n"))
        for i in range(per_folder):
            where = f"cur/{1_700_000_000 + i}.M{i}P{f}.bench:2,{'S' if i % 3 == 0 else ''}"
            if i % 10 == 0:
                where = f"new/{1_700_000_000 + i}.M{i}P{f}.bench"
            os.link(template, base / where)
    print(
        f"STATUS: {folders} folders of {per_folder:,} messages made in "
        f"{time.perf_counter() - start:.1f} s"
    )
    copy = root / "status-dovecot" / "Maildir"
    if use_dovecot:
        copy.parent.mkdir(parents=True)
        subprocess.run(["cp", "-al", str(store_root), str(copy)], check=True)
    cold, total = status_in_new_process(store_root)
    select, total2 = status_in_new_process(store_root, "select")
    uncached, total3 = min(status_in_new_process(store_root, "uncached") for _ in range(2))
    time.sleep(2.5)  # StatusCache trusts only sources older than its 2 s settle time
    status_in_new_process(store_root)  # keeps the numbers
    warm, total4 = min(status_in_new_process(store_root) for _ in range(2))
    assert total == total2 == total3 == total4 == folders * per_folder
    figures = {"cold": cold, "warm": warm, "uncached": uncached}
    print(
        f"STATUS of {folders} folders (new process each): cold {cold:.2f} s (never "
        f"opened, no SIZE asked: no message file read), warm {warm:.3f} s (after one "
        f"SELECT of each, which took {select:.2f} s in all, from the kept STATUS "
        f"numbers; {uncached:.2f} s without them)"
    )
    if use_dovecot:
        dove = Dovecot(copy, root / "status-dovecot" / "home")
        d_cold = dove.timed("mailbox", "status", STATUS_ITEMS, "*")
        d_warm = min(dove.timed("mailbox", "status", STATUS_ITEMS, "*") for _ in range(2))
        figures.update(d_cold=d_cold, d_warm=d_warm)
        print(f"  doveadm mailbox status '*': cold {d_cold:.2f} s, warm {d_warm:.2f} s")
    return figures


def ranged(root: Path, size: int, use_dovecot: bool) -> dict[str, float]:
    store_root = root / "ranged" / "Maildir"
    data = b"Subject: big\r\n\r\n" + _LINE * (size // len(_LINE))
    with MaildirStore(store_root, fsync=False) as store, store.folder("INBOX") as inbox:
        uid = inbox.append_bytes(data).uid
        assert uid is not None
        inbox.refresh()
        times = []
        for length in (1024, None):
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                with inbox.open_message(uid, 0, length) as stream:
                    got = stream.read()
                best = min(best, time.perf_counter() - start)
            assert len(got) == (length or len(data))
            times.append(best)
    figures = {"part": times[0], "whole": times[1]}
    print(
        f"BODY[]<0.1024> of a {size / 1e6:.0f} MB message: {times[0] * 1e3:.2f} ms "
        f"(goal under 1 ms); whole: {times[1] * 1e3:.0f} ms"
    )
    if use_dovecot:
        copy = root / "ranged-dovecot" / "Maildir"
        shutil.copytree(store_root, copy)
        dove = Dovecot(copy, root / "ranged-dovecot" / "home")
        d_part = min(dove.imap_fetch(b"UID FETCH 1 BODY.PEEK[]<0.1024>") for _ in range(3))
        figures["d_part"] = d_part
        print(f"  Dovecot imap UID FETCH 1 BODY.PEEK[]<0.1024>: {d_part * 1e3:.2f} ms")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument("--messages", type=int, default=10_000, help="messages scanned")
    parser.add_argument("--folders", type=int, default=100, help="folders for STATUS")
    parser.add_argument("--folder-size", type=int, default=10_000, help="messages each")
    parser.add_argument("--big", type=int, default=50_000_000, help="octets of the big one")
    parser.add_argument("--no-dovecot", action="store_true", help="our figures only")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.folders, args.folder_size = 1_000, 10, 1_000
    use_dovecot = not args.no_dovecot and dovecot_available()
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, Maildir, files in the page "
        f"cache; Dovecot: {'yes' if use_dovecot else 'not measured'}"
    )
    root = Path(tempfile.mkdtemp(prefix="bench-store-imap-"))
    os.chmod(root, 0o755)  # Dovecot, as nobody, must reach its copies
    try:
        s = scan(root, args.messages, use_dovecot)
        st = status(root, args.folders, args.folder_size, use_dovecot)
        r = ranged(root, args.big, use_dovecot)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if not use_dovecot:
        print("ratio: not measured (no Dovecot)")
        return
    ratios = {
        "part-map scan, cold": s["d_cold"] / s["cold"],
        "FETCH BODYSTRUCTURE from the cache": s["d_warm"] / s["warm"],
        "SEARCH FROM from the cache": s["d_search"] / s["search"],
        "STATUS, cold": st["d_cold"] / st["cold"],
        "STATUS, warm": st["d_warm"] / st["warm"],
        "BODY[]<0.1024>": r["d_part"] / r["part"],
    }
    for name, value in ratios.items():
        print(f"  ours / Dovecot, {name}: {value:.2f}")
    name = min(ratios, key=ratios.__getitem__)
    print(f"ratio ours / Dovecot, smallest ({name}): {ratios[name]:.2f}")


if __name__ == "__main__":
    main()
