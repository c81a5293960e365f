"""The MRA killed with SIGKILL, again and again, in delete mode (issue 17's proof): a
POP3 and an IMAP account on our own MAA, fetched into a local Maildir by a child
process that is killed at random moments and at the precise windows that matter (just
before a hand-off, just after the destination said it is durable, just after the state
file was saved, just after a removal was asked of the server), then restarted, until
the server is empty. Then: every message is in the local Maildir at least once, a
message is there more than once only if a pass was killed between its hand-off and the
state save (and at most once more per such kill), and the server is empty.

The children are forked from a multiprocessing fork server that has imported
mailagents already, so that a hundred and more starts fit in a minute; a second test
kills the real command line (``python -m mailagents fetch --config FILE``) a few times.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailagents.agents import MAA
from mailagents.aio import SelfSignedCertificate, make_self_signed
from mailagents.store import MaildirStore
from mailagents.userdb import PasswordFile

from . import _mra_kill_child

pytestmark = pytest.mark.slow

T = TypeVar("T")
KILLS = 110  # kills of forked passes (at least 100, the figure)
ROUND = 24  # messages put on each remote account when it is empty
TIME_BUDGET = 150.0  # seconds the forked-kill loop may take at most (it takes far less)
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)
USERS = {"pop3": "alice", "imap": "carol"}  # account name -> remote user
LOCAL = {"pop3": "pop@local.test", "imap": "imap@local.test"}  # account -> recipient


class LoopThread:
    """An event loop on a thread, serving while the test blocks on its children."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="mra-kill-loop")

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> LoopThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Remote:
    """Our MAA with two users (POP3 in clear text on loopback, IMAP over implicit TLS),
    and what was put on each account."""

    def __init__(self, root: Path, cert: SelfSignedCertificate) -> None:
        self.root = root
        self.users = PasswordFile(root / "users", scrypt_n=2**8)
        for user in USERS.values():
            self.users.set_password(user, "pw")
        self.maa = MAA("remote.test", self.users, str(root / "remote" / "{user}" / "Maildir"),
                       ssl_context=cert.server_context(), allow_plaintext=True, fsync=False)
        self.put: dict[str, list[str]] = {name: [] for name in USERS}
        self.rounds = 0

    def inbox_count(self, account: str) -> int:
        return len(self.folder_ids(account, "INBOX"))

    def folder_ids(self, account: str, folder: str) -> list[str]:
        """The Message-IDs in ``folder`` of ``account`` on the server."""
        path = self.root / "remote" / USERS[account] / "Maildir"
        with MaildirStore(path, fsync=False) as store, store.folder(folder) as box:
            box.refresh()
            found = [_MESSAGE_ID.search(box.read_message(m.uid)) for m in box.messages()]
            return [m.group(1).decode() if m else "?" for m in found]

    def create(self, account: str, folder: str) -> None:
        path = self.root / "remote" / USERS[account] / "Maildir"
        with MaildirStore(path, fsync=False) as store:
            store.create_folder(folder)

    def refill(self, account: str) -> None:
        """Put a new round of small messages on ``account``."""
        self.rounds += 1
        path = self.root / "remote" / USERS[account] / "Maildir"
        with MaildirStore(path, fsync=False) as store, store.folder("INBOX") as inbox:
            for n in range(ROUND):
                message_id = f"<{account}.{self.rounds}.{n}@remote.test>"
                inbox.append_bytes(
                    f"Message-ID: {message_id}\r\nFrom: a@remote.test\r\n"
                    f"Subject: {account} round {self.rounds} #{n}\r\n\r\n"
                    f"body of {message_id}\r\n".encode()
                )
                self.put[account].append(message_id)


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Remote]:
    cert = make_self_signed(["localhost"])
    (tmp_path / "ca.pem").write_bytes(cert.cert_pem)
    server = Remote(tmp_path, cert)
    with LoopThread() as thread:
        thread.run(server.maa.serve("127.0.0.1", 0, None, None, 0))
        try:
            yield server
        finally:
            thread.run(server.maa.close())
            server.users.close()


def accounts(remote: Remote, root: Path, max_messages: int | None,
             imap_after: str = "delete") -> list[dict[str, Any]]:
    common = {"host": "127.0.0.1", "password": "pw", "after": "delete", "timeout": 20.0,
              "max_messages": max_messages}
    move = {"after": "move", "move_to": "Archive"} if imap_after == "move" else {}
    return [
        {**common, "name": "pop3", "protocol": "pop3", "user": USERS["pop3"],
         "port": remote.maa.pop3_port, "tls": "none", "recipients": (LOCAL["pop3"],)},
        {**common, "name": "imap", "protocol": "imap", "user": USERS["imap"],
         "port": remote.maa.imaps_port, "tls": "implicit", "ca_file": str(root / "ca.pem"),
         "recipients": (LOCAL["imap"],), **move},
    ]


def local_ids(root: Path, account: str) -> collections.Counter[str]:
    """How many times each Message-ID is in the local Maildir of ``account``."""
    path = root / "local" / LOCAL[account] / "Maildir"
    found: collections.Counter[str] = collections.Counter()
    if not path.exists():
        return found
    with MaildirStore(path, fsync=False) as store, store.folder("INBOX") as inbox:
        inbox.refresh()
        for message in inbox.messages():
            match = _MESSAGE_ID.search(inbox.read_message(message.uid))
            assert match is not None
            found[match.group(1).decode()] += 1
    return found


class Ledger:
    """What the children said: per account, the messages at risk at each kill (handed
    off, or being handed off, since the account's last state save in that pass)."""

    def __init__(self) -> None:
        self.risk: collections.Counter[tuple[str, str]] = collections.Counter()
        self.kills: collections.Counter[str] = collections.Counter()  # by window
        self.durable_kills: list[tuple[str, str]] = []  # killed just after "H"
        self.landed: collections.Counter[str] = collections.Counter()
        self.passes = 0
        self.errors: list[str] = []

    def record(self, events: list[tuple[Any, ...]], killed: str | None) -> None:
        self.passes += 1
        pending: dict[str, list[str]] = {name: [] for name in USERS}
        for item in events:
            if item[0] == "B":
                pending[item[1]].append(item[2])
            elif item[0] == "S":
                pending[item[1]].clear()
            elif item[0] == "R":
                self.errors.extend(item[1])
        if killed is None:
            assert events and events[-1][0] == "R", events
            assert not any(pending.values()), (pending, events)  # a whole pass saves all
            return
        self.kills[killed] += 1
        if killed == "random":  # where it landed: after which event
            self.landed[events[-1][0] if events else "start"] += 1
        for account, ids in pending.items():
            for message_id in ids:
                self.risk[account, message_id] += 1
        if killed == "H":
            last = [e for e in events if e[0] == "H"][-1]
            self.durable_kills.append((last[1], last[2]))


def run_child(ctx: Any, spec: dict[str, Any], delay: float | None,
              timeout: float = 30.0) -> tuple[list[tuple[Any, ...]], bool, float]:
    """Start one pass; kill it when it pauses (``spec["pause"]``) or after ``delay``
    seconds. (events, whether it was killed, seconds it ran)."""
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_mra_kill_child.run_pass, args=(spec, child))
    started = time.monotonic()
    process.start()
    child.close()
    events: list[tuple[Any, ...]] = []
    killed = False
    deadline = started + timeout
    kill_at = started + delay if delay is not None else None
    try:
        while True:
            now = time.monotonic()
            if kill_at is not None and now >= kill_at:
                break
            if now > deadline:
                raise AssertionError(f"a pass did not end in {timeout} s: {events[-5:]}")
            wait = min(deadline, kill_at or deadline) - now
            if parent.poll(min(wait, 0.5)):
                try:
                    item = parent.recv()
                except EOFError:
                    break  # the child ended
                if item[0] == "P":
                    break
                events.append(item)
            elif not process.is_alive() and not parent.poll(0):
                break
        if process.is_alive():
            with contextlib.suppress(ProcessLookupError):  # it may have just ended
                os.kill(process.pid, signal.SIGKILL)
                killed = True
        process.join(10)
        assert process.exitcode is not None
        killed = killed and process.exitcode == -signal.SIGKILL
        # What it sent before it died is still in the pipe.
        while parent.poll(0):
            try:
                item = parent.recv()
            except EOFError:
                break
            if item[0] != "P":
                events.append(item)
        if not killed:
            assert process.exitcode == 0, (process.exitcode, events[-5:])
    finally:
        if process.is_alive():
            process.kill()
            process.join(5)
        parent.close()
    return events, killed, time.monotonic() - started


@contextlib.contextmanager
def fork_server() -> Iterator[Any]:
    """A fork server with mailagents imported, stopped afterwards."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["mailagents.agents", "tests.agents._mra_kill_child"])
    try:
        yield ctx
    finally:
        server = getattr(multiprocessing.forkserver, "_forkserver", None)
        stop = getattr(server, "_stop", None)
        if stop is not None:
            stop()


WINDOWS = ("B", "H", "S", "D")  # the events a child can be stopped just after


def check(root: Path, remote: Remote, ledger: Ledger) -> dict[str, int]:
    """Nothing lost, duplicates only where a kill allowed them, the server empty;
    returns the number of duplicates per account."""
    duplicates = {}
    for account in USERS:
        assert remote.inbox_count(account) == 0, account
        got = local_ids(root, account)
        expected = set(remote.put[account])
        assert set(got) == expected, (
            f"{account}: lost {sorted(expected - set(got))[:5]}, "
            f"unknown {sorted(set(got) - expected)[:5]}"
        )
        for message_id, count in got.items():
            allowed = ledger.risk[account, message_id]
            assert count - 1 <= allowed, (account, message_id, count, allowed)
        duplicates[account] = sum(c - 1 for c in got.values())
    for account, message_id in ledger.durable_kills:
        # Killed after the durable hand-off, before the save: it must come again.
        assert got_count(root, account, message_id) >= 2, (account, message_id)
    return duplicates


def got_count(root: Path, account: str, message_id: str) -> int:
    return local_ids(root, account)[message_id]


def drain(ctx: Any, remote: Remote, root: Path, ledger: Ledger, imap_after: str,
          passes: int = 20) -> None:
    """Passes without kills until both accounts are empty on the server."""
    for _ in range(passes):
        if all(remote.inbox_count(a) == 0 for a in USERS):
            return
        spec = {"accounts": accounts(remote, root, None, imap_after),
                "local": str(root / "local" / "{user}" / "Maildir"),
                "state_dir": str(root / "state"), "pause": None}
        events, killed, _ = run_child(ctx, spec, None)
        assert not killed
        ledger.record(events, None)
    raise AssertionError("the server was not emptied by 20 passes without kills")


def kill_loop(root: Path, remote: Remote, goal: int, imap_after: str,
              seed: str) -> tuple[int, Ledger, dict[str, int]]:
    """Kill forked passes ``goal`` times, then drain and check; (kills, ledger,
    duplicates per account)."""
    rng = random.Random(seed)
    ledger = Ledger()
    local = str(root / "local" / "{user}" / "Maildir")
    typical = 0.3  # seconds a pass takes (updated from the passes that ran to the end)
    kills = 0
    started = time.monotonic()
    with fork_server() as ctx:
        while kills < goal:
            assert time.monotonic() - started < TIME_BUDGET, (kills, ledger.kills)
            for account in USERS:
                if remote.inbox_count(account) == 0:
                    remote.refill(account)
            max_messages = rng.choice([None, 3, 5, 8, 30])
            spec = {"accounts": accounts(remote, root, max_messages, imap_after),
                    "local": local, "state_dir": str(root / "state"), "pause": None}
            delay: float | None = None
            if rng.random() < 0.5:
                window = rng.choice(WINDOWS)
                # A pass hands off up to 30 messages per account, saves and removes
                # once or twice.
                spec["pause"] = (window, rng.randint(1, 6 if window in "BH" else 3))
            else:
                delay = rng.uniform(0.0, typical * 1.2)
            events, killed, seconds = run_child(ctx, spec, delay)
            landed: str | None = None
            if killed:
                kills += 1
                landed = spec["pause"][0] if spec["pause"] else "random"
            else:
                typical = 0.7 * typical + 0.3 * seconds
            ledger.record(events, landed)
        drain(ctx, remote, root, ledger, imap_after)
    duplicates = check(root, remote, ledger)
    print(f"\n{imap_after}: {kills} kills {dict(ledger.kills)} (random ones after "
          f"{dict(ledger.landed)}), {ledger.passes} passes, {remote.rounds} rounds of "
          f"{ROUND}, duplicates {duplicates}, pass errors {len(ledger.errors)}")
    return kills, ledger, duplicates


def test_sigkill_at_random_moments_and_windows_loses_nothing(
    tmp_path: Path, remote: Remote
) -> None:
    kills, ledger, duplicates = kill_loop(tmp_path, remote, KILLS, "delete",
                                          os.environ.get("MRA_KILL_SEED", "17"))
    assert kills >= 100
    for window in (*WINDOWS, "random"):
        assert ledger.kills[window] > 0, ledger.kills
    # A kill just after a durable hand-off always gives a duplicate: they were seen.
    assert ledger.durable_kills and sum(duplicates.values()) > 0


def test_sigkill_imap_move_moves_each_message_once(tmp_path: Path, remote: Remote) -> None:
    """The same with the IMAP account in move mode (MOVE into Archive): besides the
    local checks, Archive holds every message exactly once."""
    remote.create("imap", "Archive")
    kills, ledger, _ = kill_loop(tmp_path, remote, 40, "move",
                                 os.environ.get("MRA_KILL_SEED", "17"))
    assert kills >= 40 and ledger.kills["D"] > 0, ledger.kills
    archived = collections.Counter(remote.folder_ids("imap", "Archive"))
    assert set(archived) == set(remote.put["imap"])
    assert set(archived.values()) == {1}, archived.most_common(3)


# --------------------------------------------------------- the real command line


def test_sigkill_of_python_m_mailagents_fetch(tmp_path: Path, remote: Remote) -> None:
    """``python -m mailagents fetch --config FILE`` killed at moments spread over its
    passes (its start, about a second, included), then run to the end: nothing lost,
    the server empty."""
    rng = random.Random(7)
    for account in USERS:
        remote.refill(account)
    config = tmp_path / "fetch.toml"
    parts = [f'state_dir = "{tmp_path / "cli-state"}"\n\n[destination]\n'
             f'maildir = "{tmp_path / "local" / "{user}" / "Maildir"}"\n']
    for account in accounts(remote, tmp_path, 4):
        parts.append(
            f'\n[[account]]\nname = "{account["name"]}"\nprotocol = "{account["protocol"]}"\n'
            f'host = "127.0.0.1"\nport = {account["port"]}\ntls = "{account["tls"]}"\n'
            f'user = "{account["user"]}"\npassword = "pw"\n'
            f'recipients = ["{account["recipients"][0]}"]\nafter = "delete"\n'
            f"max_messages = 4\ntimeout = 20\n"
            + (f'ca_file = "{account["ca_file"]}"\n' if "ca_file" in account else "")
        )
    config.write_text("".join(parts))
    package = Path(__file__).resolve().parent.parent.parent
    env = {**os.environ, "PYTHONPATH": str(package)}
    command = [sys.executable, "-m", "mailagents", "fetch", "--config", str(config)]

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)

    # How long a whole run takes here (start-up included), to spread the kills over.
    kills = 0
    durations = []
    for _ in range(3):
        begin = time.monotonic()
        process = start()
        out, _ = process.communicate(timeout=60)
        durations.append(time.monotonic() - begin)
        assert process.returncode == 0, out
    whole = max(durations)
    for account in USERS:
        remote.refill(account)
    for _ in range(24):  # until 6 kills (most starts are killed)
        if kills >= 6:
            break
        process = start()
        try:
            try:
                process.wait(rng.uniform(0.3, 0.9) * whole)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(5)
    for _ in range(30):
        if all(remote.inbox_count(a) == 0 for a in USERS):
            break
        process = start()
        out, _ = process.communicate(timeout=60)
        assert process.returncode in (0, 1), out
    for account in USERS:
        assert remote.inbox_count(account) == 0, account
        got = local_ids(tmp_path, account)
        assert set(got) == set(remote.put[account]), account
    assert kills >= 6, kills
