"""The durable delivery path behind the MSA (``MaildirDelivery``, in
mailagents/agents/_maildir_delivery.py): one executor call per single-recipient
message, and 250 only after the file fsync, the rename and the directory fsync of that
message; the batches per Maildir; the Maildir paths of recipients, confined to their
folders."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from mailagents.agents import MaildirDelivery, Submission
from mailagents.delivery import Message
from mailagents.smtp import Envelope, Mailbox, Recipient
from mailagents.smtp import Path as SMTPPath
from mailagents.smtp._params import MailParameters
from mailagents.store import MaildirStore, _maildir_append
from mailagents.store import maildir as maildir_module

MESSAGE = b"Subject: hi\r\n\r\nline one\r\nline two\r\n"


def locations(results: Any) -> list[str | None]:
    """Where each recipient's copy went (the delivery's per-recipient results)."""
    return [r.location for r in results]


def submission(*locals_: str) -> Submission:
    envelope = Envelope(
        mail_from=SMTPPath(Mailbox("a", "example.test")),
        mail_parameters=MailParameters(),
        recipients=tuple(
            Recipient(path=SMTPPath(Mailbox(local, "example.test"))) for local in locals_
        ),
        size=len(MESSAGE),
    )
    return Submission(
        id="id1", identity="a", envelope=envelope, message=Message.from_bytes(MESSAGE)
    )


def files(root: Path, user: str, sub: str) -> list[str]:
    directory = root / user / sub
    return sorted(os.listdir(directory)) if directory.exists() else []


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_one_executor_call_per_single_recipient_message_in_sequence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_run = MaildirStore.run

    async def counting_run(self: MaildirStore, func: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(func, "__name__", repr(func)))
        return await real_run(self, func, *args, **kwargs)

    monkeypatch.setattr(MaildirStore, "run", counting_run)
    threads: list[Any] = []
    real_to_thread = asyncio.to_thread

    async def counting_to_thread(func: Any, *args: Any) -> Any:
        threads.append(func)
        return await real_to_thread(func, *args)

    monkeypatch.setattr(asyncio, "to_thread", counting_to_thread)
    delivery = MaildirDelivery(tmp_path / "{local}")

    async def main() -> None:
        for _ in range(3):
            assert locations(await delivery(submission("bob"))) == [str(tmp_path / "bob")]

    try:
        run(main())
    finally:
        delivery.close()
    assert calls == ["append_batch"] * 3
    assert len(threads) == 1  # the Maildir is opened once, off the loop
    new = files(tmp_path, "bob", "new")
    assert len(new) == 3 and files(tmp_path, "bob", "tmp") == []
    for name in new:
        assert ",S=" in name and ",W=" in name
        assert (tmp_path / "bob" / "new" / name).read_bytes() == MESSAGE.replace(b"\r\n", b"\n")


def test_the_message_is_fsynced_renamed_and_its_directory_fsynced_before_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename
    real_fsync_dir = _maildir_append.fsync_dir

    def fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # the directory's fsync is recorded below
            steps.append("fsync file")
        real_fsync(fd)

    def rename(src: Any, dst: Any) -> None:
        steps.append("rename into " + os.path.basename(os.path.dirname(dst)))
        real_rename(src, dst)

    def fsync_dir(path: str) -> None:
        steps.append("fsync dir " + os.path.basename(path))
        real_fsync_dir(path)

    delivery = MaildirDelivery(tmp_path / "{local}")

    async def main() -> None:
        await asyncio.to_thread(delivery._inbox, str(tmp_path / "bob"))  # set-up done
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "rename", rename)
        monkeypatch.setattr(_maildir_append, "fsync_dir", fsync_dir)
        await delivery(submission("bob"))
        steps.append("answered")

    try:
        run(main())
    finally:
        delivery.close()
    assert steps == ["fsync file", "rename into new", "fsync dir new", "answered"]


def test_a_failed_commit_raises_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery = MaildirDelivery(tmp_path / "{local}")

    def broken_rename(src: Any, dst: Any) -> None:
        raise OSError("disk on fire")

    async def main() -> None:
        await asyncio.to_thread(delivery._inbox, str(tmp_path / "bob"))
        monkeypatch.setattr(os, "rename", broken_rename)
        with pytest.raises(OSError, match="disk on fire"):
            await delivery(submission("bob"))

    try:
        run(main())
    finally:
        delivery.close()
    assert files(tmp_path, "bob", "tmp") == [] and files(tmp_path, "bob", "new") == []


def test_several_recipients_each_get_a_committed_copy(tmp_path: Path) -> None:
    delivery = MaildirDelivery(tmp_path / "{local}")

    async def main() -> list[str]:
        return locations(await delivery(submission("bob", "carol", "Bob")))

    try:
        directories = run(main())
    finally:
        delivery.close()
    assert directories == [str(tmp_path / "bob"), str(tmp_path / "carol"), str(tmp_path / "bob")]
    for user in ("bob", "carol"):
        assert len(files(tmp_path, user, "new")) == 1 and files(tmp_path, user, "tmp") == []


def test_concurrent_deliveries_all_land(tmp_path: Path) -> None:
    delivery = MaildirDelivery(tmp_path / "{local}", max_workers=4)

    async def main() -> None:
        await asyncio.gather(*(delivery(submission("bob")) for _ in range(40)))

    try:
        run(main())
    finally:
        delivery.close()
    # (Opening the folder may move what new/ holds to cur/: both are delivered.)
    delivered = files(tmp_path, "bob", "new") + files(tmp_path, "bob", "cur")
    assert len(delivered) == 40 and files(tmp_path, "bob", "tmp") == []


# --- the store's batch append (mailagents/store/maildir.py) ----------------------------


def test_append_batch_fsyncs_every_file_then_the_directory_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MaildirStore(tmp_path / "m")
    inbox = store.folder("INBOX")
    steps: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename
    real_fsync_dir = _maildir_append.fsync_dir

    def fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            steps.append("fsync")
        real_fsync(fd)

    def rename(src: Any, dst: Any) -> None:
        steps.append("rename")
        real_rename(src, dst)

    def fsync_dir(path: str) -> None:
        steps.append("fsync " + os.path.basename(path))
        real_fsync_dir(path)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(_maildir_append, "fsync_dir", fsync_dir)
    try:
        outcomes = inbox.append_batch([MESSAGE, b"two\r\n", b"three\n"])
    finally:
        inbox.close()
        store.close()
    # Every file is fsynced before it is renamed into new/, and new/ is fsynced after
    # the last rename and before any result is returned: the message's data and inode
    # are on disk before its name can be, and its name before the 250. All fsyncs come
    # before the first rename (ext4 without a journal writes tmp/ with the fsync of a
    # file newly created in it; see MaildirFolder.append_batch): that changes no
    # file's own order, so the durability argument is the same as fsync-rename in turn.
    assert steps == ["fsync"] * 3 + ["rename"] * 3 + ["fsync new"]
    sizes = [o.size for o in outcomes if not isinstance(o, Exception)]
    assert sizes == [len(MESSAGE), 5, 7]  # CRLF sizes
    assert all(not isinstance(o, Exception) and o.uid is None for o in outcomes)
    assert len(os.listdir(tmp_path / "m" / "new")) == 3
    assert os.listdir(tmp_path / "m" / "tmp") == []


def test_append_batch_reports_each_failure_in_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MaildirStore(tmp_path / "m")
    inbox = store.folder("INBOX")
    real_rename = os.rename
    calls = 0

    def rename(src: Any, dst: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("second rename fails")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    try:
        outcomes = inbox.append_batch([b"one\r\n", b"two\r\n", b"three\r\n"])
        assert [isinstance(o, Exception) for o in outcomes] == [False, True, False]
        assert "second rename fails" in str(outcomes[1])
        assert len(os.listdir(tmp_path / "m" / "new")) == 2
        assert os.listdir(tmp_path / "m" / "tmp") == []

        def broken_fsync_dir(path: str) -> None:
            raise OSError("directory fsync fails")

        monkeypatch.setattr(_maildir_append, "fsync_dir", broken_fsync_dir)
        outcomes = inbox.append_batch([b"four\r\n", b"five\r\n"])
        assert all(isinstance(o, OSError) and "directory" in str(o) for o in outcomes)
        assert inbox.append_batch([]) == []
    finally:
        inbox.close()
        store.close()


def test_concurrent_deliveries_share_batches(tmp_path: Path) -> None:
    delivery = MaildirDelivery(tmp_path / "{local}", max_batches=1, max_batch=8)
    batches: list[int] = []
    real_append_batch = maildir_module.MaildirFolder.append_batch

    def counting(self: Any, messages: Any) -> Any:
        batches.append(len(messages))
        return real_append_batch(self, messages)

    async def main() -> None:
        await delivery(submission("bob"))  # opens the Maildir
        batches.clear()
        await asyncio.gather(*(delivery(submission("bob")) for _ in range(20)))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(maildir_module.MaildirFolder, "append_batch", counting)
        try:
            run(main())
        finally:
            delivery.close()
    assert sum(batches) == 20 and max(batches) <= 8 and len(batches) < 20
    delivered = files(tmp_path, "bob", "new") + files(tmp_path, "bob", "cur")
    assert len(delivered) == 21


def test_a_cancelled_delivery_is_not_written_and_others_go_on(tmp_path: Path) -> None:
    delivery = MaildirDelivery(tmp_path / "{local}", max_batches=1)

    async def main() -> None:
        await delivery(submission("bob"))
        first = asyncio.ensure_future(delivery(submission("bob")))
        second = asyncio.ensure_future(delivery(submission("bob")))
        third = asyncio.ensure_future(delivery(submission("bob")))
        await asyncio.sleep(0)  # all three queued; the first batch takes the first
        third.cancel()
        await asyncio.gather(first, second)
        assert third.cancelled()

    try:
        run(main())
    finally:
        delivery.close()
    delivered = files(tmp_path, "bob", "new") + files(tmp_path, "bob", "cur")
    assert len(delivered) == 3


def test_batch_limits_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        MaildirDelivery(tmp_path, max_batches=0)
    with pytest.raises(ValueError):
        MaildirDelivery(tmp_path, max_batch=0)


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_restarted_delivery_leaves_earlier_messages_in_new(tmp_path: Path, writer: str) -> None:
    # Regression: the delivery opened INBOX as a reader, which moves new/ to cur/, so
    # after a restart every message delivered before it stopped showing as new mail.
    async def deliver_once() -> None:
        delivery = MaildirDelivery(tmp_path / "{local}", writer=writer)  # type: ignore[arg-type]
        try:
            await delivery(submission("bob"))
        finally:
            await delivery.aclose()

    run(deliver_once())
    run(deliver_once())
    assert len(files(tmp_path, "bob", "new")) == 2
    assert files(tmp_path, "bob", "cur") == []


def test_a_closed_delivery_delivers_again_in_the_same_loop(tmp_path: Path) -> None:
    # Regression: the Maildir's batch group kept the store and INBOX of its first
    # delivery; after close() (which closes them) every later single-recipient
    # delivery in that event loop failed on the closed store.
    delivery = MaildirDelivery(tmp_path / "{local}")

    async def main() -> None:
        await delivery(submission("bob"))
        await asyncio.to_thread(delivery.close)
        await delivery(submission("bob"))
        await asyncio.gather(*(delivery(submission("bob")) for _ in range(5)))

    try:
        run(main())
    finally:
        delivery.close()
    assert len(files(tmp_path, "bob", "new")) == 7 and files(tmp_path, "bob", "tmp") == []


def test_maildir_paths_are_confined(tmp_path: Path) -> None:
    delivery = MaildirDelivery(tmp_path / "{domain}" / "{local}")
    path = delivery.maildir(Mailbox(local_part="../../etc/x", domain="Example.TEST"))
    assert path == os.path.join(tmp_path, "example.test", "%2E.%2F..%2Fetc%2Fx")
    assert delivery.maildir(Mailbox(local_part="a%2Fb", domain="x.test")).endswith("a%252fb")
    quoted = delivery.maildir(Mailbox(local_part='a "b" c', domain="[192.0.2.1]"))
    assert quoted == os.path.join(tmp_path, "%5B192.0.2.1%5D", "a%20%22b%22%20c")


def test_the_open_inboxes_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: MaildirDelivery kept every Maildir it ever delivered to open."""
    from mailagents.agents import _maildir_delivery as mda

    monkeypatch.setattr(mda, "_MAX_INBOXES", 2)
    delivery = MaildirDelivery(tmp_path / "{local}", fsync=False)

    async def main() -> None:
        for n in range(6):
            await delivery(submission(f"user{n}"))

    try:
        run(main())
        assert len(delivery._inboxes) == 2
        for n in range(6):
            assert len(files(tmp_path, f"user{n}", "new")) == 1
    finally:
        delivery.close()


def test_a_shared_resolver_is_used_and_left_open(tmp_path: Path) -> None:
    from mailagents.store import StoreResolver

    stores = StoreResolver(tmp_path / "{local}", fsync=False)
    delivery = MaildirDelivery(stores)
    try:
        run(delivery(submission("bob", "carol")))
        delivery.close()
        bob = stores.open("bob@example.test")
        assert len(bob.folder("INBOX").messages()) == 1  # the delivery's store, still open
        assert run(bob.run(lambda: "alive")) == "alive"
    finally:
        stores.close()
    with pytest.raises(ValueError):
        MaildirDelivery(StoreResolver(tmp_path / "{local}", format="mbox"))


def test_the_inbox_used_last_stays_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a delivery to an open INBOX did not mark it used, so the bound
    dropped the busiest Maildir first."""
    from mailagents.agents import _maildir_delivery as mda

    monkeypatch.setattr(mda, "_MAX_INBOXES", 2)
    delivery = MaildirDelivery(tmp_path / "{local}", fsync=False)

    async def main() -> None:
        for local in ("a", "b", "a", "c"):
            await delivery(submission(local))

    try:
        run(main())
        assert list(delivery._inboxes) == [str(tmp_path / "a"), str(tmp_path / "c")]
    finally:
        delivery.close()
