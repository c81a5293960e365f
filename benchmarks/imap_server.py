"""How many IMAP sessions does our server serve, against Dovecot, and at what CPU cost?

One Maildir of 1,000 messages (``--messages``; 300 with ``--quick``) of mail-like
headers and 2 to 20 KB bodies is written with ``mailagents.store.MaildirStore``, and
copied once per user and per server, so that both servers serve the same files with
the same UIDs. Each server runs in processes of its own on a free port of 127.0.0.1:

- ours: ``StoreIMAPHandler`` over a ``StoreResolver`` of the users' Maildirs, in an
  ``IMAPServer`` of one Python process (clear-text LOGIN allowed on loopback, users
  checked against plain passwords in memory, no fsync);
- Dovecot 2.3 (``dovecot-imapd``), a private instance with its shipped defaults (a new
  ``imap-login`` and a new ``imap`` process per connection) besides clear-text auth
  on loopback, a ``passwd-file`` with ``{PLAIN}`` passwords, ``mail_fsync = never``
  (root only: it drops privileges to ``nobody``). ``--dovecot-reuse`` runs it in its
  "high-performance" mode instead (``imap-login`` and ``imap`` processes reused).

The load runs in another process (so its CPU is not the server's): ``--clients``
asyncio clients on raw sockets (10 by default), each its own user, each repeating
this session until ``--seconds`` have passed (20; 3 with ``--quick``) or it has done
``--rounds`` of them: connect, ``LOGIN``, ``SELECT INBOX``, ``FETCH`` of 50
consecutive messages at a random place (``UID FLAGS RFC822.SIZE BODY.PEEK[HEADER]``),
``FETCH n BODY[]`` of one of them (which sets ``\\Seen``), ``STORE n +FLAGS`` or
``-FLAGS (\\Flagged)``, ``APPEND`` of a 3 KB message (a synchronising literal), ``UID
STORE +FLAGS.SILENT (\\Deleted)`` of the appended one, ``UID EXPUNGE`` of it, ``LOGOUT``:
nine commands, each one "operation". Every answer is checked (tagged OK, 50 FETCH
responses, the body's size, the APPENDUID). One session per user is run first, not
counted (Dovecot builds its indexes, our store its caches).

The figures: sessions and operations per second over the run, and server CPU-seconds
per operation: user plus system time of the server's processes over the run, from
``/proc/<pid>/stat``, for ours the one process (all its threads), for Dovecot every
process whose parent chain reaches its master (``imap``, ``imap-login``, ``auth``,
``config``, ``log``, ``anvil``, ``stats``...), the ones that ended during the run
counted through the master's ``cutime``/``cstime`` (it waits for its children). The
client's own CPU is printed too: on a 2-core machine a client that uses a whole core
caps the faster server. The last line is ours/Dovecot in operations per second (goal
0.5); the line before it compares the CPU per operation.

Run: ``python benchmarks/imap_server.py`` (``--quick`` for a short smoke run;
``--no-dovecot`` for ours only). Set ``MAILAGENTS_BENCH_PROFILE=DIR`` to run our server
under cProfile and write ``DIR/ours.prof`` when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pwd
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _harness import HOST, ServerFailed, free_port, stop_process, wait_port  # noqa: E402

from mailagents.store.maildir import MaildirStore  # noqa: E402

PASSWORD = "bench-password"
PROFILE_ENV = "MAILAGENTS_BENCH_PROFILE"
WINDOW = 50
COMMANDS = 9  # per session: LOGIN SELECT FETCH FETCH STORE APPEND STORE EXPUNGE LOGOUT
TICK = os.sysconf("SC_CLK_TCK")
_LINE = b"The quick brown fox jumps over the lazy dog, again and again, and again.\r\n"


def user(i: int) -> str:
    return f"bench{i}"


def message(i: int) -> bytes:
    """Message ``i``: the headers a list message has, a 2 to 20 KB text body."""
    rng = random.Random(i)
    head = (
        f"Return-Path: <s{i % 97}@example.test>\r\n"
        f"Received: from mx.example.test (mx.example.test [192.0.2.{i % 250 + 1}])\r\n"
        f"\tby mail.bench.test with ESMTPS id {i:08X}; Mon, 7 Dec 2026 12:00:00 +0000\r\n"
        f"From: Sender {i % 97} <s{i % 97}@example.test>\r\n"
        f"To: Bench User <user@bench.test>\r\n"
        f"Subject: Re: [bench] message number {i} of the benchmark\r\n"
        f"Date: Mon, 7 Dec 2026 12:{i % 60:02d}:00 +0000\r\n"
        f"Message-ID: <{i}.{rng.randrange(10**9)}@example.test>\r\n"
        f"References: <{i - 1}@example.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "List-Id: <bench.example.test>\r\n\r\n"
    ).encode()
    return head + _LINE * rng.randrange(2_000 // len(_LINE), 20_000 // len(_LINE))


APPENDED = (
    b"From: Bench Client <client@bench.test>\r\nTo: user@bench.test\r\n"
    b"Subject: draft\r\nDate: Mon, 7 Dec 2026 12:00:00 +0000\r\n"
    b"Message-ID: <draft@bench.test>\r\n\r\n" + _LINE * 40
)


# --- the mailboxes ----------------------------------------------------------------------


def fill(maildir: Path, count: int) -> int:
    """Write ``count`` messages with our store; the octets written."""
    total = 0
    with MaildirStore(maildir, fsync=False) as store, store.folder("INBOX") as inbox:
        for i in range(count):
            data = message(i)
            inbox.append_bytes(data)
            total += len(data)
        inbox.refresh()
    return total


def copies(template: Path, root: Path, clients: int) -> None:
    """``root/benchK/Maildir``: a copy of ``template`` for each user."""
    for i in range(clients):
        shutil.copytree(template, root / user(i) / "Maildir", symlinks=True)


def open_tree(path: Path) -> None:
    """Let the mail user (``nobody``) reach ``path`` through its parents."""
    for parent in (path, *path.parents):
        if parent == Path("/"):
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o711)


def chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(top, name), uid, gid)


# --- CPU of a process tree ----------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and of its waited-for children)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    # after the name: state ppid ... utime(14) stime(15) cutime(16) cstime(17), 1-based
    # fields of proc(5) counted from pid; here index 0 is the state (field 3).
    ppid = int(fields[1])
    ticks = sum(int(x) for x in fields[11:15])
    return ppid, ticks / TICK


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of ``root`` and every live process under it, with
    the children each of them already waited for."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            got = _stat(int(entry))
            if got is not None:
                parents[int(entry)], cpu[int(entry)] = got
    total = 0.0
    for pid, seconds in cpu.items():
        walk, hops = pid, 0
        while walk > 1 and walk != root and hops < 64:
            walk, hops = parents.get(walk, 0), hops + 1
        if walk == root:
            total += seconds
    return total


# --- Dovecot ------------------------------------------------------------------------------


def dovecot_missing() -> str | None:
    """Why a private Dovecot cannot run here, or None."""
    if shutil.which("dovecot") is None and not os.path.exists("/usr/sbin/dovecot"):
        return "dovecot not installed (apt-get install dovecot-imapd)"
    if not os.path.exists("/usr/lib/dovecot/imap"):
        return "dovecot-imapd not installed"
    if os.geteuid() != 0:
        return "needs root to start a private Dovecot (it drops privileges)"
    return None


@contextlib.contextmanager
def private_dovecot(root: Path, clients: int, reuse: bool) -> Iterator[tuple[int, int]]:
    """Dovecot serving ``root/benchK/Maildir`` over IMAP on a free port; yields the port
    and the master's pid."""
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    base = Path(tempfile.mkdtemp(prefix="bench-dovecot-"))
    os.chmod(base, 0o755)
    nobody = pwd.getpwnam("nobody")
    open_tree(root)
    chown_tree(root, nobody.pw_uid, nobody.pw_gid)
    port = free_port()
    for sub in ("run", "state"):
        (base / sub).mkdir()
    (base / "passwd").write_text("".join(
        f"{user(i)}:{{PLAIN}}{PASSWORD}:{nobody.pw_uid}:{nobody.pw_gid}::{root / user(i)}::\n"
        for i in range(clients)
    ))
    processes = max(2, os.cpu_count() or 2)
    performance = f"""
service imap-login {{
  service_count = 0
  process_min_avail = {processes}
}}
service imap {{
  service_count = 0
  client_limit = {clients + 10}
  process_min_avail = {processes}
}}
""" if reuse else ""
    conf = base / "dovecot.conf"
    conf.write_text(f"""
instance_name = bench-{base.name}
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = imap
listen = {HOST}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_fsync = never
mail_max_userip_connections = 1000
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {base}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {base}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = {HOST}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
{performance}""")
    with open(base / "stdout.log", "wb") as log:
        process = subprocess.Popen(
            [binary, "-F", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_port(port)
        yield port, process.pid
    finally:
        stop_process(process)
        shutil.rmtree(base, ignore_errors=True)


# --- our server (in a process of its own: --serve) ----------------------------------------


class PlainUsers:
    """Every ``benchK`` with the one password, compared as it is (Dovecot's passwd-file
    holds ``{PLAIN}`` passwords too: no hashing on either side)."""

    async def answer_async(self, request: Any) -> Any:
        from mailagents import sasl

        if request.authcid.startswith("bench") and request.password is not None:
            return sasl.PasswordVerdict(valid=request.password == PASSWORD)
        return sasl.NoSuchUser()


def serve_ours(root: Path) -> None:
    """Our IMAP server over ``root/{user}/Maildir`` on a free port until SIGTERM; prints
    ``ready PORT``."""
    from mailagents.agents._imap_session import StoreIMAPHandler, imap_config
    from mailagents.aio.imap import IMAPServer
    from mailagents.store import StoreResolver

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        template = str(root).replace("{", "{{").replace("}", "}}") + "/{user}/Maildir"
        resolver = StoreResolver(template, fsync=False)
        handler = StoreIMAPHandler(PlainUsers(), resolver)
        server = IMAPServer(handler, imap_config(allow_plaintext_login=True))
        try:
            await server.start(HOST, 0)
            print("ready", server.port, flush=True)
            await stop.wait()
        finally:
            await server.close(5)
            resolver.close()

    profile_dir = os.environ.get(PROFILE_ENV)
    if not profile_dir:
        asyncio.run(run())
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(run())
    finally:
        profiler.disable()
        os.makedirs(profile_dir, exist_ok=True)
        profiler.dump_stats(os.path.join(profile_dir, "ours.prof"))


@contextlib.contextmanager
def our_server(root: Path) -> Iterator[tuple[int, int]]:
    """Our server in a child process; yields its port and pid, stops it after."""
    command = [sys.executable, __file__, "--serve", str(root)]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
        try:
            assert process.stdout is not None
            words = process.stdout.readline().split()
            if len(words) != 2 or words[0] != b"ready":
                errors.seek(0)
                raise ServerFailed(
                    "did not start: " + errors.read().decode(errors="replace")[-600:]
                )
            yield int(words[1]), process.pid
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            stop_process(process)


# --- the load (in a process of its own: --load) -------------------------------------------

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n\Z")
_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]", re.I)
_EXISTS = re.compile(rb"\* (\d+) EXISTS", re.I)
_FETCH = re.compile(rb"\* \d+ FETCH ", re.I)


class Session:
    """One IMAP connection: commands in, responses (literals joined in) out."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        times: dict[str, list[float]],
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.tags = 0
        self.times = times

    async def response(self) -> bytes:
        """One response line with its literals."""
        parts = []
        while True:
            line = await self.reader.readline()
            if not line.endswith(b"\n"):
                raise AssertionError(f"connection closed after {b''.join(parts)[-200:]!r}")
            parts.append(line)
            literal = _LITERAL.search(line)
            if literal is None:
                return b"".join(parts)
            parts.append(await self.reader.readexactly(int(literal.group(1))))

    async def command(
        self, text: bytes, literal: bytes | None = None, label: str = ""
    ) -> list[bytes]:
        """Send ``text`` (and ``literal`` after the server's go-ahead); the untagged
        responses, then the tagged one last. Anything but OK raises. Its time goes
        to ``times`` under ``label`` (default: the command's name)."""
        self.tags += 1
        tag = b"a%d" % self.tags
        began = time.perf_counter()
        if literal is None:
            self.writer.write(tag + b" " + text + b"\r\n")
        else:
            self.writer.write(tag + b" " + text + b" {%d}\r\n" % len(literal))
            go = await self.response()
            if not go.startswith(b"+"):
                raise AssertionError(f"{text!r}: no go-ahead: {go!r}")
            self.writer.write(literal + b"\r\n")
        got = []
        while True:
            line = await self.response()
            got.append(line)
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise AssertionError(f"{text[:60]!r}: {line!r}")
                verb = label or b" ".join(text.split()[: 2 if text.startswith(b"UID") else 1])
                key = verb if isinstance(verb, str) else verb.decode()
                self.times.setdefault(key, []).append(time.perf_counter() - began)
                return got


async def one_session(
    port: int, name: str, rng: random.Random, times: dict[str, list[float]]
) -> None:
    """The workload, once (see the module text); each command's time in ``times``."""
    reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
    try:
        imap = Session(reader, writer, times)
        greeting = await imap.response()
        assert greeting.startswith(b"* OK"), greeting
        await imap.command(b"LOGIN %s %s" % (name.encode(), PASSWORD.encode()))
        got = await imap.command(b"SELECT INBOX")
        exists = next(int(m.group(1)) for line in got if (m := _EXISTS.match(line)))
        first = rng.randrange(1, max(2, exists - WINDOW + 2))
        last = min(exists, first + WINDOW - 1)
        got = await imap.command(
            b"FETCH %d:%d (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER])" % (first, last),
            label="FETCH 50 headers",
        )
        fetched = sum(1 for line in got if _FETCH.match(line))
        if fetched != last - first + 1:
            raise AssertionError(f"{fetched} FETCH responses for {first}:{last}")
        number = rng.randrange(first, last + 1)
        got = await imap.command(b"FETCH %d BODY[]" % number, label="FETCH body")
        if not any(len(line) > 2_000 for line in got[:-1]):
            raise AssertionError(f"no body for message {number}: {got[0][:200]!r}")
        sign = rng.choice((b"+", b"-"))
        await imap.command(b"STORE %d %sFLAGS (\\Flagged)" % (rng.randrange(1, exists + 1), sign))
        got = await imap.command(b"APPEND INBOX (\\Seen)", APPENDED)
        appended = _APPENDUID.search(got[-1])
        if appended is None:
            raise AssertionError(f"no APPENDUID: {got[-1]!r}")
        uid = appended.group(1)
        await imap.command(b"UID STORE %s +FLAGS.SILENT (\\Deleted)" % uid)
        got = await imap.command(b"UID EXPUNGE %s" % uid)
        await imap.command(b"LOGOUT")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def load(port: int, clients: int, seconds: float, rounds: int) -> dict[str, Any]:
    """``clients`` clients, each its own user, repeating the session until ``seconds``
    have passed or it has done ``rounds``; every session bounded by a time-out."""
    start = time.perf_counter()
    deadline = start + seconds
    done = [0] * clients
    latencies: list[float] = []
    times: dict[str, list[float]] = {}

    async def client(i: int) -> None:
        rng = random.Random(i)
        while done[i] < rounds and time.perf_counter() < deadline:
            began = time.perf_counter()
            await asyncio.wait_for(one_session(port, user(i), rng, times), 60)
            latencies.append(time.perf_counter() - began)
            done[i] += 1

    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    cpu = os.times()
    return {
        "sessions": sum(done),
        "seconds": elapsed,
        "median": latencies[len(latencies) // 2] if latencies else 0.0,
        "client_cpu": cpu.user + cpu.system,
        "commands": {verb: sorted(t)[len(t) // 2] for verb, t in times.items()},
    }


def run_load(port: int, clients: int, seconds: float, rounds: int) -> dict[str, Any]:
    """The load in a child process; its figures."""
    done = subprocess.run(
        [sys.executable, __file__, "--load", "--port", str(port), "--clients", str(clients),
         "--seconds", str(seconds), "--rounds", str(rounds)],
        capture_output=True, text=True, timeout=seconds + 300, check=False,
    )
    if done.returncode != 0:
        raise ServerFailed(f"client failed: {done.stderr.strip()[-800:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- the measurements ---------------------------------------------------------------------


def measure(label: str, port: int, pid: int, args: argparse.Namespace) -> dict[str, float]:
    """A warm-up session per user, then the timed run with the server's CPU."""
    run_load(port, args.clients, 120, 1)
    before = tree_cpu(pid)
    run = run_load(port, args.clients, args.seconds, args.rounds)
    cpu = tree_cpu(pid) - before
    sessions = run["sessions"]
    if sessions == 0:
        raise ServerFailed("no session completed")
    operations = sessions * COMMANDS
    figures = {
        "ops": operations / run["seconds"],
        "cpu_per_op": cpu / operations,
        "cpu": cpu,
    }
    print(
        f"{label + ':':9} {sessions / run['seconds']:8,.1f} sessions/s "
        f"{figures['ops']:8,.0f} operations/s  server CPU {cpu:6.2f} s "
        f"({cpu / run['seconds'] * 100:3.0f}% of a core), "
        f"{figures['cpu_per_op'] * 1e3:6.3f} ms/operation; "
        f"session median {run['median'] * 1e3:5.1f} ms; "
        f"client CPU {run['client_cpu'] / run['seconds'] * 100:3.0f}% of a core "
        f"({sessions:,} sessions in {run['seconds']:.1f} s)",
        flush=True,
    )
    print(" " * 10 + "median ms: " + ", ".join(
        f"{verb} {seconds * 1e3:.1f}" for verb, seconds in run["commands"].items()
    ), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a short smoke run: 300 messages, 4 clients, 3 s")
    parser.add_argument("--messages", type=int, default=1_000, help="messages per mailbox")
    parser.add_argument("--clients", type=int, default=10, help="parallel clients (users)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the timed run")
    parser.add_argument("--rounds", type=int, default=100_000,
                        help="at most this many sessions per client")
    parser.add_argument("--no-dovecot", action="store_true", help="measure ours only")
    parser.add_argument("--dovecot-reuse", action="store_true",
                        help="Dovecot's high-performance mode (processes reused)")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        result = asyncio.run(load(args.port, args.clients, args.seconds, args.rounds))
        print(json.dumps(result))
        return
    if args.serve:
        serve_ours(Path(args.serve))
        return
    if args.quick:
        args.messages, args.clients, args.seconds = 300, 4, 3.0
    if min(args.messages, args.clients, args.rounds) < 1 or args.seconds <= 0:
        parser.error("--messages, --clients, --rounds and --seconds must be positive")
    mode = "processes reused" if args.dovecot_reuse else "its defaults"
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; {args.clients} clients "
        f"(one user each, a mailbox of {args.messages:,} messages), {args.seconds:g} s; "
        f"a session is {COMMANDS} operations: LOGIN SELECT FETCH(50 headers) FETCH(body) "
        f"STORE APPEND STORE(\\Deleted) UID-EXPUNGE LOGOUT; Dovecot with {mode}",
        flush=True,
    )
    root = Path(tempfile.mkdtemp(prefix="bench-imap-server-"))
    results: dict[str, dict[str, float]] = {}
    try:
        start = time.perf_counter()
        octets = fill(root / "template" / "Maildir", args.messages)
        missing = None if not args.no_dovecot else "--no-dovecot"
        missing = missing or dovecot_missing()
        for label in ("ours",) if missing else ("Dovecot", "ours"):
            copies(root / "template" / "Maildir", root / label, args.clients)
        print(f"filled {args.messages:,} messages ({octets / 1e6:.1f} MB) and copied them for "
              f"each user in {time.perf_counter() - start:.1f} s", flush=True)
        if missing is None:
            try:
                with private_dovecot(root / "Dovecot", args.clients, args.dovecot_reuse) as (
                    port, pid
                ):
                    results["Dovecot"] = measure("Dovecot", port, pid, args)
            except (ServerFailed, AssertionError, RuntimeError) as exc:
                print(f"Dovecot:  FAILED: {exc}")
        else:
            print(f"Dovecot:  n/a ({missing})")
        try:
            with our_server(root / "ours") as (port, pid):
                results["ours"] = measure("ours", port, pid, args)
        except (ServerFailed, AssertionError, RuntimeError) as exc:
            print(f"ours:     FAILED: {exc}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ours, theirs = results.get("ours"), results.get("Dovecot")
    if ours and theirs:
        print(f"CPU per operation, Dovecot/ours: "
              f"{theirs['cpu_per_op'] / ours['cpu_per_op']:.2f} (1.0: as frugal as Dovecot)")
        print(f"ratio ours/Dovecot, operations/s: {ours['ops'] / theirs['ops']:.2f} (goal 0.5)")
    else:
        print("ratio ours/Dovecot, operations/s: n/a (goal 0.5)")


if __name__ == "__main__":
    main()
