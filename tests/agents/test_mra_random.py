"""Random runs of the MRA against our MAA, seeded and bounded: new messages arrive,
another client expunges some, and passes run while the destination refuses for now or
raises and the server's removal commands break, all at random. Whatever happened, once
the failures stop, every message that stayed on the server long enough is delivered
(nothing lost), the server holds what the mode says, and a run without failures
delivers each message exactly once."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from mailagents.aio.imap_client import IMAPClient
from mailagents.aio.pop3_client import POP3Client
from mailagents.delivery import Handoff, RecipientResult
from mailagents.smtp import Reply
from tests.agents.test_mra import (
    Remote,
    account,
    body_number,
    local,
    local_numbers,
    make_mra,
    run,
    serving,
    without,
)

STEPS = 16
TEMPORARY = Reply(code=451, enhanced="4.3.0", lines=("Try later",))
MODES = [("pop3", "keep"), ("pop3", "delete"), ("imap", "keep"), ("imap", "delete"),
         ("imap", "move"), ("imap", "move-by-copy"), ("imap", "seen")]


class Chaos:
    """Whether, and how often, things go wrong now."""

    def __init__(self, rng: random.Random, rate: float) -> None:
        self.rng, self.rate, self.on = rng, rate, rate > 0

        self.struck = 0

    def strikes(self) -> bool:
        struck = self.on and self.rng.random() < self.rate
        self.struck += struck
        return struck


def breaking(monkeypatch: pytest.MonkeyPatch, chaos: Chaos) -> None:
    """The removal commands (DELE, STORE, MOVE, EXPUNGE) raise now and then."""
    for cls, name in ((POP3Client, "dele"), (IMAPClient, "store"), (IMAPClient, "move"),
                      (IMAPClient, "expunge")):
        original = getattr(cls, name)

        async def wrapper(self: Any, *args: Any, _original: Any = original,
                          _name: str = name, **kwargs: Any) -> Any:
            if chaos.strikes():
                raise ConnectionResetError(f"{_name} broke (test)")
            return await _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
@pytest.mark.parametrize(("protocol", "after"), MODES)
def test_random_runs_lose_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  protocol: str, after: str, seed: int) -> None:
    rng = random.Random(f"{protocol}-{after}-{seed}")
    options = {"imap_config": without("MOVE")} if after == "move-by-copy" else {}
    after = after.split("-")[0]
    chaos = Chaos(rng, 0.0 if seed == 1 else 0.3)
    breaking(monkeypatch, chaos)
    remote = Remote(tmp_path)
    remote.create("Archive")
    put: list[int] = []
    taken: set[int] = set()  # expunged by the other client

    async def main() -> None:
        async with serving(tmp_path, **options) as maa, local(tmp_path) as delivery:

            async def destination(handoff: Handoff) -> list[RecipientResult]:
                if chaos.strikes():
                    if rng.random() < 0.5:
                        raise OSError("destination broke (test)")
                    return [RecipientResult.failed(r, TEMPORARY)
                            for r in handoff.envelope.recipients]
                return await delivery(handoff)

            acct = account(maa, protocol, after=after,
                           move_to="Archive" if after == "move" else None,
                           max_messages=rng.choice([None, 2, 5]))
            for _ in range(STEPS):
                action = rng.random()
                if action < 0.4:
                    numbers = [len(put) + i + 1 for i in range(rng.randint(1, 3))]
                    remote.put(*numbers)
                    put.extend(numbers)
                elif action < 0.5 and remote.infos():
                    with remote.store() as store, store.folder("INBOX") as box:
                        victim = rng.choice(box.messages()).uid
                        taken.add(body_number(box.read_message(victim)))
                        box.set_flags([victim], ["\\Deleted"], "add")
                        box.expunge([victim])
                else:
                    await make_mra(tmp_path, [acct], destination).run_once()
            chaos.on = False
            for _ in range(15):  # max_messages=2 may need several clean passes
                report, = await make_mra(tmp_path, [acct], destination).run_once()
                assert report.error is None, report
                if not report.fetched and not report.left and not report.removed:
                    break

    run(main(), 60.0)
    delivered = local_numbers(tmp_path)
    assert put and (chaos.rate == 0 or chaos.struck), "a run that tried nothing"
    assert set(put) - taken <= set(delivered)  # nothing lost
    assert set(delivered) <= set(put)
    if chaos.rate == 0:
        assert len(delivered) == len(set(delivered))  # nothing twice
    on_server = set(remote.numbers())
    if after in ("delete", "move"):
        assert on_server == set()
    else:
        assert on_server == set(put) - taken
    if after == "move":
        # A message taken by the other client was still in INBOX: never moved (but
        # perhaps copied, without MOVE, if it was taken before its \Deleted).
        archived = set(remote.numbers("Archive"))
        assert set(delivered) - taken <= archived <= set(delivered)
    if after == "seen":
        assert all("\\Seen" in i.flags for i in remote.infos())
