"""The MRA's state file (mailagents/agents/_mra_state.py): missing (a fresh memory),
unreadable (StateError, never a silent fresh start), the round trip, the atomic
replace, the file names, the digests; and over our MAA, the pruning of UIDLs and UIDs
no longer on the server, and a pass refused on a broken state file."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.agents._mra_state import (
    AccountMemory,
    FolderMemory,
    StateError,
    digest,
    state_path,
)
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


def test_missing_file_is_a_fresh_memory(tmp_path: Path) -> None:
    memory = AccountMemory.load(str(tmp_path / "nope.json"))
    assert memory.uidls == set() and memory.folders == {}
    assert not (tmp_path / "nope.json").exists()


@pytest.mark.parametrize("content", [
    b"", b"not json", b"[1, 2]", b'{"version": 2}', b'{"uidls": []}',
    b'{"version": 1, "uidls": "abc"}', b'{"version": 1, "uidls": [1]}',
    b'{"version": 1, "folders": []}', b'{"version": 1, "folders": {"INBOX": 3}}',
    b'{"version": 1, "folders": {"INBOX": {"uidvalidity": "x"}}}',
    b'{"version": 1, "folders": {"INBOX": {"uids": "1:*"}}}',
    b'{"version": 1, "folders": {"INBOX": {"uids": "a"}}}',
    b'{"version": 1, "folders": {"INBOX": {"digests": []}}}',
    b'{"version": 1, "folders": {"INBOX": {"digests": {"x": "d"}}}}',
    b"\xff\xfe garbage",
])
def test_unreadable_state_raises(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(content)
    with pytest.raises(StateError, match=str(path)):
        AccountMemory.load(str(path))


def test_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "sub" / "s.json")  # the folder is made
    memory = AccountMemory(path=path, fsync=False)
    memory.uidls = {"a", "b c", "ünï"}
    inbox = memory.folder("INBOX")
    inbox.uidvalidity = 77
    inbox.uids = {1, 2, 3, 7, 9, 10}
    inbox.digests = {7: "d7", 9: "d9"}
    memory.folder("Lists/python").uidvalidity = 5
    memory.save()
    data = json.loads(Path(path).read_text())
    assert data["version"] == 1
    assert data["folders"]["INBOX"]["uids"] == "1:3,7,9:10"
    again = AccountMemory.load(path)
    assert again.uidls == memory.uidls
    assert again.folders == memory.folders


@given(st.sets(st.integers(1, 2**32 - 1), max_size=50),
       st.dictionaries(st.integers(1, 2**32 - 1), st.text(min_size=1, max_size=5), max_size=5))
def test_folder_round_trip(uids: set[int], digests: dict[int, str]) -> None:
    folder = FolderMemory(uidvalidity=1, uids=uids, digests=digests)
    assert FolderMemory.from_json(json.loads(json.dumps(folder.to_json()))) == folder


def test_atomic_replace_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    memory = AccountMemory(path=str(path))  # with fsync, as in real use
    inode = None
    for n in range(5):
        memory.uidls.add(str(n))
        memory.save()
        assert os.listdir(tmp_path) == ["s.json"]
        stat = path.stat()
        assert stat.st_ino != inode  # replaced by a rename, never rewritten in place
        inode = stat.st_ino
    assert AccountMemory.load(str(path)).uidls == {"0", "1", "2", "3", "4"}


def test_reset_and_keep_only() -> None:
    folder = FolderMemory(uidvalidity=3, uids={1, 2, 3}, digests={1: "a", 3: "c"})
    folder.keep_only([2, 3, 4])
    assert folder.uids == {2, 3} and folder.digests == {3: "c"}
    old = folder.reset(9)
    assert old == {"c": 3}
    assert folder == FolderMemory(uidvalidity=9)


def test_state_path_names() -> None:
    a = state_path("d", "work/mail")
    b = state_path("d", "work_mail")
    assert a != b and os.path.dirname(a) == "d" and "/" not in os.path.basename(a)
    assert state_path("d", "work") == state_path("d", "work")
    assert os.path.basename(state_path("d", "../..")).endswith(".json")
    assert os.path.dirname(state_path("d", "../..")) == "d"
    assert len(os.path.basename(state_path("d", "x" * 500))) < 100


def test_digest() -> None:
    assert digest(None, 10) is None and digest("", 10) is None and digest("<a@b>", None) is None
    assert digest("<a@b>", 10) == digest(" <a@b> ", 10)
    assert digest("<a@b>", 10) != digest("<a@b>", 11) != digest("<c@b>", 11)
    assert digest("<\udcff@b>", 1) is not None  # a raw octet from the wire


# --- over the MAA ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_gone_from_the_server_is_forgotten(tmp_path: Path, protocol: str) -> None:
    remote = Remote(tmp_path)
    remote.put(1, 2, 3)

    def remembered(mra_state: dict[str, object]) -> int:
        if protocol == "pop3":
            return len(mra_state["uidls"])  # type: ignore[arg-type]
        folders: dict[str, object] = mra_state["folders"]  # type: ignore[assignment]
        return len(FolderMemory.from_json(folders["INBOX"]).uids)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            acct = account(maa, protocol)
            mra = make_mra(tmp_path, [acct], delivery)
            await mra.run_once()
            assert remembered(state_of(mra, acct.name)) == 3
            with remote.store() as store, store.folder("INBOX") as box:
                second = box.messages()[1].uid  # another client removes 2
                box.set_flags([second], ["\\Deleted"], "add")
                box.expunge([second])
            assert remote.numbers() == [1, 3]
            report, = await mra.run_once()
            assert report.fetched == () and report.error is None, report
            assert remembered(state_of(mra, acct.name)) == 2

    run(main())
    assert local_numbers(tmp_path) == [1, 2, 3]


def test_a_broken_state_file_stops_the_account_only(tmp_path: Path) -> None:
    """Fetching without the memory would download everything again: the account with
    the broken file fails, the other one is fetched."""
    remote = Remote(tmp_path)
    remote.put(1)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            broken, fine = account(maa, "imap", name="broken"), account(maa, "pop3", name="ok")
            mra = make_mra(tmp_path, [broken, fine], delivery)
            Path(mra.state_file("broken")).parent.mkdir(parents=True)
            Path(mra.state_file("broken")).write_text("{oops")
            first, second = await mra.run_once()
            assert first.error is not None and "StateError" in first.error
            assert first.fetched == ()
            assert second.error is None and len(second.fetched) == 1

    run(main())
    assert local_numbers(tmp_path) == [1]


# --- one pass at a time ---------------------------------------------------------------------


def test_a_second_pass_over_a_busy_account_fails_at_once(tmp_path: Path) -> None:
    """Two MRAs over one state directory: while one is in a pass over an account, the
    other's pass over it fails (AccountBusy) instead of fetching the same messages."""
    remote = Remote(tmp_path)
    remote.put(1)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            entered, release = asyncio.Event(), asyncio.Event()

            async def slow(handoff: Any) -> Any:
                entered.set()
                await release.wait()
                return await delivery(handoff)

            acct = account(maa, "imap")
            first = asyncio.create_task(make_mra(tmp_path, [acct], slow).run_once())
            await asyncio.wait_for(entered.wait(), 10)
            busy, = await make_mra(tmp_path, [acct], delivery).run_once()
            assert busy.error is not None and "AccountBusy" in busy.error
            release.set()
            done, = await first
            assert done.error is None and len(done.fetched) == 1
            again, = await make_mra(tmp_path, [acct], delivery).run_once()
            assert again.error is None and again.fetched == ()

    run(main())
    assert local_numbers(tmp_path) == [1]


def test_a_lock_held_by_another_process(tmp_path: Path) -> None:
    Remote(tmp_path).put(1)
    acct_name = "imap-keep"

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            mra = make_mra(tmp_path, [account(maa, "imap")], delivery)
            lock = mra.state_file(acct_name) + ".lock"
            os.makedirs(os.path.dirname(lock), exist_ok=True)
            holder = await asyncio.create_subprocess_exec(
                sys.executable, "-c",
                "import fcntl, os, sys, time\n"
                "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX)\n"
                "print('held', flush=True)\n"
                "sys.stdin.read()\n",
                lock, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            try:
                assert holder.stdout is not None
                assert await asyncio.wait_for(holder.stdout.readline(), 10) == b"held\n"
                busy, = await mra.run_once()
                assert busy.error is not None and "locked" in busy.error
            finally:
                assert holder.stdin is not None
                holder.stdin.close()
                try:
                    await asyncio.wait_for(holder.wait(), 10)
                except TimeoutError:
                    holder.kill()
                    await holder.wait()
            report, = await mra.run_once()
            assert report.error is None and len(report.fetched) == 1

    run(main())
    assert local_numbers(tmp_path) == [1]
