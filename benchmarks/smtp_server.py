"""How fast is the SMTP server over real sockets, against aiosmtpd and Postfix?

Every server runs in a process of its own, listening on a free high port of 127.0.0.1,
and gets the same load: Postfix's ``smtp-source`` (C) when installed, else an asyncio
client in another process doing the same. 20 concurrent sessions send 10 KB messages
(5,000 in all, 1,000 with ``--quick``), first with one message per connection, then
with the connections reused. The servers, each accepting every recipient and
discarding the message:

- ours: ``mailagents.aio.SMTPServer`` with a handler whose ``on_data_chunk`` discards
  and ``on_message`` accepts, on the default asyncio event loop and on uvloop (when
  importable: ``pip install uvloop``, or the ``bench`` extra);
- aiosmtpd with its ``Sink`` handler (accept and discard) on the default event loop;
- Postfix's ``smtp-sink`` (C, event-driven: the ceiling), when installed;
- a do-nothing Python sink (canned replies, no parsing, no limits, no handler) on each
  event loop: the ceiling of any Python server on that loop. The share of it that ours
  reaches is printed, and shows what our parsing and plumbing cost.

Then durable acceptance (250 only once the message is on disk): our server with a
handler that delivers into Maildir through ``MaildirDelivery`` (``MaildirStore``, file
and directory fsynced), once with the file work in the store's executor threads and
once in its writer process (``writer="process"``), beside a private Postfix instance
(its queue file is fsynced before 250) delivering into Maildir with ``virtual(8)``, when
Postfix is installed and we run as root.

Each figure is the best of two runs (one with ``--quick``) after a short warm-up. The
last lines are the ratios: ours/smtp-sink on uvloop (goal 1.0 or better), ours/Postfix
durable (goal 2.0) and, last, ours/aiosmtpd on the default event loop with one message
per connection (goal 2.5 or better).

Run: ``python benchmarks/smtp_server.py`` (``--quick`` for 1,000 messages). Set
``MAILAGENTS_BENCH_PROFILE=DIR`` to have each of our server processes run under
cProfile and write ``DIR/<server>.prof`` when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _harness import HOST, ServerFailed, free_port, stop_process, wait_port  # noqa: E402

from mailagents.agents import MaildirDelivery, Submission  # noqa: E402
from mailagents.aio import Session, SMTPHandler, SMTPServer  # noqa: E402
from mailagents.delivery import Message  # noqa: E402
from mailagents.smtp import Accept, Envelope, LMTPReplies, Reject  # noqa: E402

SESSIONS = 20
SIZE = 10_240
SENDER = "bench@example.test"
RECIPIENT = "test@example.test"
PROFILE_ENV = "MAILAGENTS_BENCH_PROFILE"
SBIN_DIRS = ("/usr/sbin", "/usr/lib/postfix/sbin", "/usr/libexec/postfix", "/usr/local/sbin")


def find_program(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN_DIRS:
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return None


class LoadFailed(Exception):
    """The load generator reported an error."""


def figure(label: str, reuse: bool, rate: float, cpu: float | None = None) -> None:
    mode = "connections reused" if reuse else "one msg per connection"
    spent = f"  {cpu * 1e6:6,.0f} us CPU/msg" if cpu is not None else ""
    print(f"{label + ':':42} {mode:22}  {rate:9,.0f} msg/s{spent}")


def cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system, all threads) a process and its running children (the
    Maildir writer process) have used so far, or None where /proc cannot tell."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            children = [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        children = []
    for child in children:
        total += cpu_seconds(child) or 0.0
    return total


# --- the servers (each in a process of its own: --serve KIND) --------------------------


class Discard(SMTPHandler):
    """Accept every recipient and message, keep nothing."""

    async def on_data_chunk(self, session: Session, data: bytes) -> None:
        pass

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        return Accept()


class Durable(SMTPHandler):
    """Collect the message (the default ``on_data_chunk``), deliver it into each
    recipient's Maildir (fsynced), and only then accept it."""

    def __init__(self, delivery: MaildirDelivery) -> None:
        self.delivery = delivery

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        submission = Submission(
            id=secrets.token_hex(8), identity="", envelope=envelope,
            message=Message.from_bytes(message),
        )
        await self.delivery(submission)
        return Accept()


class DoNothing(asyncio.Protocol):
    """The ceiling of a Python server on an event loop: canned SMTP replies, no parsing
    beyond finding line ends and the end of data, no limits, no time-outs, no handler.
    What is left of a real server's CPU once this is taken away is the server's own."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.data = False
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(b"220 sink.test ESMTP\r\n")

    def data_received(self, chunk: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if self.data:
            window = self.tail + chunk
            end = window.find(b"\r\n.\r\n")
            if end < 0:
                self.tail = window[-4:]
                return
            self.data, self.tail = False, b""
            chunk = window[end + 5 :]
            transport.write(b"250 2.0.0 Ok\r\n")
        replies = []
        lines = chunk.split(b"\r\n")
        for line in lines[:-1]:  # (a command cut between chunks: not with smtp-source)
            verb = line[:4].upper()
            if verb == b"EHLO":
                replies.append(b"250-sink.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                replies.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                self.data = True
                break
            elif verb == b"QUIT":
                replies.append(b"221 2.0.0 Bye\r\n")
                transport.write(b"".join(replies))
                transport.close()
                return
            else:
                replies.append(b"250 2.0.0 Ok\r\n")
        if replies:
            transport.write(b"".join(replies))


async def run_server(kind: str, port: int, maildir: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    if kind.startswith("nothing"):
        bare = await loop.create_server(DoNothing, HOST, port, backlog=1024)
        print("ready", flush=True)
        await stop.wait()
        bare.close()
        await bare.wait_closed()
        return
    if kind == "aiosmtpd":
        from aiosmtpd.handlers import Sink  # type: ignore[import-not-found]
        from aiosmtpd.smtp import SMTP  # type: ignore[import-not-found]

        # As ``python -m aiosmtpd -n -u -c aiosmtpd.handlers.Sink`` serves.
        handler = Sink()
        server = await loop.create_server(
            lambda: SMTP(handler, enable_SMTPUTF8=True, hostname="bench.test", loop=loop),
            HOST,
            port,
            backlog=1024,
        )
        print("ready", flush=True)
        await stop.wait()
        server.close()
        await server.wait_closed()
        return
    delivery: MaildirDelivery | None = None
    if kind in ("durable", "durable-writer"):
        assert maildir is not None
        delivery = MaildirDelivery(
            os.path.join(maildir, "{local}", "Maildir"),
            writer="process" if kind == "durable-writer" else "thread",
        )
        ours = SMTPServer(Durable(delivery))
    else:
        ours = SMTPServer(Discard())
    await ours.start(HOST, port)
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        await ours.close(timeout=0)
        if delivery is not None:
            await delivery.aclose()


def serve(kind: str, port: int, maildir: str | None) -> None:
    profile_dir = os.environ.get(PROFILE_ENV) if kind != "aiosmtpd" else None
    profiler = cProfile.Profile() if profile_dir else None
    if profiler is not None:
        profiler.enable()
    try:
        if kind in ("ours-uvloop", "nothing-uvloop"):
            import uvloop  # type: ignore[import-not-found]

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(run_server(kind, port, maildir))
        else:
            asyncio.run(run_server(kind, port, maildir))
    finally:
        if profiler is not None and profile_dir:
            profiler.disable()
            os.makedirs(profile_dir, exist_ok=True)
            profiler.dump_stats(os.path.join(profile_dir, f"{kind}.prof"))


@contextlib.contextmanager
def python_server(kind: str, maildir: str | None = None) -> Iterator[tuple[int, int]]:
    """Our server or aiosmtpd in a child process; yields its port and process id, stops
    it after."""
    port = free_port()
    command = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
    if maildir is not None:
        command += ["--maildir", maildir]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
        failure: Exception | None = None
        try:
            assert process.stdout is not None
            if process.stdout.readline().strip() != b"ready":
                raise ServerFailed("did not start")
            yield port, process.pid
        except LoadFailed as exc:
            failure = exc
        finally:
            stop_process(process)
        errors.seek(0)
        text = errors.read().decode(errors="replace").strip()
        if failure is not None or text:
            raise ServerFailed(f"{failure}; the server said: {first_error(text)}")


def first_error(text: str) -> str:
    """The first traceback's innermost frame and exception, from a server's stderr."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            frame = next((x for x in reversed(lines[:i]) if x.lstrip().startswith("File")), "")
            end = next((j for j in range(i + 1, len(lines)) if not lines[j].startswith(" ")), i)
            frame = next(
                (x.strip() for x in reversed(lines[i:end]) if x.lstrip().startswith("File")),
                frame,
            )
            return f"{lines[end].strip()} at {frame}"
    return text[-500:] or "(nothing)"


@contextlib.contextmanager
def smtp_sink(program: str) -> Iterator[tuple[int, int]]:
    """Postfix's smtp-sink: accepts and discards everything."""
    port = free_port()
    command = [program]
    if os.geteuid() == 0:  # it refuses to run as root without -u
        command += ["-u", "postfix" if user_exists("postfix") else "nobody"]
    command += [f"{HOST}:{port}", "256"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield port, process.pid
    finally:
        stop_process(process)


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# --- a private Postfix delivering into Maildir ------------------------------------------


def postfix_missing() -> str | None:
    """Why a private Postfix cannot run here, or None."""
    if find_program("postfix") is None:
        return "postfix not installed"
    if os.geteuid() != 0:
        return "needs root to start a private Postfix instance"
    if not os.path.exists("/etc/postfix/master.cf.proto"):
        return "no /etc/postfix/master.cf.proto to build master.cf from"
    for user in ("postfix", "nobody"):
        if not user_exists(user):
            return f"no user {user}"
    return None


@contextlib.contextmanager
def private_postfix(root: Path) -> Iterator[tuple[int, Path]]:
    """Postfix listening only on 127.0.0.1:PORT, delivering mail for example.test into
    ROOT/mail/<user>/Maildir; no other mail goes anywhere. Yields (port, new/ dir)."""
    postfix = find_program("postfix")
    assert postfix is not None
    port = free_port()
    root.mkdir(mode=0o755)
    for directory in root.parents:  # Postfix's users must reach their directories
        if directory.stat().st_mode & 0o001:
            break
        os.chmod(directory, directory.stat().st_mode | 0o005)
    etc, queue, data, mail = (root / name for name in ("etc", "queue", "data", "mail"))
    for directory in (etc, queue, data, mail):
        directory.mkdir(parents=True)
    nobody = pwd.getpwnam("nobody")
    os.chown(mail, nobody.pw_uid, nobody.pw_gid)
    os.chown(data, pwd.getpwnam("postfix").pw_uid, -1)
    (etc / "vmailbox").write_text(f"{RECIPIENT} test/Maildir/\n")
    (etc / "main.cf").write_text(
        f"""\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.test
mydomain = example.test
myorigin = $myhostname
inet_interfaces = {HOST}
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
default_transport = error:outbound mail disabled
relay_transport = error:outbound mail disabled
smtp_dns_support_level = disabled
virtual_mailbox_domains = example.test
virtual_transport = virtual
virtual_mailbox_base = {mail}
virtual_mailbox_maps = texthash:{etc}/vmailbox
alias_maps =
alias_database =
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
virtual_minimum_uid = 1
virtual_mailbox_limit = 0
"""
    )
    # The stock master.cf, smtpd moved to our port, nothing chrooted (the private queue
    # directory has none of the files a chroot needs), plus postlogd for maillog_file.
    lines = []
    for line in Path("/etc/postfix/master.cf.proto").read_text().splitlines():
        fields = line.split()
        if line[:1] not in ("", "#", " ", "\t") and len(fields) >= 8:
            if fields[0] == "smtp" and fields[1] == "inet":
                fields[0] = f"{HOST}:{port}"
            fields[4] = "n" if fields[4] == "y" else fields[4]
            line = " ".join(fields[:8]) + " " + " ".join(fields[8:])
        lines.append(line)
    if not any(line.startswith("postlog") for line in lines):
        lines.append("postlog unix-dgram n - n - 1 postlogd")
    (etc / "master.cf").write_text("\n".join(lines) + "\n")
    started = subprocess.run(
        [postfix, "-c", str(etc), "start"], capture_output=True, text=True, timeout=60
    )
    try:
        if started.returncode != 0:
            log = (root / "maillog").read_text()[-1000:] if (root / "maillog").exists() else ""
            raise RuntimeError(f"postfix start failed: {started.stderr.strip()} {log}")
        wait_port(port)
        yield port, mail / "test" / "Maildir" / "new"
    finally:
        subprocess.run([postfix, "-c", str(etc), "stop"], capture_output=True, timeout=60)
        pid_file = queue / "pid" / "master.pid"
        deadline = time.monotonic() + 15
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)


def count_files(directory: Path) -> int:
    try:
        return len(os.listdir(directory))
    except FileNotFoundError:
        return 0


# --- the load ---------------------------------------------------------------------------


def message_bytes(size: int) -> bytes:
    head = (
        f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: benchmark\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@bench.example.test>\r\n\r\n"
    ).encode()
    line = b"La de da de da. The quick brown fox jumps over the lazy dog again.\r\n"
    body = (line * (size // len(line) + 1))[: size - len(head) - 2]
    return head + body + b"\r\n"


async def client_load(port: int, messages: int, sessions: int, size: int, reuse: bool) -> None:
    """What smtp-source does: ``sessions`` concurrent sessions, without pipelining,
    one message per connection or the connection reused."""
    remaining = messages
    content = message_bytes(size) + b".\r\n"
    transaction = (
        (f"MAIL FROM:<{SENDER}>\r\n".encode(), b"250"),
        (f"RCPT TO:<{RECIPIENT}>\r\n".encode(), b"250"),
        (b"DATA\r\n", b"354"),
        (content, b"250"),
    )

    async def reply(reader: asyncio.StreamReader, code: bytes) -> None:
        while True:
            line = await reader.readline()
            if not line.startswith(code):
                raise RuntimeError(f"expected {code.decode()}, got {line!r}")
            if line[3:4] != b"-":
                return

    async def session() -> None:
        nonlocal remaining
        while remaining > 0:
            reader, writer = await asyncio.open_connection(HOST, port)
            await reply(reader, b"220")
            writer.write(b"EHLO client.example.test\r\n")
            await reply(reader, b"250")
            while remaining > 0:
                remaining -= 1
                for command, code in transaction:
                    writer.write(command)
                    await reply(reader, code)
                if not reuse:
                    break
            writer.write(b"QUIT\r\n")
            await reply(reader, b"221")
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    await asyncio.gather(*(session() for _ in range(sessions)))


def load_main(port: int, messages: int, sessions: int, size: int, reuse: bool) -> None:
    """Run the client and print the seconds it took (the interpreter's start excluded)."""
    start = time.perf_counter()
    try:
        import uvloop  # the client should not be what limits the figures
    except ImportError:
        asyncio.run(client_load(port, messages, sessions, size, reuse))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(client_load(port, messages, sessions, size, reuse))
    print(time.perf_counter() - start)


class Load:
    """Run the load against a port and time it, with smtp-source or our client."""

    def __init__(self, smtp_source: str | None, sessions: int, size: int) -> None:
        self.smtp_source = smtp_source
        self.sessions = sessions
        self.size = size

    @property
    def name(self) -> str:
        if self.smtp_source:
            return f"smtp-source ({self.smtp_source})"
        return "asyncio client (smtp-source not installed)"

    def run(self, port: int, messages: int, reuse: bool) -> float:
        """Seconds to send ``messages`` messages."""
        if self.smtp_source:
            command = [
                self.smtp_source,
                "-s",
                str(self.sessions),
                "-m",
                str(messages),
                "-l",
                str(self.size),
                "-c",
                "-f",
                SENDER,
                "-t",
                RECIPIENT,
            ]
            if reuse:
                command.append("-d")
            command.append(f"{HOST}:{port}")
        else:
            command = [
                sys.executable,
                __file__,
                "--load",
                str(port),
                "--messages",
                str(messages),
                "--sessions",
                str(self.sessions),
                "--size",
                str(self.size),
            ]
            if reuse:
                command.append("--reuse")
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, timeout=600)
        elapsed = time.perf_counter() - start
        if done.returncode != 0 or b"fatal" in done.stderr:
            lines = done.stderr.decode(errors="replace").strip().splitlines() or ["?"]
            raise LoadFailed(lines[-1])
        return elapsed if self.smtp_source else float(done.stdout)

    def rate(
        self, port: int, messages: int, reuse: bool, runs: int, pid: int | None = None
    ) -> tuple[float, float | None]:
        """Messages per second, the best of ``runs`` after a warm-up, and the CPU time
        per message the server process ``pid`` spent in that run (when known: the
        figure that stays comparable when other work shares the machine)."""
        self.run(port, min(200, messages), reuse)
        best: tuple[float, float | None] = (0.0, None)
        for _ in range(runs):
            before = cpu_seconds(pid)
            seconds = self.run(port, messages, reuse)
            after = cpu_seconds(pid)
            spent = (
                (after - before) / messages if before is not None and after is not None else None
            )
            if messages / seconds > best[0]:
                best = (messages / seconds, spent)
        return best


# --- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 messages, one run each")
    parser.add_argument("--messages", type=int, help="messages per run (default 5,000)")
    parser.add_argument(
        "--client",
        choices=("auto", "asyncio"),
        default="auto",
        help="asyncio: use our asyncio client even if smtp-source exists",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--maildir", help=argparse.SUPPRESS)
    parser.add_argument("--sessions", type=int, default=SESSIONS, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=SIZE, help=argparse.SUPPRESS)
    parser.add_argument("--reuse", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.maildir)
        return 0
    if args.load:
        load_main(args.load, args.messages, args.sessions, args.size, args.reuse)
        return 0

    messages = args.messages or (1_000 if args.quick else 5_000)
    runs = 1 if args.quick else 2
    source = find_program("smtp-source") if args.client == "auto" else None
    sink = find_program("smtp-sink")
    try:
        import uvloop
    except ImportError:
        uvloop = None
    try:
        import aiosmtpd  # type: ignore[import-not-found]
    except ImportError:
        aiosmtpd = None
    load = Load(source, SESSIONS, SIZE)
    started = time.perf_counter()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; load: {load.name}")
    print(
        f"{messages:,} messages of {SIZE:,} octets over {SESSIONS} concurrent sessions, "
        f"best of {runs} after a warm-up; msg/s"
    )
    print(
        "CPU/msg: the server process's CPU time (user + system, all threads, and its"
        " writer process if any) per message"
    )

    rates: dict[tuple[str, bool], float] = {}
    servers: list[tuple[str, str, Any]] = [
        ("nothing", "do-nothing Python sink, asyncio", None),
        ("ours", "mailagents.aio, asyncio", None),
    ]
    if uvloop is not None:
        servers.append(("nothing-uvloop", "do-nothing Python sink, uvloop", None))
        servers.append(("ours-uvloop", f"mailagents.aio, uvloop {uvloop.__version__}", None))
    else:
        print("mailagents.aio, uvloop: skipped (pip install uvloop)")
    if aiosmtpd is not None:
        servers.append(("aiosmtpd", f"aiosmtpd {aiosmtpd.__version__} Sink, asyncio", None))
    else:
        print("aiosmtpd: skipped (pip install aiosmtpd)")
    if sink is not None:
        servers.append(("smtp-sink", "Postfix smtp-sink (C)", sink))
    else:
        print("Postfix smtp-sink: skipped (not installed)")

    for kind, label, program in servers:
        try:
            with smtp_sink(program) if program else python_server(kind) as (port, pid):
                for reuse in (False, True):
                    rate, cpu = load.rate(port, messages, reuse, runs, pid)
                    rates[kind, reuse] = rate
                    figure(label, reuse, rate, cpu)
        except ServerFailed as exc:
            print(f"{label + ':':42} FAILED: {exc}")

    # Durable acceptance: 250 only once the message is on disk.
    durable: dict[tuple[str, bool], float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-smtp-") as tmp:
        for kind, key, label in (
            ("durable", "ours", "mailagents.aio durable (Maildir, fsync)"),
            ("durable-writer", "ours-writer", "mailagents.aio durable, writer process"),
        ):
            maildir = os.path.join(tmp, kind)
            try:
                with python_server(kind, maildir) as (port, pid):
                    for reuse in (False, True):
                        rate, cpu = load.rate(port, messages, reuse, runs, pid)
                        durable[key, reuse] = rate
                        figure(label, reuse, rate, cpu)
            except ServerFailed as exc:
                print(f"{label + ':':42} FAILED: {exc}")
        why = postfix_missing()
        if why is None:
            try:
                durable.update(postfix_durable(Path(tmp) / "postfix", load, messages, runs))
            except (ServerFailed, RuntimeError, OSError, subprocess.SubprocessError) as exc:
                print(f"Postfix durable: skipped ({exc})")
        else:
            print(f"Postfix durable: skipped ({why})")
    print(f"elapsed {time.perf_counter() - started:.1f} s")

    for ours, nothing, loop_name in (("ours", "nothing", "asyncio"),
                                     ("ours-uvloop", "nothing-uvloop", "uvloop")):
        if (ours, False) in rates and (nothing, False) in rates:
            share = rates[ours, False] / rates[nothing, False]
            print(f"ours/do-nothing sink on {loop_name} (one msg per connection): {share:.2f}")
    for reuse in (True, False):
        mode = "connections reused" if reuse else "one msg per connection"
        if ("ours-uvloop", reuse) in rates and ("smtp-sink", reuse) in rates:
            ratio = f"{rates['ours-uvloop', reuse] / rates['smtp-sink', reuse]:.2f}"
        else:
            ratio = "n/a (a figure is missing above)"
        print(f"ratio ours on uvloop/smtp-sink ({mode}): {ratio} (goal >= 1.0)")
    if ("postfix", False) in durable:
        for key, name in (("ours", "ours"), ("ours-writer", "ours with the writer process")):
            if (key, False) in durable:
                ratio = f"{durable[key, False] / durable['postfix', False]:.2f}"
            else:
                ratio = "n/a (a figure is missing above)"
            print(
                f"ratio {name}/Postfix durable acceptance (one msg per connection): {ratio}"
                " (goal >= 2.0)"
            )
    if ("aiosmtpd", False) in rates:
        ratio = rates["ours", False] / rates["aiosmtpd", False]
        print(
            f"ratio ours/aiosmtpd (default event loop, one msg per connection): {ratio:.2f}"
            " (goal >= 2.5)"
        )
    return 0


def postfix_durable(
    root: Path, load: Load, messages: int, runs: int
) -> dict[tuple[str, bool], float]:
    """Postfix's acceptance rate (its queue file is fsynced before 250) and its end-to-end
    rate into Maildir, one message per connection and with connections reused."""
    found: dict[tuple[str, bool], float] = {}
    with private_postfix(root) as (port, new):
        for reuse in (False, True):
            load.run(port, min(200, messages), reuse)  # warm-up
            accepted = delivered = 0.0
            for _ in range(runs):
                wait_quiet(new)
                target = count_files(new) + messages
                start = time.perf_counter()
                seconds = load.run(port, messages, reuse)
                if wait_delivered(new, target, 120.0) < target:
                    raise RuntimeError("Postfix did not deliver every message within 120 s")
                accepted = max(accepted, messages / seconds)
                delivered = max(delivered, messages / (time.perf_counter() - start))
            found["postfix", reuse] = accepted
            figure("Postfix durable (queue fsync, then 250)", reuse, accepted)
            figure("Postfix into Maildir (end to end)", reuse, delivered)
    return found


def wait_delivered(new: Path, target: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while (count := count_files(new)) < target and time.monotonic() < deadline:
        time.sleep(0.02)
    return count


def wait_quiet(new: Path, seconds: float = 30.0) -> None:
    """Until Postfix has delivered everything it was given (the count stops moving)."""
    deadline = time.monotonic() + seconds
    last = -1
    while time.monotonic() < deadline:
        count = count_files(new)
        if count == last:
            return
        last = count
        time.sleep(0.3)


if __name__ == "__main__":
    sys.exit(main())
