"""The MRA after the server changed a folder's UIDVALIDITY (RFC 9051 §2.3.1.1): the
remote Maildir's ``dovecot-uidlist`` and our store's side files are removed while the
MAA is down, so the store numbers the same messages again under a new UIDVALIDITY.
Messages recognised by Message-ID and size are not fetched again; one without a
Message-ID is fetched again, once; nothing is lost."""

from __future__ import annotations

from pathlib import Path

from mailagents.agents import MaildirDelivery
from mailagents.agents.mra import Account, FetchReport
from mailagents.delivery import Deliver, Handoff, RecipientResult
from mailagents.smtp import Reply
from tests.agents.test_mra import (
    Remote,
    account,
    local,
    local_numbers,
    make_mra,
    run,
    serving,
    state_of,
)

SIDE_FILES = ("dovecot-uidlist", "mailagents-modseq", "mailagents-cache", "mailagents-cache.lock",
              "mailagents-status", "mailagents-snapshot")


def reset_uidvalidity(remote: Remote) -> None:
    before = remote.uidvalidity()
    for name in SIDE_FILES:
        (remote.path / name).unlink(missing_ok=True)
    assert remote.uidvalidity() != before


def one_pass(root: Path, acct: Account, *, refuse: bool = False) -> FetchReport:
    """One run_once over a fresh MAA and a fresh MRA (the state is in its file)."""

    async def main() -> FetchReport:
        async with serving(root) as maa, local(root) as delivery:
            chosen = acct if acct.port != 0 else account(maa, acct.protocol, name=acct.name,
                                                         after=acct.after)
            target = refusing(delivery) if refuse else delivery
            report, = await make_mra(root, [chosen], target).run_once()
            return report

    return run(main())


def refusing(delivery: MaildirDelivery) -> Deliver:
    """A destination that takes messages with a Message-ID and refuses the others for
    now (451)."""

    async def deliver(handoff: Handoff) -> list[RecipientResult]:
        if b"Message-ID" not in handoff.message.header:
            reply = Reply(code=451, enhanced="4.3.0", lines=("Try later",))
            return [RecipientResult.failed(r, reply) for r in handoff.envelope.recipients]
        return await delivery(handoff)

    return deliver


def placeholder(after: str = "keep") -> Account:
    """An account whose port is filled in by :func:`one_pass`."""
    return account(None, "imap", port=0, name="work", after=after)


def test_recognised_by_message_id_and_size(tmp_path: Path) -> None:
    remote = Remote(tmp_path)
    remote.put(1, 2)
    remote.put(3, message_id=False)
    first = one_pass(tmp_path, placeholder())
    assert len(first.fetched) == 3
    reset_uidvalidity(remote)
    remote.put(4)
    second = one_pass(tmp_path, placeholder())
    assert second.recognised == 2 and second.error is None
    assert len(second.fetched) == 2
    assert local_numbers(tmp_path) == [1, 2, 3, 3, 4]  # 3 (no Message-ID) came twice
    third = one_pass(tmp_path, placeholder())
    assert third.fetched == () and third.recognised == 0
    assert local_numbers(tmp_path) == [1, 2, 3, 3, 4]
    assert remote.numbers() == [1, 2, 3, 4]


def test_recognised_messages_are_removed_in_delete_mode(tmp_path: Path) -> None:
    """Kept first, then the account switched to delete after a UIDVALIDITY change: the
    recognised messages are removed without being fetched again."""
    remote = Remote(tmp_path)
    remote.put(1, 2)
    one_pass(tmp_path, placeholder())
    reset_uidvalidity(remote)
    remote.put(3)
    report = one_pass(tmp_path, placeholder("delete"))
    assert report.recognised == 2 and report.removed == 3
    assert remote.numbers() == []
    assert local_numbers(tmp_path) == [1, 2, 3]


def test_a_pass_stopped_early_keeps_what_it_recognised(tmp_path: Path) -> None:
    """The first message after the change (no Message-ID, so not recognised) is refused
    for now and stops the pass: the recognised ones behind it are remembered under the
    new UIDVALIDITY all the same, so the next pass fetches only the refused one."""
    remote = Remote(tmp_path)
    remote.put(1, message_id=False)
    remote.put(2, 3)
    one_pass(tmp_path, placeholder())
    reset_uidvalidity(remote)
    stopped = one_pass(tmp_path, placeholder(), refuse=True)
    assert stopped.error is not None and stopped.fetched == ()
    assert stopped.recognised == 2
    after = one_pass(tmp_path, placeholder())
    assert len(after.fetched) == 1 and after.recognised == 0
    assert local_numbers(tmp_path) == [1, 1, 2, 3]


def test_the_state_follows_the_new_uidvalidity(tmp_path: Path) -> None:
    remote = Remote(tmp_path)
    remote.put(1)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            mra = make_mra(tmp_path, [account(maa, "imap", name="work")], delivery)
            await mra.run_once()
            folder = state_of(mra, "work")["folders"]["INBOX"]
            assert folder["uidvalidity"] == remote.uidvalidity()
            assert folder["uids"] == "1" and list(folder["digests"]) == ["1"]

    run(main())
    reset_uidvalidity(remote)
    one_pass(tmp_path, placeholder())

    async def check() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            mra = make_mra(tmp_path, [account(maa, "imap", name="work")], delivery)
            folder = state_of(mra, "work")["folders"]["INBOX"]
            assert folder["uidvalidity"] == remote.uidvalidity()
            assert folder["uids"] != ""

    run(check())
    assert local_numbers(tmp_path) == [1]
