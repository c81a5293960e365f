"""How fast does a POP3 server hand out a big mailbox, ours against Dovecot?

One Maildir of 10,000 messages of 10 KB (2,000 with ``--quick``) is written with
``mailagents.store.MaildirStore`` and copied, so that both servers serve the same files
with the same UIDs. Each server runs in a process of its own on a free port of
127.0.0.1, and gets the same load from a client in another process: log in with
USER/PASS, ``LIST``, ``UIDL``, ``RETR`` of every message, ``QUIT`` (nothing deleted, no
flag changed: Dovecot runs with ``pop3_no_flag_updates = yes``, our MAA with
``mark_seen=False``). The client checks that every message arrived with the size LIST
announced.

Two clients:

- ``poplib`` (the headline): the standard library client, one command at a time, as a
  Python program downloading mail does;
- ``pipelined``: a raw socket client sending every RETR at once (RFC 2449 PIPELINING)
  and counting the ``.`` terminators; its own cost is small, so it shows the server's
  ceiling.

The servers:

- Dovecot 2.3 (``dovecot-pop3d``), a private instance with default settings besides
  the above (root only: it drops privileges to ``nobody``);
- ours: ``mailagents.agents.MAA`` with a password-file user, POP3 in clear text on
  loopback.

Each figure is messages retrieved per second: the first session after start (cold:
Dovecot builds its index, our store its snapshot) and the best of two later sessions
(warm). The last line is the ratio ours/Dovecot with poplib, warm (goal 0.5).

Run: ``python benchmarks/pop3.py`` (``--quick`` for 2,000 messages). Set
``MAILAGENTS_BENCH_PROFILE=DIR`` to run our server under cProfile and write
``DIR/ours.prof`` when it stops.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import poplib
import pwd
import shutil
import signal
import socket
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

SIZE = 10 * 1024
USER = "bench"
PASSWORD = "bench-password"
PROFILE_ENV = "MAILAGENTS_BENCH_PROFILE"


def message(i: int) -> bytes:
    """A 10 KB message of mail-like lines, some starting with a period."""
    head = (
        f"From: sender@example.test\r\nTo: {USER}@example.test\r\nSubject: message {i}\r\n"
        f"Message-ID: <{i}@bench.example.test>\r\n\r\n"
    ).encode()
    lines = (
        b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
        b".a line that starts with a period\r\n"
        b"\r\n"
        b"Short line.\r\n"
        b"--\r\n"
    )
    body = (lines * (SIZE // len(lines) + 1))[: SIZE - len(head) - 2]
    return head + body + b"\r\n"


# --- the mailbox ----------------------------------------------------------------------


def fill(maildir: Path, count: int) -> tuple[int, int]:
    """Write ``count`` messages with our store; (UIDVALIDITY, octets with CRLF)."""
    with MaildirStore(maildir, fsync=False) as store, store.folder("INBOX") as inbox:
        total = 0
        for i in range(count):
            data = message(i)
            inbox.append_bytes(data)
            total += len(data)
        inbox.refresh()
        return inbox.status().uidvalidity, total


def open_tree(path: Path) -> None:
    """Let the mail user (``nobody``) reach ``path`` through its parents."""
    for parent in (path, *path.parents):
        if parent == Path("/"):
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o711)


def chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


# --- Dovecot ----------------------------------------------------------------------------


def dovecot_missing() -> str | None:
    """Why a private Dovecot cannot run here, or None."""
    if shutil.which("dovecot") is None and not os.path.exists("/usr/sbin/dovecot"):
        return "dovecot not installed (apt-get install dovecot-pop3d)"
    if not os.path.exists("/usr/lib/dovecot/pop3"):
        return "dovecot-pop3d not installed"
    if os.geteuid() != 0:
        return "needs root to start a private Dovecot (it drops privileges)"
    return None


@contextlib.contextmanager
def private_dovecot(maildir: Path) -> Iterator[int]:
    """Dovecot serving ``maildir`` as user ``bench`` over POP3 on a free port."""
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    base = Path(tempfile.mkdtemp(prefix="bench-dovecot-"))
    os.chmod(base, 0o755)
    nobody = pwd.getpwnam("nobody")
    open_tree(maildir.parent)
    chown_tree(maildir.parent, nobody.pw_uid, nobody.pw_gid)
    port = free_port()
    for sub in ("run", "state"):
        (base / sub).mkdir()
    (base / "passwd").write_text(
        f"{USER}:{{PLAIN}}{PASSWORD}:{nobody.pw_uid}:{nobody.pw_gid}::{maildir.parent}::\n"
    )
    conf = base / "dovecot.conf"
    conf.write_text(f"""
instance_name = bench-{base.name}
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = pop3
listen = {HOST}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{maildir}
pop3_no_flag_updates = yes
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
service pop3-login {{
  inet_listener pop3 {{
    address = {HOST}
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
""")
    with open(base / "stdout.log", "wb") as log:
        process = subprocess.Popen(
            [binary, "-F", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_port(port)
        yield port
    finally:
        stop_process(process)
        shutil.rmtree(base, ignore_errors=True)


# --- the load (runs in a process of its own: --load CLIENT PORT) --------------------------


def load_poplib(port: int) -> dict[str, Any]:
    """LIST, UIDL and RETR of everything with poplib, one command at a time."""
    start = time.perf_counter()
    client = poplib.POP3(HOST, port, timeout=60)
    client.user(USER)
    client.pass_(PASSWORD)
    _, listing, _ = client.list()
    sizes = {int(n): int(s) for n, s in (line.split() for line in listing)}
    _, uids, _ = client.uidl()
    assert len(uids) == len(sizes), (len(uids), len(sizes))
    octets = 0
    for number, size in sizes.items():
        _, lines, _ = client.retr(number)
        # poplib un-stuffs and strips the line ends: add the CRLFs back.
        got = sum(len(line) for line in lines) + 2 * len(lines)
        if got != size:
            raise AssertionError(f"message {number}: LIST said {size}, RETR gave {got}")
        octets += got
    client.quit()
    return {"messages": len(sizes), "octets": octets, "seconds": time.perf_counter() - start}


def load_pipelined(port: int) -> dict[str, Any]:
    """LIST, UIDL, then every RETR sent at once; counts the ``.`` terminators."""
    start = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=60) as sock:
        stream = sock.makefile("rb")

        def line() -> bytes:
            data = stream.readline(1024)
            if not data.startswith(b"+OK"):
                raise AssertionError(f"server said {data!r}")
            return data

        def multiline() -> list[bytes]:
            line()
            lines = []
            while (data := stream.readline(1024)) != b".\r\n":
                if not data:
                    raise AssertionError("connection closed")
                lines.append(data)
            return lines

        line()
        sock.sendall(f"USER {USER}\r\n".encode())
        line()
        sock.sendall(f"PASS {PASSWORD}\r\n".encode())
        line()
        sock.sendall(b"LIST\r\n")
        count = len(multiline())
        sock.sendall(b"UIDL\r\n")
        assert len(multiline()) == count
        sock.sendall(b"".join(b"RETR %d\r\n" % n for n in range(1, count + 1)))
        done = 0
        octets = 0
        tail = b""
        while done < count:
            data = stream.read1(1 << 16)
            if not data:
                raise AssertionError(f"connection closed after {done} messages")
            octets += len(data)
            window = tail + data
            done += window.count(b"\r\n.\r\n")
            tail = window[-4:]
        sock.sendall(b"QUIT\r\n")
        line()
    return {"messages": count, "octets": octets, "seconds": time.perf_counter() - start}


def run_load(client: str, port: int, timeout: float = 600.0) -> dict[str, Any]:
    """The load in a child process; its figures."""
    done = subprocess.run(
        [sys.executable, __file__, "--load", client, "--port", str(port)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    if done.returncode != 0:
        raise ServerFailed(f"{client} client failed: {done.stderr.strip()[-600:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- the measurements -------------------------------------------------------------------


def measure(label: str, port: int, count: int, rates: dict[tuple[str, str], float]) -> None:
    """Cold poplib session, then the best of two warm ones with each client."""
    cold = run_load("poplib", port)
    assert cold["messages"] == count, (cold, count)
    figure(label, "poplib, cold", cold["messages"] / cold["seconds"])
    for client in ("poplib", "pipelined"):
        runs = [run_load(client, port) for _ in range(2)]
        for run in runs:
            assert run["messages"] == count, (run, count)
        rate = max(run["messages"] / run["seconds"] for run in runs)
        rates[(label, client)] = rate
        figure(label, f"{client}, warm", rate)


def figure(label: str, what: str, rate: float) -> None:
    print(f"{label + ':':10} {what:18} {rate:10,.0f} msg/s  ({rate * SIZE / 1e6:6.1f} MB/s)",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 messages")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--load", choices=("poplib", "pipelined"), help=argparse.SUPPRESS)
    parser.add_argument("--serve", choices=("ours",), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--maildir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        loader = load_poplib if args.load == "poplib" else load_pipelined
        print(json.dumps(loader(args.port)))
        return
    if args.serve:
        serve_ours(Path(args.maildir), args.port)
        return
    count = 2_000 if args.quick else args.messages
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, {count:,} messages of "
          f"10 KB, LIST + UIDL + RETR of all, cold then best of 2 warm", flush=True)
    root = Path(tempfile.mkdtemp(prefix="bench-pop3-"))
    rates: dict[tuple[str, str], float] = {}
    try:
        start = time.perf_counter()
        uidvalidity, octets = fill(root / "dovecot" / "Maildir", count)
        shutil.copytree(root / "dovecot", root / "ours", symlinks=True)
        print(f"filled {count:,} messages ({octets / 1e6:.0f} MB, UIDVALIDITY {uidvalidity})"
              f" in {time.perf_counter() - start:.1f} s", flush=True)
        missing = dovecot_missing()
        if missing is None:
            try:
                with private_dovecot(root / "dovecot" / "Maildir") as port:
                    measure("Dovecot", port, count, rates)
            except (ServerFailed, AssertionError, RuntimeError) as exc:
                print(f"Dovecot:   FAILED: {exc}")
        else:
            print(f"Dovecot:   n/a ({missing})")
        try:
            with our_server(root / "ours" / "Maildir") as port:
                measure("ours", port, count, rates)
        except (ServerFailed, AssertionError, RuntimeError) as exc:
            print(f"ours:      FAILED: {exc}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for client in ("pipelined", "poplib"):
        ours, theirs = rates.get(("ours", client)), rates.get(("Dovecot", client))
        ratio = f"{ours / theirs:.2f}" if ours and theirs else "n/a"
        goal = " (goal 0.5)" if client == "poplib" else ""
        print(f"ratio ours/Dovecot, {client}, warm: {ratio}{goal}")


# --- our MAA (in a process of its own: --serve ours) -------------------------------------


def serve_ours(maildir: Path, port: int) -> None:
    """Our MAA serving ``maildir`` as user ``bench`` on ``port`` until SIGTERM."""
    import asyncio

    from mailagents.agents import MAA
    from mailagents.aio import make_self_signed
    from mailagents.userdb import PasswordFile

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        with tempfile.TemporaryDirectory(prefix="bench-users-") as tmp:
            users = PasswordFile(Path(tmp) / "users")
            users.set_password(USER, PASSWORD)
            maa = MAA(
                "pop.bench.test",
                users,
                str(maildir).replace("{", "{{").replace("}", "}}"),
                ssl_context=make_self_signed(("pop.bench.test",)).server_context(),
                allow_plaintext=True,
            )
            async with maa:
                await maa.serve(HOST, port, None, None, None)
                print("ready", flush=True)
                await stop.wait()
            users.close()

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
def our_server(maildir: Path) -> Iterator[int]:
    """Our MAA in a child process on a free port; yields the port, stops it after."""
    port = free_port()
    command = [sys.executable, __file__, "--serve", "ours", "--port", str(port),
               "--maildir", str(maildir)]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
        try:
            assert process.stdout is not None
            if process.stdout.readline().strip() != b"ready":
                errors.seek(0)
                raise ServerFailed(
                    "did not start: " + errors.read().decode(errors="replace")[-600:]
                )
            yield port
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            stop_process(process)


if __name__ == "__main__":
    main()
