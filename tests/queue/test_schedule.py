"""RetrySchedule: the waits, the last attempt at the deadline, the delay notice."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.queue import RetrySchedule
from mailagents.queue._schedule import DAY, HOUR, MINUTE


@pytest.mark.parametrize(
    ("attempts", "wait"),
    [(1, 5 * MINUTE), (2, 10 * MINUTE), (3, 20 * MINUTE), (4, 40 * MINUTE),
     (5, 80 * MINUTE), (6, 160 * MINUTE), (7, 4 * HOUR), (50, 4 * HOUR), (10_000, 4 * HOUR)],
)
def test_default_waits_grow_from_minutes_to_hours(attempts: int, wait: float) -> None:
    assert RetrySchedule().wait(attempts) == wait


def test_explicit_intervals_repeat_the_last() -> None:
    schedule = RetrySchedule(intervals=(1.0, 2.0, 7.0))
    assert [schedule.wait(n) for n in range(1, 6)] == [1.0, 2.0, 7.0, 7.0, 7.0]


def test_next_attempt_is_capped_at_the_deadline_then_gives_up() -> None:
    schedule = RetrySchedule(first=100.0, factor=1.0, maximum=100.0, give_up=250.0)
    assert schedule.next_attempt(attempts=1, arrival=0.0, now=0.0) == 100.0
    assert schedule.next_attempt(attempts=2, arrival=0.0, now=100.0) == 200.0
    assert schedule.next_attempt(attempts=3, arrival=0.0, now=200.0) == 250.0  # last try
    assert schedule.next_attempt(attempts=4, arrival=0.0, now=250.0) is None


def test_default_gives_up_after_five_days_and_notices_delay_after_one() -> None:
    schedule = RetrySchedule()
    assert schedule.expires(1000.0) == 1000.0 + 5 * DAY
    assert not schedule.delay_due(0.0, DAY - 1)
    assert schedule.delay_due(0.0, DAY)
    assert not RetrySchedule(delay_notice=None).delay_due(0.0, 10 * DAY)


def test_a_whole_default_schedule_in_a_moment() -> None:
    schedule = RetrySchedule()
    now, attempts, times = 0.0, 0, []
    while True:
        attempts += 1
        again = schedule.next_attempt(attempts=attempts, arrival=0.0, now=now)
        if again is None:
            break
        times.append(again)
        now = again
    assert now == 5 * DAY
    assert 30 < attempts < 40  # about six a day once at the 4-hour maximum
    assert times == sorted(times)


@pytest.mark.parametrize(
    "kwargs",
    [{"first": 0}, {"maximum": -1}, {"give_up": 0}, {"factor": 0.5},
     {"intervals": (1.0, 0.0)}, {"delay_notice": 0}],
)
def test_nonsense_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetrySchedule(**kwargs)  # type: ignore[arg-type]


def test_wait_needs_a_failed_attempt() -> None:
    with pytest.raises(ValueError):
        RetrySchedule().wait(0)


@given(st.integers(1, 10**6), st.floats(0, 1e9), st.floats(0, 1e7))
def test_next_attempt_is_in_the_future_and_never_past_the_deadline(
    attempts: int, arrival: float, elapsed: float
) -> None:
    schedule = RetrySchedule()
    now = arrival + elapsed
    again = schedule.next_attempt(attempts=attempts, arrival=arrival, now=now)
    if now >= schedule.expires(arrival):
        assert again is None
    else:
        assert again is not None
        assert now < again <= schedule.expires(arrival)
