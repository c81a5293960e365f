"""mailagents.queue.Queue: durable acceptance, recovery, the recipient states, the
notices owed, all with the time passed in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mailagents.delivery import Message, MessageSpool
from mailagents.queue import (
    Notice,
    Outcome,
    Queue,
    QueuedMessage,
    RetrySchedule,
    UnknownMessage,
)
from mailagents.queue._schedule import DAY
from mailagents.smtp import (
    Envelope,
    Mailbox,
    MailParameters,
    RcptParameters,
    Recipient,
    Reply,
)
from mailagents.smtp import (
    Path as SMTPPath,
)

CONTENT = b"From: a@example.test\r\nSubject: hi\r\n\r\nHello.\r\n"
OK = Reply(code=250, enhanced="2.0.0", lines=("OK",))
LATER = Reply(code=451, enhanced="4.3.0", lines=("Try later",))
NO = Reply(code=550, enhanced="5.1.1", lines=("No such user",))


def envelope(
    sender: str | None = "alice@example.test",
    recipients: tuple[str, ...] = ("bob@example.org", "carol@example.net"),
    *,
    notify: frozenset[str] | None = None,
    **params: object,
) -> Envelope:
    def path(address: str) -> SMTPPath:
        local, _, domain = address.rpartition("@")
        return SMTPPath(Mailbox(local, domain))

    return Envelope(
        mail_from=path(sender) if sender else SMTPPath(None),
        mail_parameters=MailParameters(**params),  # type: ignore[arg-type]
        recipients=tuple(
            Recipient(path=path(r), parameters=RcptParameters(notify=notify))
            for r in recipients
        ),
        size=len(CONTENT),
    )


@pytest.fixture
def queue(tmp_path: Path) -> Queue:
    return Queue(tmp_path / "q", schedule=RetrySchedule(first=60.0, factor=2.0, maximum=600.0,
                                                         delay_notice=3600.0, give_up=DAY))


def test_enqueue_keeps_envelope_parameters_and_content(queue: Queue) -> None:
    m = queue.enqueue(
        envelope(body="8BITMIME", ret="HDRS", envid="abc+1", smtputf8=False, requiretls=True),
        Message.from_bytes(CONTENT), now=100.0, identity="alice", client="192.0.2.1",
    )
    assert (m.sender, m.body, m.ret, m.envid, m.requiretls, m.identity, m.client) == (
        "alice@example.test", "8BITMIME", "HDRS", "abc+1", True, "alice", "192.0.2.1")
    assert [r.address for r in m.recipients] == ["bob@example.org", "carol@example.net"]
    assert all(r.state == "queued" and r.next_attempt == 100.0 for r in m.recipients)
    assert m.size == len(CONTENT) and queue.get(m.id) == m and m.id in queue
    with queue.open(m.id) as content:
        assert content.read() == CONTENT
        assert content.header == b"From: a@example.test\r\nSubject: hi\r\n"
    again = Queue(queue.directory, schedule=queue.schedule)
    assert again.recovered == 1 and again.get(m.id) == m


def test_ids_are_unique_and_sort_by_arrival(queue: Queue) -> None:
    ids = [queue.enqueue(envelope(), Message.from_bytes(CONTENT), now=1000.0 + i / 10).id
           for i in range(50)]
    assert len(set(ids)) == 50 and ids == sorted(ids)
    assert [m.id for m in queue.messages()] == ids


def test_a_spooled_message_is_copied_by_chunks(queue: Queue, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    spool = MessageSpool(memory_limit=1000, directory=tmp_path)
    body = b"Subject: big\r\n\r\n" + b"x" * 998 + b"\r\n"
    for _ in range(3000):
        spool.write(body)
    big = spool.finish()
    monkeypatch.setattr(Message, "read", lambda self: pytest.fail("read whole"))
    m = queue.enqueue(envelope(), big, now=1.0)
    assert os.path.getsize(queue._content_path(m.id)) == big.size == m.size
    with queue.open(m.id) as content:
        assert b"".join(content.chunks()) == b"".join(big.chunks())


def test_enqueue_fsyncs_content_queue_file_and_directory(queue: Queue,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    m = queue.enqueue(envelope(), Message.from_bytes(CONTENT), now=1.0)
    content, state = queue._content_path(m.id), queue._state_path(m.id)
    assert synced[0] == content
    assert synced[1].startswith(state + ".") and synced[1].endswith(".tmp")
    assert synced[-1] == os.path.dirname(state)  # the directory, after the rename


def test_a_failed_write_leaves_nothing(queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError):
        queue.enqueue(envelope(), Message.from_bytes(CONTENT), now=1.0)
    assert len(queue) == 0 and os.listdir(os.path.join(queue.directory, "queue")) == []


def test_temporary_failures_follow_the_schedule_then_expire(queue: Queue) -> None:
    m = queue.enqueue(envelope(recipients=("bob@example.org",)), Message.from_bytes(CONTENT),
                      now=0.0)
    now, waits = 0.0, []
    while True:
        assert (queue.due(now) and not queue.due(now - 1)) or now == 0.0
        state = queue.record(m.id, [Outcome(index=0, status="temporary", reply=LATER,
                                            remote_mta="mx.example.org")], now=now)
        r = state.recipients[0]
        if r.final:
            break
        waits.append(r.next_attempt - now)
        now = r.next_attempt
    assert waits[:5] == [60.0, 120.0, 240.0, 480.0, 600.0]
    assert now == DAY and r.state == "failed" and r.expired and r.reply == LATER
    assert r.attempts == len(waits) + 1 and r.remote_mta == "mx.example.org"
    assert queue.notices(m.id, now=now) == [Notice(kind="failure", recipients=(0,))]


def test_each_recipient_has_its_own_fate_and_final_ones_stay(queue: Queue) -> None:
    m = queue.enqueue(envelope(recipients=("a@x.example", "b@x.example", "c@y.example")),
                      Message.from_bytes(CONTENT), now=0.0)
    state = queue.record(m.id, [
        Outcome(index=0, status="delivered", reply=OK, remote_mta="mx.x.example"),
        Outcome(index=1, status="permanent", reply=NO, remote_mta="mx.x.example"),
        Outcome(index=2, status="temporary", reply=LATER),
    ], now=10.0)
    assert [r.state for r in state.recipients] == ["delivered", "failed", "queued"]
    assert state.due(10.0) == () and state.due(70.0) == (2,)
    # A late outcome for an accepted recipient changes nothing: it is never sent twice.
    again = queue.record(m.id, [Outcome(index=0, status="permanent", reply=NO)], now=20.0)
    assert again.recipients[0].state == "delivered"
    assert queue.due(70.0) == [again] and queue.next_wakeup() == 70.0
    with pytest.raises(IndexError):
        queue.record(m.id, [Outcome(index=3, status="delivered", reply=OK)], now=1.0)


def test_state_survives_reopening(queue: Queue) -> None:
    m = queue.enqueue(envelope(), Message.from_bytes(CONTENT), now=0.0)
    state = queue.record(m.id, [Outcome(index=0, status="delivered", reply=OK),
                                Outcome(index=1, status="temporary", reply=LATER)], now=5.0)
    again = Queue(queue.directory, schedule=queue.schedule)
    assert again.get(m.id) == state


def test_a_message_done_is_removed(queue: Queue) -> None:
    m = queue.enqueue(envelope(), Message.from_bytes(CONTENT), now=0.0)
    state = queue.record(m.id, [Outcome(index=i, status="delivered", reply=OK)
                                for i in range(2)], now=1.0)
    assert not state.pending and m.id not in queue
    assert os.listdir(os.path.join(queue.directory, "queue")) == []
    with pytest.raises(UnknownMessage):
        queue.get(m.id)
    with pytest.raises(UnknownMessage):
        queue.record(m.id, [], now=2.0)


def test_failure_notice_then_removal(queue: Queue) -> None:
    m = queue.enqueue(envelope(), Message.from_bytes(CONTENT), now=0.0)
    queue.record(m.id, [Outcome(index=0, status="delivered", reply=OK),
                        Outcome(index=1, status="permanent", reply=NO)], now=1.0)
    assert m.id in queue
    assert queue.notices(m.id, now=1.0) == [Notice(kind="failure", recipients=(1,))]
    queue.mark_notified(m.id, "failure", [1], now=1.0)
    assert m.id not in queue


@pytest.mark.parametrize(
    ("notify", "kinds"),
    [
        (None, {"failure", "delay"}),
        (frozenset({"NEVER"}), set()),
        (frozenset({"FAILURE"}), {"failure"}),
        (frozenset({"DELAY"}), {"delay"}),
        (frozenset({"SUCCESS"}), {"success"}),
        (frozenset({"SUCCESS", "FAILURE", "DELAY"}), {"success", "failure", "delay"}),
    ],
)
def test_notify_is_obeyed(queue: Queue, notify: frozenset[str] | None, kinds: set[str]) -> None:
    m = queue.enqueue(envelope(recipients=("a@x.example", "b@x.example", "c@x.example"),
                               notify=notify), Message.from_bytes(CONTENT), now=0.0)
    queue.record(m.id, [Outcome(index=0, status="permanent", reply=NO),
                        Outcome(index=1, status="temporary", reply=LATER),
                        Outcome(index=2, status="relayed", reply=OK)], now=4000.0)
    owed = queue.notices(m.id, now=4000.0)
    assert {n.kind for n in owed} == kinds
    expected = {"failure": (0,), "delay": (1,), "success": (2,)}
    assert all(n.recipients == expected[n.kind] and not n.to_postmaster for n in owed)


def test_delay_notice_waits_and_is_sent_once(queue: Queue) -> None:
    m = queue.enqueue(envelope(recipients=("a@x.example",)), Message.from_bytes(CONTENT),
                      now=0.0)
    queue.record(m.id, [Outcome(index=0, status="temporary", reply=LATER)], now=0.0)
    assert queue.notices(m.id, now=3599.0) == []
    assert queue.notices(m.id, now=3600.0) == [Notice(kind="delay", recipients=(0,))]
    queue.mark_notified(m.id, "delay", [0], now=3600.0)
    assert queue.notices(m.id, now=7200.0) == []
    state = queue.record(m.id, [Outcome(index=0, status="permanent", reply=NO)], now=7200.0)
    assert queue.owed(state, now=7200.0) == [Notice(kind="failure", recipients=(0,))]


def test_null_sender_failures_go_to_the_postmaster_once(queue: Queue) -> None:
    m = queue.enqueue(envelope(sender=None, notify=frozenset({"NEVER"})),
                      Message.from_bytes(CONTENT), now=0.0, notice="dsn")
    queue.record(m.id, [Outcome(index=0, status="permanent", reply=NO),
                        Outcome(index=1, status="temporary", reply=LATER)], now=DAY - 1)
    # never a delay or success notice to <>; the failure to the postmaster
    assert queue.notices(m.id, now=DAY - 1) == [
        Notice(kind="failure", recipients=(0,), to_postmaster=True)]
    notice = queue.enqueue(envelope(sender=None, recipients=("postmaster@here.example",)),
                           Message.from_bytes(CONTENT), now=0.0, notice="postmaster")
    queue.record(notice.id, [Outcome(index=0, status="permanent", reply=NO)], now=1.0)
    assert notice.id not in queue  # a failed notice to the postmaster is dropped


def test_retry_and_delete(queue: Queue) -> None:
    m = queue.enqueue(envelope(), Message.from_bytes(CONTENT), now=0.0)
    queue.record(m.id, [Outcome(index=0, status="temporary", reply=LATER),
                        Outcome(index=1, status="delivered", reply=OK)], now=0.0)
    assert queue.due(1.0) == []
    queue.retry(m.id, now=1.0)
    assert [x.id for x in queue.due(1.0)] == [m.id]
    queue.delete(m.id)
    assert m.id not in queue and Queue(queue.directory).recovered == 0
    with pytest.raises(UnknownMessage):
        queue.delete(m.id)


def test_recovery_quarantines_damaged_files_and_drops_unaccepted(queue: Queue) -> None:
    good = queue.enqueue(envelope(), Message.from_bytes(CONTENT), now=0.0)
    cut = queue.enqueue(envelope(), Message.from_bytes(CONTENT), now=1.0)
    short = queue.enqueue(envelope(), Message.from_bytes(CONTENT), now=2.0)
    active = Path(queue.directory, "queue")
    data = (active / cut.id).read_bytes()
    (active / cut.id).write_bytes(data[:-5])  # no END: never taken for a message
    (active / (short.id + ".msg")).write_bytes(CONTENT[:-3])  # content cut short
    (active / "0FFFF.msg").write_bytes(CONTENT)  # content never given a queue file
    (active / f"{good.id}.123.tmp").write_bytes(b"half a state change")
    again = Queue(queue.directory)
    assert again.recovered == 1 and [m.id for m in again.messages()] == [good.id]
    assert sorted(os.listdir(active)) == sorted([good.id, good.id + ".msg"])
    corrupt = sorted(os.listdir(Path(queue.directory, "corrupt")))
    assert corrupt == sorted([cut.id, cut.id + ".msg", short.id, short.id + ".msg"])


CRASHER = textwrap.dedent("""
    import sys, time
    from mailagents.delivery import Message
    from mailagents.queue import Queue, Outcome
    from mailagents.smtp import Envelope, MailParameters, Mailbox, Path, Recipient, Reply
    queue = Queue(sys.argv[1])
    env = Envelope(mail_from=Path(Mailbox("a", "x.example")), mail_parameters=MailParameters(),
                   recipients=(Recipient(path=Path(Mailbox("b", "y.example"))),
                               Recipient(path=Path(Mailbox("c", "y.example")))), size=0)
    ok = Reply(code=250, enhanced="2.0.0", lines=("OK",))
    later = Reply(code=451, enhanced="4.0.0", lines=("later",))
    i = 0
    while True:
        i += 1
        m = queue.enqueue(env, Message.from_bytes(b"Subject: %d\\r\\n\\r\\nbody\\r\\n" % i))
        print("ACCEPTED", m.id, flush=True)
        queue.record(m.id, [Outcome(index=0, status="delivered", reply=ok),
                            Outcome(index=1, status="temporary", reply=later)], now=time.time())
        print("RECORDED", m.id, flush=True)
""")


@pytest.mark.parametrize("delay", [0.3, 0.8])
def test_kill_9_loses_no_accepted_message(tmp_path: Path, delay: float) -> None:
    directory = tmp_path / "q"
    proc = subprocess.Popen([sys.executable, "-c", CRASHER, str(directory)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    accepted: list[str] = []
    recorded: set[str] = set()
    deadline = time.monotonic() + 30
    while len(accepted) < 20 and time.monotonic() < deadline:  # let it get going
        kind, id = proc.stdout.readline().split()
        (accepted.append if kind == "ACCEPTED" else recorded.add)(id)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    for line in proc.stdout:  # what it printed before it died
        kind, _, id = line.strip().partition(" ")
        if kind == "ACCEPTED":
            accepted.append(id)
        elif kind == "RECORDED":
            recorded.add(id)
    proc.wait(timeout=10)
    assert len(accepted) >= 20
    queue = Queue(directory)
    found = {m.id: m for m in queue.messages()}
    assert set(accepted) <= set(found)  # everything accepted is there
    for id in recorded:  # and each recorded state change with it
        assert [r.state for r in found[id].recipients] == ["delivered", "queued"]
    assert os.listdir(tmp_path / "q" / "corrupt") == []


def test_queued_message_helpers() -> None:
    m = QueuedMessage(id="A", sender="", recipients=(), arrival=0.0, size=0)
    assert m.pending == () and m.next_attempt is None and m.due(0.0) == ()


def test_outcome_checks_the_reply_class() -> None:
    with pytest.raises(ValueError):
        Outcome(index=0, status="delivered", reply=NO)
    with pytest.raises(ValueError):
        Outcome(index=0, status="temporary", reply=NO)


def test_refresh_takes_in_what_another_process_changed(queue: Queue) -> None:
    m = queue.enqueue(envelope(), Message.from_bytes(CONTENT), now=0.0)
    queue.record(m.id, [Outcome(index=0, status="temporary", reply=LATER)], now=0.0)
    assert queue.refresh() == 0  # our own writes are not news
    other = Queue(queue.directory, schedule=queue.schedule)
    other.retry(m.id, now=5.0)
    new = other.enqueue(envelope(), Message.from_bytes(CONTENT), now=6.0)
    assert queue.refresh() == 2
    assert queue.get(m.id).recipients[0].next_attempt == 5.0 and new.id in queue
    other.delete(m.id)
    assert queue.refresh() == 1 and m.id not in queue
    assert queue.refresh() == 0


def test_recording_a_message_deleted_elsewhere_drops_it(queue: Queue) -> None:
    m = queue.enqueue(envelope(), Message.from_bytes(CONTENT), now=0.0)
    Queue(queue.directory).delete(m.id)
    with pytest.raises(UnknownMessage):
        queue.record(m.id, [Outcome(index=0, status="delivered", reply=OK)], now=1.0)
    assert m.id not in queue and os.listdir(os.path.join(queue.directory, "queue")) == []


def test_a_hop_with_dsn_takes_over_the_success_notice(queue: Queue) -> None:
    m = queue.enqueue(envelope(notify=frozenset({"SUCCESS"})), Message.from_bytes(CONTENT),
                      now=0.0)
    state = queue.record(m.id, [Outcome(index=0, status="transferred", reply=OK),
                                Outcome(index=1, status="delivered", reply=OK)], now=1.0)
    assert [r.state for r in state.recipients] == ["transferred", "delivered"]
    # RFC 3461: the next hop reports the first; we report the one delivered here.
    assert queue.owed(state, now=1.0) == [Notice(kind="success", recipients=(1,))]
