"""How fast does our MTA relay mail, against Postfix relaying the same mail?

One load, two relays, one kind of next hop. The load is 5,000 messages of 10 KB (300
with ``--quick``) submitted over 10 concurrent SMTP connections, each connection reused
for up to 50 messages, by one client in a process of its own
(``mailagents.aio.SMTPClient`` on uvloop when importable, PIPELINING, one recipient,
``user@dest.test``). Each relay queues every message durably before its 250 and relays
it to a Postfix ``smtp-sink`` (C, accepts and discards: the common ceiling) on an
address of its own (127.0.0.2 for ours, 127.0.0.3 for Postfix), which counts what it
received (``-c``):

- ours: :class:`mailagents.agents.MTA` in a Python process of its own (this script with
  ``--serve-mta``, the same interpreter): ``relay_networks=127.0.0.0/8``, a
  :class:`~mailagents.queue.Queue` with ``fsync=True`` in a temporary folder, the MX of
  ``dest.test`` given by a ``StaticLookup`` (``mx.dest.test`` at 127.0.0.2) and
  ``outbound_port`` the sink's port; everything else its defaults; INFO logging to a
  file, as Postfix writes its maillog;
- Postfix: a private instance (root only; it listens on 127.0.0.1 alone, relays for
  ``mynetworks = 127.0.0.0/8``), every other setting its default. It cannot ask DNS for
  an MX on a test port, so a transport map sends ``dest.test`` to
  ``smtp:[127.0.0.3]:PORT``; every other destination goes to the error transport.

Figures per relay, in messages per second: accepted (until the client had its last 250)
and relayed, end to end (from the first submission until the sink counted the last
message); the relay's CPU time per message (user + system of every thread and
process: ours is one process; Postfix is its master and all its daemons, living or
reaped, from ``/proc``), from the start of the run until its queue is empty again; and
the client's. Both relays run at once and their runs alternate (ours, Postfix, ours,
Postfix), after a warm-up, so that other work on the machine weighs on both alike;
each figure is the best of two runs (one with ``--quick``). The last line is the ratio
ours/Postfix of the end-to-end rate (goal 0.5 or better). A relay whose run does not
complete (the sink short of messages 30 s after the load ended, or after 300 s; its
queue not empty 60 s later; a message received twice) is reported as ``FAILED`` with
the first error or warning of its log, and left out of the later runs.

Run: ``.venv/bin/python benchmarks/relay.py`` as root (``--quick`` for a smoke run).
Set ``MAILAGENTS_BENCH_PROFILE=DIR`` to run our MTA under cProfile (its main thread:
the event loop) and write ``DIR/mta.prof`` when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import logging
import os
import pwd
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _harness import HOST, ServerFailed, stop_process  # noqa: E402

from mailagents.agents import MTA  # noqa: E402
from mailagents.aio import SMTPClient  # noqa: E402
from mailagents.dns import MXResolver, ResolverConfig, StaticLookup  # noqa: E402
from mailagents.queue import Queue  # noqa: E402

SIZE = 10_240
MESSAGES = 5_000
QUICK = 300
SESSIONS = 10
PER_CONNECTION = 50
SENDER = "bench@sender.test"
DOMAIN = "dest.test"
RECIPIENT = f"user@{DOMAIN}"
SINK_HOSTS = {"ours": "127.0.0.2", "postfix": "127.0.0.3"}
NAMES = {"ours": "ours (mailagents MTA)", "postfix": "Postfix"}
RUN_LIMIT = 300.0  # seconds for one run, load and relaying
QUIET_LIMIT = 60.0  # seconds for a relay's queue to empty after a run
STALL_LIMIT = 30.0  # seconds without a message reaching the sink, the load done: failed
PROFILE_ENV = "MAILAGENTS_BENCH_PROFILE"
SBIN = "/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postfix/sbin"
FAILURES = (ServerFailed, RuntimeError, OSError, subprocess.SubprocessError)


def program(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=SBIN)


def missing() -> str | None:
    """Why the benchmark cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (a private Postfix instance; smtp-sink drops privileges)"
    for name in ("postfix", "smtp-sink"):
        if program(name) is None:
            return f"{name} not installed (apt-get install postfix)"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "no user postfix"
    return None


# --- small helpers ------------------------------------------------------------------------


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_port(host: str, port: int, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ServerFailed(f"nothing listens on {host}:{port}") from None
            time.sleep(0.05)


def tree_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system) of a process (all its threads), of its children it
    reaped, and recursively of its living children (Postfix's daemons), or None where
    /proc cannot tell."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        total = sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            children = [int(c) for c in f.read().split()]
    except (OSError, ValueError, IndexError):
        return None
    return total + sum(tree_cpu(child) or 0.0 for child in children)


def first_line(process: subprocess.Popen[Any], seconds: float = 30.0) -> str:
    """The first line a child prints on its stdout (empty if none within ``seconds``)."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], seconds)
    if not ready:
        return ""
    line = process.stdout.readline()
    return line.decode(errors="replace") if isinstance(line, bytes) else str(line)


def count_files(*directories: Path) -> int:
    total = 0
    for directory in directories:
        for _, _, files in os.walk(directory):
            total += len(files)
    return total


def first_problem(path: Path) -> str:
    """The first error or warning line of a relay's log (and how many there are), else
    the log's last lines."""
    found: list[str] = []
    with contextlib.suppress(OSError), open(path, errors="replace") as f:
        found = [line.strip() for line in f if _PROBLEM.search(line)]
    if not found:
        return f"the log ends: {tail(path, 400)}"
    return f"{len(found)} errors or warnings in the log, the first: {found[0][:300]}"


_PROBLEM = re.compile(r" (ERROR|WARNING|CRITICAL) |warning:|fatal:|panic:|status=deferred")


def tail(path: Path, size: int = 800) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            return " | ".join(f.read().decode(errors="replace").split("\n")).strip()
    except OSError:
        return ""


# --- the sink -----------------------------------------------------------------------------

_COUNTER = re.compile(rb"mesg=(\d+)\r")


@dataclass
class Sink:
    host: str
    port: int
    output: Path  # smtp-sink -c writes "sess=N quit=N mesg=N\r" after every message

    def received(self) -> int:
        with open(self.output, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 128))
            found = _COUNTER.findall(f.read())
        return int(found[-1]) if found else 0


@contextlib.contextmanager
def smtp_sink(host: str, root: Path) -> Iterator[Sink]:
    binary = program("smtp-sink")
    assert binary is not None
    port = free_port(host)
    output = root / f"sink-{host}.out"
    with open(output, "wb") as out:
        process = subprocess.Popen([binary, "-c", "-u", "postfix", f"{host}:{port}", "256"],
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_port(host, port)
        yield Sink(host, port, output)
    finally:
        stop_process(process, grace=5)


# --- the relays ---------------------------------------------------------------------------


@dataclass
class Relay:
    key: str
    port: int  # where the load goes, on HOST
    pid: int  # the process whose tree is measured
    queue_dirs: list[Path]  # empty when everything is relayed
    log: Path
    process: subprocess.Popen[Any] | None = None  # ours


async def run_mta(port: int, sink_host: str, sink_port: int, queue: str) -> None:
    """Our MTA, until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    resolver = MXResolver(ResolverConfig(families=(4,)), lookup=StaticLookup({
        DOMAIN: {"MX": [f"10 mx.{DOMAIN}."]},
        f"mx.{DOMAIN}": {"A": [sink_host]},
    }))
    async with MTA("mx.relay.test", local_domains={"relay.test"},
                   queue=Queue(queue, fsync=True), relay_networks=["127.0.0.0/8"],
                   resolver=resolver, outbound_port=sink_port) as mta:
        await mta.serve(HOST, port)
        print(f"ready {mta.port}", flush=True)
        await stop.wait()


def serve_mta(port: int, sink: str, queue: str, log_file: str) -> None:
    """The ``--serve-mta`` process."""
    logging.basicConfig(filename=log_file, level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sink_host, _, sink_port = sink.rpartition(":")
    profile_dir = os.environ.get(PROFILE_ENV)
    profiler = cProfile.Profile() if profile_dir else None
    if profiler is not None:
        profiler.enable()
    try:
        asyncio.run(run_mta(port, sink_host, int(sink_port), queue))
    finally:
        if profiler is not None and profile_dir:
            profiler.disable()
            os.makedirs(profile_dir, exist_ok=True)
            profiler.dump_stats(os.path.join(profile_dir, "mta.prof"))


@contextlib.contextmanager
def ours(root: Path, sink: Sink) -> Iterator[Relay]:
    root.mkdir(parents=True)
    queue, log = root / "queue", root / "mta.log"
    command = [sys.executable, __file__, "--serve-mta", "--port", "0", "--sink",
               f"{sink.host}:{sink.port}", "--queue", str(queue), "--log", str(log)]
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    with open(root / "stderr", "wb") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, env=env)
    try:
        line = first_line(process).split()
        if line[:1] != ["ready"]:
            raise ServerFailed(f"our MTA did not start: {tail(root / 'stderr')}")
        yield Relay("ours", int(line[1]), process.pid, [queue / "queue"], log, process)
    finally:
        stop_process(process, grace=30)


SERVICES = """\
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
proxywrite unix  - - n -     1 proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
"""


def transport_line(sink: Sink) -> str:
    return f"{DOMAIN} smtp:[{sink.host}]:{sink.port}"


@contextlib.contextmanager
def postfix(root: Path, sink: Sink) -> Iterator[Relay]:
    """A private Postfix on HOST:PORT relaying dest.test to the sink."""
    binary = program("postfix")
    assert binary is not None
    etc, queue, data = root / "etc", root / "queue", root / "data"
    for directory in (etc, queue, data):
        directory.mkdir(parents=True)
    os.chown(data, pwd.getpwnam("postfix").pw_uid, -1)
    (etc / "transport").write_text(transport_line(sink) + "\n")
    (etc / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
syslog_name = bench-relay
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
myhostname = mx.relay.test
mydomain = relay.test
myorigin = $myhostname
inet_interfaces = {HOST}
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
alias_maps =
alias_database =
# No DNS on a test port: dest.test goes to the sink by the transport map; anything
# else to the error transport, so that nothing leaves the machine.
transport_maps = texthash:{etc}/transport
default_transport = error:outbound mail disabled
relay_transport = error:outbound mail disabled
smtp_dns_support_level = disabled
""")
    port = free_port(HOST)
    (etc / "master.cf").write_text(f"{HOST}:{port} inet n - n - - smtpd\n" + SERVICES)
    master = 0
    try:
        done = subprocess.run([binary, "-c", str(etc), "start"], capture_output=True,
                              text=True, timeout=60)
        if done.returncode != 0:
            raise ServerFailed(f"postfix start failed: {done.stderr.strip()} "
                               f"{tail(root / 'maillog')}")
        wait_port(HOST, port)
        master = int((queue / "pid" / "master.pid").read_text())
        queue_dirs = [queue / d for d in ("maildrop", "incoming", "active", "deferred", "hold")]
        yield Relay("postfix", port, master, queue_dirs, root / "maillog")
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([binary, "-c", str(etc), "stop"], capture_output=True, timeout=60)
        deadline = time.monotonic() + 15  # the pid file stays: wait for the process
        while master and os.path.exists(f"/proc/{master}") and time.monotonic() < deadline:
            time.sleep(0.05)
        if master and os.path.exists(f"/proc/{master}"):
            with contextlib.suppress(OSError):
                os.kill(master, signal.SIGKILL)


# --- the load -----------------------------------------------------------------------------


def message_bytes(number: int) -> bytes:
    head = (
        f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: relay benchmark {number}\r\n"
        f"Message-ID: <{number}.{secrets.token_hex(6)}@sender.test>\r\n\r\n"
    ).encode()
    line = b"La de da de da. The quick brown fox jumps over the lazy dog again.\r\n"
    body = (line * (SIZE // len(line) + 1))[: SIZE - len(head) - 2]
    return head + body + b"\r\n"


async def client_load(port: int, messages: int) -> None:
    """SESSIONS concurrent sessions, each reconnecting after PER_CONNECTION messages."""
    remaining = messages

    async def session() -> None:
        nonlocal remaining
        while remaining > 0:
            async with SMTPClient.connect(HOST, port, local_hostname="client.sender.test",
                                          starttls=False) as client:
                for _ in range(PER_CONNECTION):
                    if remaining <= 0:
                        break
                    remaining -= 1
                    await client.send_message(message_bytes(remaining), sender=SENDER,
                                              recipients=[RECIPIENT])

    async with asyncio.timeout(RUN_LIMIT):
        await asyncio.gather(*(session() for _ in range(SESSIONS)))


def load_main(port: int, messages: int) -> None:
    """The ``--load`` process: "ready", then on "go" from stdin the load, then "done
    SECONDS CPU-SECONDS"."""
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    start, cpu = time.perf_counter(), time.process_time()
    try:
        import uvloop  # the client should not be what limits the figures
    except ImportError:
        asyncio.run(client_load(port, messages))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(client_load(port, messages))
    print(f"done {time.perf_counter() - start} {time.process_time() - cpu}", flush=True)


# --- one run ------------------------------------------------------------------------------


@dataclass
class Figures:
    accepted: float  # msg/s until the client had its last 250
    relayed: float  # msg/s until the sink counted the last message
    cpu: float | None  # the relay's CPU seconds per message
    client_cpu: float  # the client's CPU seconds per message


def alive(relay: Relay) -> None:
    if relay.process is not None and relay.process.poll() is not None:
        raise ServerFailed(f"our MTA exited ({relay.process.returncode}): {tail(relay.log)}")


def wait_quiet(relay: Relay, seconds: float = QUIET_LIMIT) -> None:
    deadline = time.monotonic() + seconds
    while (left := count_files(*relay.queue_dirs)) and time.monotonic() < deadline:
        alive(relay)
        time.sleep(0.02)
    if left:
        raise ServerFailed(f"{left} files still queued {seconds:.0f} s after the run; "
                           f"{first_problem(relay.log)}")


def run(relay: Relay, sink: Sink, messages: int) -> Figures:
    """Send ``messages`` to ``relay`` and time them until ``sink`` has them all."""
    wait_quiet(relay)
    goal = sink.received() + messages
    client = subprocess.Popen(
        [sys.executable, __file__, "--load", str(relay.port), "--messages", str(messages)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(HERE.parent)))
    try:
        assert client.stdin is not None
        if first_line(client).strip() != "ready":
            raise ServerFailed(f"the client did not start: {client.communicate(timeout=10)[1]}")
        cpu_before = tree_cpu(relay.pid)
        client.stdin.write("go\n")
        client.stdin.flush()
        start = time.perf_counter()
        deadline = start + RUN_LIMIT
        last, moved = -1, start
        while (count := sink.received()) < goal and (now := time.perf_counter()) < deadline:
            if count != last:
                last, moved = count, now
            elif client.poll() is not None and now - moved > STALL_LIMIT:
                break  # the load is done and nothing more arrives
            if client.poll() not in (None, 0):
                lines = client.communicate(timeout=10)[1].strip().splitlines() or ["?"]
                raise ServerFailed(f"the client failed: {lines[-1]}")
            alive(relay)
            time.sleep(0.005)
        relayed = time.perf_counter() - start
        if count < goal:
            raise ServerFailed(f"the sink got {goal - count} of {messages} messages too few "
                               f"after {relayed:.0f} s; {first_problem(relay.log)}")
        out, err = client.communicate(timeout=RUN_LIMIT)
    finally:
        stop_process(client, grace=5)
    done = out.split()
    if client.returncode != 0 or done[:1] != ["done"]:
        lines = err.strip().splitlines() or ["?"]
        raise ServerFailed(f"the client failed: {lines[-1]}")
    wait_quiet(relay)
    cpu_after = tree_cpu(relay.pid)
    if (extra := sink.received() - goal) > 0:
        raise ServerFailed(f"the sink got {extra} messages more than were sent")
    cpu = None
    if cpu_before is not None and cpu_after is not None:
        cpu = (cpu_after - cpu_before) / messages
    return Figures(messages / float(done[1]), messages / relayed, cpu,
                   float(done[2]) / messages)


def show(name: str, got: Figures, what: str = "") -> None:
    cpu = (f"relay {got.cpu:.5f} CPU-s/msg" if got.cpu is not None
           else "relay CPU n/a")
    print(f"{name + what + ':':30} accepted {got.accepted:6,.0f} msg/s  relayed end to end "
          f"{got.relayed:6,.0f} msg/s  {cpu}  (client {got.client_cpu:.5f})", flush=True)


def version(command: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
        return done.stdout.strip().split(" ")[0]
    return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK} messages, one run each (a smoke run)")
    parser.add_argument("--messages", type=int, help=f"messages per run (default {MESSAGES:,})")
    parser.add_argument("--runs", type=int, help="runs per relay (default 2, 1 with --quick)")
    parser.add_argument("--only", choices=tuple(NAMES), help="measure one relay only")
    parser.add_argument("--serve-mta", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sink", help=argparse.SUPPRESS)
    parser.add_argument("--queue", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_mta:
        serve_mta(args.port, args.sink, args.queue, args.log)
        return 0
    if args.load is not None:
        load_main(args.load, args.messages)
        return 0
    why = missing()
    if why is not None:
        print(f"relay benchmark skipped: {why}")
        return 0
    messages = max(1, args.messages or (QUICK if args.quick else MESSAGES))
    runs = max(1, args.runs or (1 if args.quick else 2))
    keys = [args.only] if args.only else list(NAMES)
    try:
        import uvloop
        client_loop = f"uvloop {getattr(uvloop, '__version__', '?')}"
    except ImportError:
        client_loop = "asyncio"
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; Postfix "
          f"{version([program('postconf') or 'postconf', '-h', '-d', 'mail_version'])}")
    print(f"{messages:,} messages of {SIZE:,} octets per run over {SESSIONS} concurrent "
          f"connections ({PER_CONNECTION} messages each, then a new one), from "
          f"mailagents.aio.SMTPClient on {client_loop}; relayed to smtp-sink; best of "
          f"{runs} after a warm-up, the relays' runs alternating")
    print("CPU-s/msg: CPU seconds (user + system) per message of the relay's processes "
          "from the first submission until its queue is empty; the client's in brackets")
    began = time.perf_counter()
    results: dict[str, Figures] = {}
    root = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    os.chmod(root, 0o755)
    with contextlib.ExitStack() as stack:  # exits in reverse: relays, sinks, temp dir
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        live: dict[str, tuple[Relay, Sink]] = {}
        for key in keys:
            try:
                sink = stack.enter_context(smtp_sink(SINK_HOSTS[key], root))
                relay = stack.enter_context((ours if key == "ours" else postfix)(
                    root / key, sink))
                if key == "postfix":
                    print(f"Postfix relays through a transport map (it cannot ask DNS for an "
                          f"MX on a test port): {transport_line(sink)}")
                else:
                    print(f"ours finds the sink by MX lookup (StaticLookup): {DOMAIN} MX "
                          f"mx.{DOMAIN} A {sink.host}, outbound_port {sink.port}")
                run(relay, sink, min(200, messages))  # warm-up
                live[key] = relay, sink
            except FAILURES as exc:
                print(f"{NAMES[key] + ':':30} FAILED: {exc}", flush=True)
        # Both are up at once and the runs alternate, so that whatever else the machine
        # does at the time weighs on both alike.
        for number in range(1, runs + 1):
            for key, (relay, sink) in list(live.items()):
                try:
                    got = run(relay, sink, messages)
                except FAILURES as exc:
                    print(f"{NAMES[key] + ':':30} FAILED: {exc}", flush=True)
                    del live[key]
                    continue
                show(NAMES[key], got, f", run {number}")
                if key not in results or got.relayed > results[key].relayed:
                    results[key] = got
    print(f"elapsed {time.perf_counter() - began:.1f} s; best runs:")
    for key, got in results.items():
        show(NAMES[key], got)
    if "ours" in results and "postfix" in results:
        ratio = f"{results['ours'].relayed / results['postfix'].relayed:.2f}"
    else:
        ratio = "n/a (a figure is missing above)"
    print(f"ratio ours/Postfix, relayed msg/s end to end: {ratio} (goal >= 0.5)")
    return 0


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the ExitStack: every process stopped


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminated)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
