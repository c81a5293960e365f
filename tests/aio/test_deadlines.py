"""mailagents.aio._deadlines: which deadline falls first, and when. The object reads no
clock, so these tests give it the times (no wall clock, nothing to wait for)."""

from __future__ import annotations

import pytest

from mailagents.aio import ListenerLimits
from mailagents.aio._deadlines import Deadlines

LIMITS = ListenerLimits(idle_timeout=10.0, command_timeout=30.0, transfer_timeout=100.0,
                        send_timeout=50.0)


def started(limits: ListenerLimits = LIMITS, at: float = 1000.0) -> Deadlines:
    deadlines = Deadlines(limits)
    deadlines.start(at)
    return deadlines


def test_a_new_connection_has_the_idle_deadline() -> None:
    deadlines = started()
    assert deadlines.next() == (1010.0, "idle")
    assert not deadlines.paused
    assert deadlines.soonest == 10.0


def test_reads_move_the_idle_deadline_but_not_the_command_deadline() -> None:
    deadlines = started()
    deadlines.received(1001.0, armed_for=1010.0)  # a command begins
    assert deadlines.next() == (1011.0, "idle")
    for t in range(1002, 1035, 5):  # it trickles in, a read every 5 s
        deadlines.received(float(t), armed_for=1010.0)
    # Reads keep the idle deadline away; the command's own stays where it began.
    assert deadlines.next() == (1031.0, "command")


def test_an_answer_ends_the_command_and_restarts_idle() -> None:
    deadlines = started()
    deadlines.received(1001.0, armed_for=1010.0)
    deadlines.answered(1004.0)
    assert deadlines.input_at is None
    assert deadlines.next() == (1014.0, "idle")
    # Input buffered before the answer starts the next command when it is fed.
    deadlines.command_began(1005.0)
    deadlines.command_began(1006.0)  # it runs already: unchanged
    assert deadlines.input_at == 1005.0


def test_received_says_when_the_timer_must_come_forward() -> None:
    limits = ListenerLimits(idle_timeout=300.0, command_timeout=5.0)
    deadlines = started(limits)
    # The command deadline (5 s) falls before a timer armed for the idle one (300 s).
    assert deadlines.received(1001.0, armed_for=1300.0) is True
    # Inside a command, a read never brings anything forward.
    assert deadlines.received(1002.0, armed_for=1006.0) is False
    deadlines.answered(1003.0)
    # A timer armed soon enough needs no look.
    assert deadlines.received(1004.0, armed_for=1008.0) is False


def test_received_looks_again_while_a_transfer_or_a_blocked_client_is_there() -> None:
    deadlines = started()
    deadlines.transferring(1002.0)  # content streams between two commands' input
    assert deadlines.received(1003.0, armed_for=1e9) is True
    other = started()
    other.blocked(1001.0)
    assert other.received(1002.0, armed_for=1e9) is True


def test_a_transfer_is_bounded_as_a_whole() -> None:
    deadlines = started()
    deadlines.received(1001.0, armed_for=1010.0)
    deadlines.transferring(1001.0)
    deadlines.transferring(1050.0)  # runs already: unchanged
    for t in range(1005, 1100, 5):
        deadlines.received(float(t), armed_for=1e9)
    assert deadlines.next() == (1101.0, "transfer")
    deadlines.answered(1099.0)
    assert deadlines.transfer_at is None
    # Between commands the later of the last read and the answer counts: 1099 + 10.
    assert deadlines.next() == (1109.0, "idle")


def test_idle_beats_a_longer_command_or_transfer() -> None:
    deadlines = started()
    deadlines.received(1001.0, armed_for=1010.0)
    assert deadlines.next() == (1011.0, "idle")
    deadlines.transferring(1001.0)
    assert deadlines.next() == (1011.0, "idle")


def test_a_client_that_does_not_read_has_the_send_deadline_only() -> None:
    deadlines = started()
    deadlines.received(1001.0, armed_for=1010.0)
    deadlines.blocked(1002.0)
    assert deadlines.next() == (1052.0, "send")
    deadlines.unblocked()
    assert deadlines.next() == (1011.0, "idle")


def test_pausing_moves_every_running_deadline_by_the_pause() -> None:
    deadlines = started()
    deadlines.received(1001.0, armed_for=1010.0)
    deadlines.transferring(1001.0)
    assert deadlines.pause(1002.0) is True
    assert deadlines.paused
    assert deadlines.pause(1003.0) is False  # paused already: the first caller resumes
    assert deadlines.resume(1502.0) is True  # 500 s of server time
    assert not deadlines.paused
    assert deadlines.resume(1503.0) is False
    assert (deadlines.read_at, deadlines.input_at, deadlines.transfer_at) == (
        1501.0, 1501.0, 1501.0)
    assert deadlines.progress_at == 1500.0
    assert deadlines.next() == (1511.0, "idle")


def test_a_blocked_client_counts_even_while_paused() -> None:
    deadlines = started()
    deadlines.pause(1001.0)
    deadlines.blocked(1002.0)
    assert not deadlines.paused  # the send deadline runs whatever the server does
    assert deadlines.next() == (1052.0, "send")


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([], (1010.0, "idle")),
        ([("received", 1001.0)], (1011.0, "idle")),
        ([("received", 1001.0), ("received", 1009.0), ("received", 1017.0),
          ("received", 1025.0)], (1031.0, "command")),
        ([("received", 1001.0), ("transferring", 1001.0), ("answered", 1002.0)],
         (1012.0, "idle")),
        ([("blocked", 1003.0), ("answered", 1004.0)], (1053.0, "send")),
    ],
)
def test_order_of_events(events: list[tuple[str, float]], expected: tuple[float, str]) -> None:
    deadlines = started()
    for name, at in events:
        if name == "received":
            deadlines.received(at, armed_for=1e9)
        else:
            getattr(deadlines, name)(at)
    assert deadlines.next() == expected
