"""Crash test of the MTA (mailagents/agents/mta.py with a fsynced Queue): the MTA runs
in a child process, smtplib feeds it messages, it relays them by MX lookup to two
collecting SMTP peers of ours (127.0.0.2 for b.test, 127.0.0.3 for c.test, one port),
and it is killed with SIGKILL at random moments while it accepts and delivers, then
started again on the same queue directory, until everything has drained.

What must hold (RFC 5321 §6.1: a 250 after the data is a promise not to lose the
message, whatever crash follows): every recipient of every message answered 250
reaches its peer at least once; at most twice, a second copy only where RFC 5321
§6.1 and RFC 1047 allow one (the child died after a peer's 250 and before the
queue recorded it), and such duplicates are few; in the end the queue is empty and
nothing was quarantined in ``corrupt/``. No real peer is needed: the next hops are
ours, and the MX table is a StaticLookup in the child.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mailagents.agents.mta import MTA
from mailagents.aio import Session, SMTPHandler, SMTPServer
from mailagents.delivery import Message
from mailagents.dns import MXResolver, ResolverConfig, StaticLookup
from mailagents.queue import Queue
from mailagents.smtp import (
    Accept,
    Envelope,
    Mailbox,
    MailParameters,
    RcptParameters,
    Recipient,
    Reject,
    Reply,
    ServerConfig,
)
from mailagents.smtp import Path as SMTPPath

from ..interop.peers import LoopThread, shared_port

ROOT = Path(__file__).resolve().parent.parent.parent
MESSAGES = 200  # accepted in all (at most)
KILLS = 4
MAX_PER_DESTINATION = 2
RECIPIENTS = [["bob@b.test"], ["bob@b.test", "carol@c.test"], ["dave@c.test", "erin@c.test"]]

CHILD = textwrap.dedent("""\
    import asyncio, logging, sys
    from mailagents.agents.mta import MTA
    from mailagents.dns import MXResolver, ResolverConfig, StaticLookup
    from mailagents.queue import Queue, RetrySchedule

    ZONE = {
        "b.test": {"MX": ["10 mx.b.test."]}, "mx.b.test": {"A": ["127.0.0.2"]},
        "c.test": {"MX": ["10 mx.c.test."]}, "mx.c.test": {"A": ["127.0.0.3"]},
    }

    async def main(directory, port, per_destination):
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        queue = Queue(directory, fsync=True, schedule=RetrySchedule(
            first=0.2, factor=1.0, maximum=0.2, delay_notice=None, give_up=3600.0))
        resolver = MXResolver(ResolverConfig(families=(4,)), lookup=StaticLookup(ZONE))
        mta = MTA("mx.a.test", local_domains={"a.test"}, queue=queue,
                  relay_networks=["127.0.0.1/32"], resolver=resolver, outbound_port=port,
                  outbound_options={"idle_timeout": 0.5, "poll_interval": 0.2,
                                    "max_per_destination": per_destination})
        await mta.serve("127.0.0.1", 0)
        print(f"listening on {mta.port} recovered {queue.recovered}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
""")

_MESSAGE_ID = re.compile(rb"(?im)^Message-ID:[ \t]*(<[^>\r\n]+>)")


@dataclass
class Collector(SMTPHandler):
    """A next hop that counts each (Message-ID, recipient) it accepts. It takes a
    few milliseconds over each message (so that deliveries are under way when the
    child dies) and defers every seventh with 451 (so that retries are recorded in
    the queue, and recovered)."""

    copies: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    transactions: int = 0
    deferred: int = 0

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject:
        found = _MESSAGE_ID.search(message)
        assert found is not None
        await asyncio.sleep(0.005)
        self.transactions += 1
        if self.transactions % 7 == 0:
            self.deferred += 1
            return Reject(reply=Reply(code=451, enhanced="4.3.0", lines=("Not now",)))
        with self.lock:
            for r in envelope.recipients:
                self.copies[(found.group(1).decode(), str(r.path.mailbox))] += 1
        return Accept()

    def snapshot(self) -> collections.Counter[tuple[str, str]]:
        with self.lock:
            return collections.Counter(self.copies)


class Child:
    """The MTA in a child process, on the queue in ``directory``."""

    def __init__(self, script: Path, directory: Path, port: int, log: Path) -> None:
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, str(script), str(directory), str(port),
             str(MAX_PER_DESTINATION)],
            stdout=subprocess.PIPE, stderr=self.log,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        assert line.startswith("listening on"), (line, log.read_text())
        self.port = int(line.split()[2])
        self.recovered = int(line.split()[4])

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.log.close()


@dataclass
class Feeder:
    """Submits messages over one connection after another until stopped or the
    budget is spent; each one answered 250 is ``accepted``."""

    budget: list[int]  # [messages still to submit], shared by the feeders
    accepted: list[tuple[str, tuple[str, ...]]]
    sent: set[str]
    lock: threading.Lock
    tag: str
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, port: int) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                    while not self.stop.is_set():
                        with self.lock:
                            if self.budget[0] <= 0:
                                return
                            self.budget[0] -= 1
                        n += 1
                        mid = f"<crash-{self.tag}-{n}-{time.monotonic_ns()}@a.test>"
                        rcpts = RECIPIENTS[n % len(RECIPIENTS)]
                        with self.lock:
                            self.sent.add(mid)
                        body = "line of text\r\n" * (n % 5 * 300)
                        message = (f"From: alice@a.test\r\nTo: {', '.join(rcpts)}\r\n"
                                   f"Subject: crash {mid}\r\nMessage-ID: {mid}\r\n\r\n"
                                   f"{body}end\r\n")
                        try:
                            client.sendmail("alice@a.test", rcpts, message.encode())
                        except BaseException:
                            with self.lock:
                                self.budget[0] += 1  # not accepted: may be tried again
                            raise
                        with self.lock:
                            self.accepted.append((mid, tuple(rcpts)))
            except (OSError, smtplib.SMTPException):
                time.sleep(0.02)  # the child died (or is not up yet): try again


def pending_on_disk(directory: Path) -> set[tuple[str, str]]:
    """The (Message-ID, recipient) pairs the queue on disk still has to deliver, read
    as the restarted MTA will read them (the same recovery)."""
    queue = Queue(directory, fsync=False)
    pending = set()
    for message in queue.messages():
        content = queue.open(message.id)
        try:
            found = _MESSAGE_ID.search(content.read())
        finally:
            content.close()
        assert found is not None
        pending |= {(found.group(1).decode(), r.address) for r in message.pending}
    return pending


def queue_files(directory: Path) -> tuple[list[str], list[str]]:
    active = directory / "queue"
    corrupt = directory / "corrupt"
    return (sorted(os.listdir(active)) if active.is_dir() else [],
            sorted(os.listdir(corrupt)) if corrupt.is_dir() else [])


def test_kill_9_while_accepting_and_delivering_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(5321)
    script = tmp_path / "mta_child.py"
    script.write_text(CHILD)
    directory = tmp_path / "queue"
    log = tmp_path / "child.log"
    port = shared_port(("127.0.0.2", "127.0.0.3"))
    collector = Collector()
    budget = [MESSAGES]
    accepted: list[tuple[str, tuple[str, ...]]] = []
    sent: set[str] = set()
    lock = threading.Lock()
    recovered: list[int] = []
    rounds: list[int] = []  # messages accepted by each kill
    left: list[set[tuple[str, str]]] = []  # what the queue still owed after each kill
    started = time.monotonic()

    with LoopThread() as loop:
        servers: list[SMTPServer] = []

        async def start() -> None:
            for host in ("127.0.0.2", "127.0.0.3"):
                server = SMTPServer(collector, ServerConfig(hostname=f"peer-{host}"))
                await server.start(host, port)
                servers.append(server)

        async def stop() -> None:
            for server in servers:
                await server.close()

        loop.run(start())
        try:
            for round in range(KILLS + 1):
                child = Child(script, directory, port, log)
                recovered.append(child.recovered)
                feeders = [Feeder(budget, accepted, sent, lock, f"{round}.{i}")
                           for i in range(2)]
                threads = [threading.Thread(target=f.run, args=(child.port,))
                           for f in feeders]
                for thread in threads:
                    thread.start()
                try:
                    if round < KILLS:
                        # At a random moment while it accepts and delivers: once a
                        # random number of this round's messages were accepted, and a
                        # random fraction of a message's time later.
                        goal = len(accepted) + rng.randrange(5, MESSAGES // (KILLS + 1))
                        deadline = time.monotonic() + 20
                        while len(accepted) < goal and time.monotonic() < deadline:
                            time.sleep(0.001)
                        time.sleep(rng.uniform(0, 0.02))
                        rounds.append(len(accepted))
                        child.kill()
                        left.append(pending_on_disk(directory))
                    else:
                        for thread in threads:
                            thread.join(60)
                        owed = {(mid, r) for mid, rs in accepted for r in rs}

                        def drained(owed: set[tuple[str, str]] = owed) -> bool:
                            got = collector.snapshot()
                            return (all(got[k] for k in owed)
                                    and not queue_files(directory)[0])

                        deadline = time.monotonic() + 40
                        while not drained():
                            assert time.monotonic() < deadline, (
                                f"not drained: {queue_files(directory)}\n"
                                f"{log.read_text(errors='replace')[-3000:]}")
                            time.sleep(0.05)
                finally:
                    for feeder in feeders:
                        feeder.stop.set()
                    child.kill()
                    for thread in threads:
                        thread.join(30)
                    assert not any(t.is_alive() for t in threads)
        finally:
            loop.run(stop())

    copies = collector.snapshot()
    wanted = collections.Counter((mid, r) for mid, rs in accepted for r in rs)
    lost = [k for k in wanted if copies[k] == 0]
    assert not lost, f"accepted but never delivered: {lost[:10]} ({len(lost)})"
    assert all(n <= 2 for n in copies.values()), [k for k, n in copies.items() if n > 2]
    assert {mid for mid, _ in copies} <= sent  # nothing the peer got was never sent
    duplicates = sum(n - 1 for n in copies.values() if n > 1)
    active, corrupt = queue_files(directory)
    assert active == [] and corrupt == []
    # A second copy only where RFC 5321 §6.1 allows one: the peer had taken it when
    # the child died, but the queue on disk had not recorded it (it still owed that
    # recipient after the kill). Never a copy the queue had recorded as delivered.
    unexplained = [k for k, n in copies.items()
                   if n > 1 and not any(k in owed for owed in left)]
    assert not unexplained, unexplained
    # And few of them: a kill between a hop's 250 and its recording (each destination
    # recorded as soon as its hop answered) costs at most one copy per connection
    # under way, for the recipients of its transaction: 2 destinations, 4
    # connections each, 2 recipients at most, per kill.
    assert duplicates <= KILLS * 2 * 4 * 2, duplicates
    # The kills came while there was work: messages accepted before the last kill,
    # and some found in the queue on restart.
    assert len(accepted) >= MESSAGES // 2, len(accepted)
    assert len(sent) > len(accepted)  # some submissions were cut short by a kill
    assert sum(recovered) > 0, recovered
    assert collector.deferred > 0
    elapsed = time.monotonic() - started
    print(f"accepted {len(accepted)} messages ({sum(wanted.values())} copies), "
          f"accepted by each kill {rounds}, cut short {len(sent) - len(accepted)}, "
          f"duplicates {duplicates}, "
          f"recovered per restart {recovered}, deferred {collector.deferred}, "
          f"{elapsed:.1f} s")



# --- the window in which a crash duplicates ------------------------------------------------


@dataclass
class Held(SMTPHandler):
    """A next hop that keeps each message until ``release`` is set."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    holding: int = 0

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject:
        self.holding += 1
        await self.release.wait()
        return Accept()


def test_a_recipient_taken_by_its_hop_is_recorded_before_the_other_destination_ends(
    tmp_path: Path,
) -> None:
    """bob@b.test's hop says 250 at once; carol@c.test's hop holds the message. What a
    crash would leave on disk now (a copy of the queue directory, opened as a
    restarted MTA would) must already say that bob is done: RFC 5321 §6.1 allows a
    duplicate only for a crash between the hop's 250 and its recording, and nothing
    obliges that span to include another destination's delivery (minutes, with RFC
    5321 §4.5.3.2 time-outs)."""
    zone = {"b.test": {"MX": ["10 mx.b.test."]}, "mx.b.test": {"A": ["127.0.0.2"]},
            "c.test": {"MX": ["10 mx.c.test."]}, "mx.c.test": {"A": ["127.0.0.3"]}}

    async def main() -> None:
        port = shared_port(("127.0.0.2", "127.0.0.3"))
        fast, slow = Collector(), Held()
        servers = [SMTPServer(fast, ServerConfig(hostname="mx.b.test")),
                   SMTPServer(slow, ServerConfig(hostname="mx.c.test"))]
        await servers[0].start("127.0.0.2", port)
        await servers[1].start("127.0.0.3", port)
        mta = MTA("mx.a.test", local_domains={"a.test"}, queue=Queue(tmp_path / "q"),
                  resolver=MXResolver(ResolverConfig(families=(4,)),
                                      lookup=StaticLookup(zone)),
                  outbound_port=port)
        try:
            envelope = Envelope(
                mail_from=SMTPPath(Mailbox("alice", "a.test")),
                mail_parameters=MailParameters(),
                recipients=tuple(Recipient(path=SMTPPath(Mailbox(u, d)),
                                           parameters=RcptParameters())
                                 for u, d in (("bob", "b.test"), ("carol", "c.test"))),
                size=len(MESSAGE),
            )
            queued = await asyncio.to_thread(mta.queue.enqueue, envelope,
                                             Message.from_bytes(MESSAGE), now=1000.0)
            attempt = asyncio.create_task(mta.outbound.run_once(now=1000.0))
            deadline = asyncio.get_running_loop().time() + 20
            while not (fast.snapshot() and slow.holding):
                assert asyncio.get_running_loop().time() < deadline, "never got there"
                await asyncio.sleep(0.01)
            # Until bob's outcome is recorded (the queue writes its file, then its
            # memory), however long a busy machine takes; before the fix this never
            # came while carol's hop held the message.
            while True:
                state = mta.queue.current(queued.id)
                assert state is not None
                if state.recipients[0].final:
                    break
                assert asyncio.get_running_loop().time() < deadline, "bob never recorded"
                await asyncio.sleep(0.01)
            crashed = tmp_path / "as-left-by-a-crash"
            await asyncio.to_thread(shutil.copytree, tmp_path / "q", crashed)
            slow.release.set()
            await attempt
            after = Queue(crashed, fsync=False).get(queued.id)
            states = {r.address: r.state for r in after.recipients}
            assert states == {"bob@b.test": "transferred", "carol@c.test": "queued"}, states
        finally:
            slow.release.set()
            await mta.outbound.close()
            for server in servers:
                await server.close()

    asyncio.run(asyncio.wait_for(main(), 30))


MESSAGE = b"From: alice@a.test\r\nSubject: two hops\r\nMessage-ID: <two@a.test>\r\n\r\nHi\r\n"
