"""The MRA as a daemon (``MRA.run(stop)``) against our MAA: IMAP IDLE picks up a new
message at once (the polling interval is far longer than the test), POP3 polls at its
interval, a failing account backs off (doubling, bounded, afresh after a pass that
worked, even inside a long IDLE session), and ``stop`` ends it all. The waits are
generous: what is asserted is order and outcome, not speed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mailagents.agents import MRA
from mailagents.agents import mra as mra_module
from mailagents.agents.mra import Account, FetchReport
from tests.agents.test_mra import (
    Remote,
    account,
    local,
    local_numbers,
    make_mra,
    run,
    serving,
    without,
)
from tests.agents.test_mra_failures import closed_port

GENEROUS = 10.0


class Reports:
    """Collects the daemon's reports; ``until`` waits for one that satisfies a test."""

    def __init__(self) -> None:
        self.seen: list[FetchReport] = []
        self.changed = asyncio.Event()

    def __call__(self, report: FetchReport) -> None:
        self.seen.append(report)
        self.changed.set()

    async def until(self, test: Any, timeout: float = GENEROUS) -> FetchReport:
        async with asyncio.timeout(timeout):
            while True:
                for report in self.seen:
                    if test(report):
                        return report
                self.changed.clear()
                await self.changed.wait()


async def stopped(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    async with asyncio.timeout(GENEROUS):
        await task


@pytest.mark.parametrize("after", ["keep", "delete"])
def test_imap_idle_picks_up_a_new_message(tmp_path: Path, after: str) -> None:
    remote = Remote(tmp_path)
    remote.put(1)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            acct = account(maa, "imap", after=after, interval=600.0)
            mra = make_mra(tmp_path, [acct], delivery)
            reports, stop = Reports(), asyncio.Event()
            task = asyncio.create_task(mra.run(stop, on_report=reports))
            await reports.until(lambda r: len(r.fetched) == 1)
            count = len(reports.seen)
            await asyncio.sleep(0.2)  # in IDLE by now, most likely (either way works)
            remote.put(2)
            await reports.until(lambda r: r in reports.seen[count:] and len(r.fetched) == 1)
            remote.put(3)
            await reports.until(lambda r: r in reports.seen[count + 1:] and len(r.fetched) == 1)
            await stopped(task, stop)
            assert all(r.error is None for r in reports.seen)

    run(main())
    assert local_numbers(tmp_path) == [1, 2, 3]
    assert remote.numbers() == ([] if after == "delete" else [1, 2, 3])


def test_imap_without_idle_polls(tmp_path: Path) -> None:
    remote = Remote(tmp_path)
    remote.put(1)

    async def main() -> None:
        async with serving(tmp_path, imap_config=without("IDLE")) as maa, \
                local(tmp_path) as delivery:
            acct = account(maa, "imap", interval=0.1)
            mra = make_mra(tmp_path, [acct], delivery)
            reports, stop = Reports(), asyncio.Event()
            task = asyncio.create_task(mra.run(stop, on_report=reports))
            await reports.until(lambda r: len(r.fetched) == 1)
            remote.put(2)
            await reports.until(lambda r: r is not reports.seen[0] and len(r.fetched) == 1)
            await stopped(task, stop)

    run(main())
    assert local_numbers(tmp_path) == [1, 2]


def test_pop3_polls_at_its_interval(tmp_path: Path) -> None:
    remote = Remote(tmp_path)
    remote.put(1)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            acct = account(maa, "pop3", after="delete", interval=0.1)
            mra = make_mra(tmp_path, [acct], delivery)
            reports, stop = Reports(), asyncio.Event()
            task = asyncio.create_task(mra.run(stop, on_report=reports))
            await reports.until(lambda r: len(r.fetched) == 1)
            await reports.until(lambda r: r.fetched == ())  # polled again, nothing new
            remote.put(2)
            await reports.until(lambda r: r is not reports.seen[0] and len(r.fetched) == 1)
            await stopped(task, stop)
            assert all(r.error is None for r in reports.seen)

    run(main())
    assert local_numbers(tmp_path) == [1, 2]
    assert remote.numbers() == []


def record_waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    original = MRA._wait

    def spy(self: MRA, failures: int, acct: Account) -> float:
        wait = original(self, failures, acct)
        waits.append(wait)
        return wait

    monkeypatch.setattr(MRA, "_wait", spy)
    return waits


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_backoff_grows_and_is_bounded(tmp_path: Path, protocol: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    waits = record_waits(monkeypatch)

    async def main() -> None:
        async with local(tmp_path) as delivery:
            acct = account(None, protocol, port=closed_port(), interval=600.0)
            mra = make_mra(tmp_path, [acct], delivery, backoff=(0.01, 0.04))
            reports, stop = Reports(), asyncio.Event()
            task = asyncio.create_task(mra.run(stop, on_report=reports))
            await reports.until(lambda r: len(reports.seen) >= 6)
            await stopped(task, stop)
            assert all(r.error is not None for r in reports.seen)
            assert all("Error" in (r.error or "") for r in reports.seen)

    run(main())
    assert waits[:6] == [0.01, 0.02, 0.04, 0.04, 0.04, 0.04]


def test_wait_values() -> None:
    acct = account(None, "pop3", port=110, interval=42.0)
    mra = MRA([acct], lambda h: None, backoff=(30.0, 3600.0))  # type: ignore[arg-type,return-value]
    assert mra._wait(0, acct) == 42.0
    assert [mra._wait(n, acct) for n in range(1, 9)] == [
        30.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 3600.0]
    assert mra._wait(10_000, acct) == 3600.0
    with pytest.raises(ValueError):
        MRA([acct], lambda h: None, backoff=(10.0, 5.0))  # type: ignore[arg-type,return-value]


def test_backoff_starts_afresh_after_a_good_pass(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Each IDLE session makes a good pass, then breaks while waiting: every wait is
    the first back-off, not a growing one (the good pass counts)."""
    Remote(tmp_path).put(1)
    waits = record_waits(monkeypatch)

    async def broken_idle(client: Any, longest: float) -> None:
        raise ConnectionResetError("IDLE broke (test)")

    monkeypatch.setattr(mra_module, "_wait_in_idle", broken_idle)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            acct = account(maa, "imap", interval=600.0)
            mra = make_mra(tmp_path, [acct], delivery, backoff=(0.01, 1.0))
            reports, stop = Reports(), asyncio.Event()
            task = asyncio.create_task(mra.run(stop, on_report=reports))
            await reports.until(lambda r: len([x for x in reports.seen if x.error]) >= 4)
            await stopped(task, stop)

    run(main())
    assert waits[:4] == [0.01] * 4


def test_a_failed_pass_is_reported_once(tmp_path: Path) -> None:
    """In an IDLE session, a pass stopped by the destination is told once (its own
    report), not again as a bare error."""
    Remote(tmp_path).put(1)

    async def refuse(handoff: Any) -> list[Any]:
        from mailagents.delivery import RecipientResult
        from mailagents.smtp import Reply
        reply = Reply(code=451, enhanced="4.3.0", lines=("later",))
        return [RecipientResult.failed(r, reply) for r in handoff.envelope.recipients]

    async def main() -> None:
        async with serving(tmp_path) as maa:
            acct = account(maa, "imap", interval=600.0)
            mra = make_mra(tmp_path, [acct], refuse, backoff=(0.05, 0.05))
            reports, stop = Reports(), asyncio.Event()
            task = asyncio.create_task(mra.run(stop, on_report=reports))
            await reports.until(lambda r: len(reports.seen) >= 3)
            await stopped(task, stop)
            assert all(r.error is not None and r.error.startswith("destination: ")
                       for r in reports.seen), reports.seen

    run(main())


def test_stop_ends_every_account(tmp_path: Path) -> None:
    """Two accounts, one in IDLE, one waiting out its back-off: stop ends both."""

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            idle = account(maa, "imap", name="idle", interval=600.0)
            failing = account(None, "pop3", name="down", port=closed_port(), interval=600.0)
            mra = make_mra(tmp_path, [idle, failing], delivery, backoff=(600.0, 600.0))
            reports, stop = Reports(), asyncio.Event()
            task = asyncio.create_task(mra.run(stop, on_report=reports))
            await reports.until(lambda r: {x.account for x in reports.seen} == {"idle", "down"})
            await asyncio.sleep(0.1)
            await stopped(task, stop)
            assert task.done()

    run(main())


@pytest.mark.parametrize("after", ["keep", "delete"])
def test_a_message_arriving_during_a_pass_is_not_left_until_the_interval(
        tmp_path: Path, after: str) -> None:
    """A message delivered while the pass hands the first one off: the server may tell
    of it in the answer to a command of the pass (the UID EXPUNGE), not in IDLE; the
    daemon fetches it all the same, without waiting out the interval."""
    remote = Remote(tmp_path)
    remote.put(1)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            async def deliver_and_add(handoff: Any) -> Any:
                if b"m1" in handoff.message.header:
                    remote.put(2)
                return await delivery(handoff)

            acct = account(maa, "imap", after=after, interval=600.0)
            mra = make_mra(tmp_path, [acct], deliver_and_add)
            reports, stop = Reports(), asyncio.Event()
            task = asyncio.create_task(mra.run(stop, on_report=reports))
            await reports.until(lambda r: sum(len(x.fetched) for x in reports.seen) == 2)
            await stopped(task, stop)

    run(main())
    assert local_numbers(tmp_path) == [1, 2]


def test_a_message_arriving_in_the_watched_folder_while_another_is_fetched(
        tmp_path: Path) -> None:
    """IDLE watches the first folder: one that came there while the pass was in the
    second is fetched at once (the first folder's UIDNEXT grew), not after the
    interval."""
    remote = Remote(tmp_path)
    remote.put(1)
    remote.put(2, folder="Lists")

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            async def deliver_and_add(handoff: Any) -> Any:
                if b"m2" in handoff.message.header:
                    remote.put(3)
                return await delivery(handoff)

            acct = account(maa, "imap", interval=600.0, folders=("INBOX", "Lists"))
            mra = make_mra(tmp_path, [acct], deliver_and_add)
            reports, stop = Reports(), asyncio.Event()
            task = asyncio.create_task(mra.run(stop, on_report=reports))
            await reports.until(lambda r: sum(len(x.fetched) for x in reports.seen) == 3)
            await stopped(task, stop)

    run(main())
    assert local_numbers(tmp_path) == [1, 2, 3]


def test_idle_outlasts_the_network_timeout(tmp_path: Path) -> None:
    """An IDLE longer than the account's per-step timeout is renewed, not an error."""
    remote = Remote(tmp_path)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            # 1 s per network step: a loaded machine still logs in within it.
            acct = account(maa, "imap", interval=600.0, timeout=1.0)
            mra = make_mra(tmp_path, [acct], delivery)
            reports, stop = Reports(), asyncio.Event()
            task = asyncio.create_task(mra.run(stop, on_report=reports))
            await reports.until(lambda r: True)
            await asyncio.sleep(3.0)  # three timeouts' worth in IDLE
            remote.put(1)
            await reports.until(lambda r: len(r.fetched) == 1)
            await stopped(task, stop)
            assert all(r.error is None for r in reports.seen), reports.seen

    run(main())
    assert local_numbers(tmp_path) == [1]
