"""How fast does Postfix deliver into our LMTP server, against Dovecot's LMTP?

Two LMTP servers, each behind a private Postfix of its own (root only; it listens on
127.0.0.1 alone, relays nothing, and hands mail for ``example.test`` to the server with
its ``lmtp(8)`` client, ``virtual_transport = lmtp:inet:127.0.0.1:PORT``, default
concurrency and connection caching):

- ours: ``python -m mailagents lmtp`` (a process of its own, a users file, Maildir per
  user, every copy fsynced before its 250);
- Dovecot 2.3's LMTP (``dovecot-lmtpd``), a private instance: passwd-file users as
  ``nobody``, ``mail_location = maildir:~/Maildir``, otherwise its defaults (it fsyncs).

The load is Postfix's ``smtp-source``: 4 processes of 5 sessions each (20 concurrent
sessions, connections reused), one per recipient ``u0`` to ``u3@example.test``, 5,000
10 KB messages per run in all (1,000 with ``--quick``); then the same with 2 recipients
per message (``-r 2``: ``uN`` and ``2uN``, so each message is delivered twice). Figures,
in messages per second: (a) Postfix's acceptance rate (smtp-source's time), and (b) the
end-to-end delivered rate: from the load's start until every copy is a file in the
target's Maildirs (``new/`` and ``cur/`` counted; bounded wait). (b) is the figure that
compares the LMTP servers; beside it, the CPU time the server's processes (all of
Dovecot's) spent per message. Both servers (and their Postfix instances) run at once
and their runs alternate, so that other work on the machine weighs on both alike; each
figure is the best of two runs (one with ``--quick``) after a warm-up of 200 messages.

The last line is the ratio ours/Dovecot of the delivered rate with one recipient per
message (goal 1.0 or better); the line before it, the same with two.

Run: ``python benchmarks/lmtp.py`` (as root; ``--quick`` for 1,000 messages). Set
``MAILAGENTS_BENCH_PROFILE=DIR`` to run our server under cProfile and write
``DIR/lmtp.prof`` when it stops (``python -m pstats DIR/lmtp.prof``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
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

from _harness import HOST, ServerFailed, free_port, stop_process, wait_port  # noqa: E402

SIZE = 10_240
SENDER = "bench@sender.test"
DOMAIN = "example.test"
LOADS = 4  # smtp-source processes, one per recipient
SESSIONS = 5  # sessions each
LOCALS = [f"u{i}" for i in range(LOADS)] + [f"2u{i}" for i in range(LOADS)]
WAIT = 180.0  # seconds for every copy of a run to arrive
PROFILE_ENV = "MAILAGENTS_BENCH_PROFILE"
NAMES = {"ours": "ours (mailagents lmtp)", "dovecot": "Dovecot LMTP"}
FAILURES = (ServerFailed, RuntimeError, OSError, subprocess.SubprocessError)
SBIN = "/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postfix/sbin"


def program(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=SBIN)


def missing() -> str | None:
    """Why the benchmark cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (private Postfix and Dovecot instances drop privileges)"
    for name, package in (("postfix", "postfix"), ("smtp-source", "postfix"),
                          ("dovecot", "dovecot-core")):
        if program(name) is None:
            return f"{name} not installed (apt-get install {package})"
    if not os.path.exists("/usr/lib/dovecot/lmtp"):
        return "Dovecot's LMTP not installed (apt-get install dovecot-lmtpd)"
    for user in ("postfix", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"no user {user}"
    return None


def tree_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system) of a process, its reaped children and, recursively,
    its living children (Dovecot's lmtp processes), or None where /proc cannot tell."""
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


def count_copies(maildirs: list[Path]) -> int:
    total = 0
    for maildir in maildirs:
        for sub in ("new", "cur"):
            with contextlib.suppress(FileNotFoundError):
                total += len(os.listdir(maildir / sub))
    return total


def started(process: subprocess.Popen[Any], port: int, log: Path, what: str) -> None:
    """Until ``process`` listens on ``port``; ServerFailed with its log if it ends or
    does not listen within 20 s."""
    deadline = time.monotonic() + 20
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(RuntimeError):
            wait_port(port, 0.2)
            return
    text = log.read_text(errors="replace")[-800:] if log.exists() else ""
    raise ServerFailed(f"{what} did not start: {text.strip() or '(no output)'}")


@dataclass
class Target:
    port: int
    maildirs: list[Path]
    process: subprocess.Popen[Any]  # ours, or Dovecot's master
    log: Path


# --- the LMTP servers -------------------------------------------------------------------


@contextlib.contextmanager
def ours(root: Path) -> Iterator[Target]:
    """``python -m mailagents lmtp`` delivering into ROOT/mail/<address>/."""
    root.mkdir(parents=True)
    users = root / "users"
    users.write_text("".join(f"{u}@{DOMAIN}\n" for u in LOCALS))
    port = free_port()
    command = [sys.executable, "-m", "mailagents", "lmtp", "--host", HOST, "--port",
               str(port), "--users", str(users), "--mail", f"{root}/mail/{{user}}"]
    profile_dir = os.environ.get(PROFILE_ENV)
    if profile_dir:
        os.makedirs(profile_dir, exist_ok=True)
        profile = os.path.join(os.path.abspath(profile_dir), "lmtp.prof")
        command[1:1] = ["-m", "cProfile", "-o", profile]
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    log = root / "lmtp.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   cwd=HERE.parent)
    try:
        started(process, port, log, "mailagents lmtp")
        yield Target(port, [root / "mail" / f"{u}@{DOMAIN}" for u in LOCALS], process, log)
    finally:
        stop_process(process, grace=30)


@contextlib.contextmanager
def dovecot(root: Path) -> Iterator[Target]:
    """A private Dovecot with only LMTP, users in a passwd-file, homes ROOT/home/<u>."""
    for sub in ("run", "state", "home"):
        (root / sub).mkdir(parents=True)
    nobody = pwd.getpwnam("nobody")
    home = root / "home"
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    (root / "passwd").write_text("".join(
        f"{u}:{{PLAIN}}x:{nobody.pw_uid}:{nobody.pw_gid}::{home}/{u}::\n" for u in LOCALS))
    for u in LOCALS:
        (home / u).mkdir()
        os.chown(home / u, nobody.pw_uid, nobody.pw_gid)
    port = free_port()
    conf = root / "dovecot.conf"
    conf.write_text(f"""
instance_name = bench-lmtp-{root.parent.name}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = lmtp
listen = {HOST}
ssl = no
first_valid_uid = 1
mail_location = maildir:~/Maildir
postmaster_address = postmaster@{DOMAIN}
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {root}/passwd
}}
service lmtp {{
  inet_listener lmtp {{
    address = {HOST}
    port = {port}
  }}
}}
""")
    binary = program("dovecot")
    assert binary is not None
    log = root / "stdout.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([binary, "-F", "-c", str(conf)], stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        started(process, port, root / "dovecot.log", "Dovecot")
        yield Target(port, [home / u / "Maildir" for u in LOCALS], process,
                     root / "dovecot.log")
    finally:
        stop_process(process, grace=30)


# --- a private Postfix relaying into one of them ----------------------------------------

SERVICES = """\
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
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
lmtp       unix  - - n -     - lmtp
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
"""


@contextlib.contextmanager
def postfix(root: Path, lmtp_port: int) -> Iterator[int]:
    """Postfix on 127.0.0.1:PORT (yielded) handing example.test to the LMTP server."""
    binary = program("postfix")
    assert binary is not None
    etc, queue, data = root / "etc", root / "queue", root / "data"
    for directory in (etc, queue, data):
        directory.mkdir(parents=True)
    os.chown(data, pwd.getpwnam("postfix").pw_uid, -1)
    (etc / "vmailbox").write_text("".join(f"{u}@{DOMAIN} {u}/\n" for u in LOCALS))
    (etc / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
syslog_name = bench-postfix
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
myhostname = mx.{DOMAIN}
mydomain = {DOMAIN}
myorigin = $myhostname
inet_interfaces = {HOST}
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
default_transport = error:outbound mail disabled
relay_transport = error:outbound mail disabled
smtp_dns_support_level = disabled
alias_maps =
alias_database =
virtual_mailbox_domains = {DOMAIN}
virtual_transport = lmtp:inet:{HOST}:{lmtp_port}
virtual_mailbox_maps = texthash:{etc}/vmailbox
""")
    port = free_port()
    (etc / "master.cf").write_text(f"{HOST}:{port} inet n - n - - smtpd\n" + SERVICES)
    done = subprocess.run([binary, "-c", str(etc), "start"], capture_output=True,
                          text=True, timeout=60)
    try:
        if done.returncode != 0:
            raise ServerFailed(f"postfix start failed: {done.stderr.strip()} "
                               f"{maillog(root)}")
        wait_port(port, 20)
        yield port
    finally:
        try:
            master = int((queue / "pid" / "master.pid").read_text())
        except (OSError, ValueError):
            master = 0
        subprocess.run([binary, "-c", str(etc), "stop"], capture_output=True, timeout=60)
        deadline = time.monotonic() + 15  # the pid file stays: wait for the process
        while master and os.path.exists(f"/proc/{master}") and time.monotonic() < deadline:
            time.sleep(0.05)


def maillog(root: Path) -> str:
    path = root / "maillog"
    return path.read_text(errors="replace")[-1000:] if path.exists() else ""


# --- the load and the figures -----------------------------------------------------------


@dataclass
class Figures:
    accepted: float  # msg/s, Postfix's 250s
    delivered: float  # msg/s, every copy in the Maildirs
    cpu: float | None  # the server's CPU seconds per message


def run(target: Target, port: int, messages: int, rcpts: int, root: Path) -> Figures:
    """Send ``messages`` messages (``rcpts`` recipients each) to Postfix on ``port``; the
    rates until Postfix accepted them all and until every copy was delivered."""
    each = messages // LOADS
    goal = count_copies(target.maildirs) + each * LOADS * rcpts
    source = program("smtp-source")
    assert source is not None
    cpu_before = tree_cpu(target.process.pid)
    start = time.perf_counter()
    loads = [
        subprocess.Popen(
            [source, "-s", str(SESSIONS), "-m", str(each), "-l", str(SIZE), "-d",
             "-r", str(rcpts), "-f", SENDER, "-t", f"u{i}@{DOMAIN}", f"{HOST}:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for i in range(LOADS)
    ]
    try:
        errors = [load.communicate(timeout=600)[1] for load in loads]
    finally:
        for load in loads:
            stop_process(load, grace=1)
    accepted = time.perf_counter() - start
    for load, error in zip(loads, errors, strict=True):
        if load.returncode != 0 or b"fatal" in error:
            lines = error.decode(errors="replace").strip().splitlines() or ["?"]
            raise ServerFailed(f"smtp-source: {lines[-1]}")
    deadline = start + WAIT
    while (count := count_copies(target.maildirs)) < goal and time.perf_counter() < deadline:
        if target.process.poll() is not None:
            text = target.log.read_text(errors="replace")[-600:] if target.log.exists() else ""
            raise ServerFailed(f"the server exited ({target.process.returncode}): {text}")
        time.sleep(0.05)
    delivered = time.perf_counter() - start
    if count < goal:
        raise ServerFailed(f"{goal - count} copies not delivered within {WAIT:.0f} s; "
                           f"Postfix's log ends: {maillog(root)[-600:]}")
    cpu_after = tree_cpu(target.process.pid)
    cpu = None
    if cpu_before is not None and cpu_after is not None:
        cpu = (cpu_after - cpu_before) / (each * LOADS)
    return Figures(each * LOADS / accepted, each * LOADS / delivered, cpu)


def show(name: str, rcpts: int, got: Figures) -> None:
    cpu = f"  {got.cpu * 1e6:6,.0f} us CPU/msg" if got.cpu is not None else ""
    mode = "1 recipient/msg " if rcpts == 1 else f"{rcpts} recipients/msg"
    print(f"{name + ':':24} {mode}  Postfix accepted {got.accepted:7,.0f} msg/s  "
          f"delivered {got.delivered:7,.0f} msg/s{cpu}", flush=True)


def version(command: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
        return done.stdout.strip().split(" ")[0]
    return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 messages, one run")
    parser.add_argument("--messages", type=int, help="messages per run (default 5,000)")
    args = parser.parse_args(argv)
    why = missing()
    if why is not None:
        print(f"lmtp benchmark skipped: {why}")
        return 0
    messages = max(LOADS, args.messages or (1_000 if args.quick else 5_000))
    messages -= messages % LOADS
    runs = 1 if args.quick else 2
    postconf = program("postconf") or "postconf"
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; Postfix "
          f"{version([postconf, '-h', '-d', 'mail_version'])}, Dovecot "
          f"{version([program('dovecot') or 'dovecot', '--version'])}")
    print(f"{messages:,} messages of {SIZE:,} octets per run from smtp-source ({LOADS} x "
          f"{SESSIONS} sessions, connections reused), best of {runs} after a warm-up; "
          "CPU/msg: the LMTP server's processes, user + system")
    began = time.perf_counter()
    results: dict[str, dict[int, Figures]] = {key: {} for key in NAMES}
    root = Path(tempfile.mkdtemp(prefix="bench-lmtp-"))
    os.chmod(root, 0o755)
    with contextlib.ExitStack() as stack:  # exits in reverse: Postfix, server, temp dir
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        live: dict[str, tuple[Target, int]] = {}
        for key, server in (("ours", ours), ("dovecot", dovecot)):
            try:
                target = stack.enter_context(server(root / key / "server"))
                port = stack.enter_context(postfix(root / key / "postfix", target.port))
                run(target, port, min(200, messages), 2, root / key / "postfix")  # warm-up
                live[key] = target, port
            except FAILURES as exc:
                print(f"{NAMES[key] + ':':24} FAILED: {exc}", flush=True)
        # Both are up at once and the runs alternate, so that whatever else the machine
        # does at the time weighs on both alike.
        for rcpts in (1, 2):
            for _ in range(runs):
                for key, (target, port) in list(live.items()):
                    try:
                        got = run(target, port, messages, rcpts, root / key / "postfix")
                    except FAILURES as exc:
                        print(f"{NAMES[key] + ':':24} FAILED: {exc}", flush=True)
                        del live[key]
                        continue
                    if rcpts not in results[key] or got.delivered > results[key][rcpts].delivered:
                        results[key][rcpts] = got
    for key, figures in results.items():
        for rcpts, got in figures.items():
            show(NAMES[key], rcpts, got)
    print(f"elapsed {time.perf_counter() - began:.1f} s")
    for rcpts in (2, 1):
        if rcpts in results["ours"] and rcpts in results["dovecot"]:
            ratio = f"{results['ours'][rcpts].delivered / results['dovecot'][rcpts].delivered:.2f}"
        else:
            ratio = "n/a (a figure is missing above)"
        what = "1 recipient" if rcpts == 1 else f"{rcpts} recipients"
        goal = " (goal >= 1.0)" if rcpts == 1 else ""
        print(f"ratio ours/Dovecot, delivered rate, {what} per message: {ratio}{goal}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
