"""mailagents.agents.MRA against our own MAA (POP3 and IMAP over a Maildir), into a
MaildirDelivery: every ``after`` mode (IMAP keep, seen, delete, move with and without
MOVE and UIDPLUS; POP3 keep and delete), several folders, the size and per-pass
limits. Every test is bounded in time.

The harness (``serving``, ``Remote``, ``local``, ``account``, ``make_mra``) is shared
by the other ``test_mra_*`` files."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailagents.agents import IMAP_EXTENSIONS, MAA, MRA, Account, MaildirDelivery, imap_config
from mailagents.aio import make_self_signed
from mailagents.aio.imap_client import IMAPClient
from mailagents.delivery import Deliver
from mailagents.imap import ServerConfig as IMAPConfig
from mailagents.store import MaildirStore, MboxStore, MessageInfo, Store
from mailagents.userdb import PasswordFile

T = TypeVar("T")
TIMEOUT = 30.0
CERT = make_self_signed(["localhost"])
LOCAL_USER = "bob@local.test"


def run(coro: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
    """One test coroutine on a fresh loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def message(n: int, *, pad: int = 0, message_id: bool = True) -> bytes:
    head = f"Message-ID: <{n}@remote.test>\r\n" if message_id else ""
    padding = ("x" * 70 + "\r\n") * (pad // 72)
    return f"{head}Subject: m{n}\r\n\r\nbody {n}\r\n{padding}".encode()


def body_number(data: bytes) -> int:
    """The ``n`` of a message made by :func:`message`."""
    body = data.split(b"\r\n\r\n", 1)[1]
    return int(body.split(b"\r\n", 1)[0].removeprefix(b"body "))


class Remote:
    """alice's remote Maildir (or another user's), the one the MAA serves."""

    def __init__(self, root: Path, user: str = "alice", *, mbox: bool = False) -> None:
        self.path = root / "remote" / user / "Maildir"
        self.mbox = mbox

    def store(self) -> Store:
        if self.mbox:
            return MboxStore(self.path, fsync=False)
        return MaildirStore(self.path, fsync=False)

    def put(self, *numbers: int, folder: str = "INBOX", pad: int = 0,
            flags: Sequence[str] = (), message_id: bool = True) -> list[int]:
        with self.store() as store:
            if folder not in {f.name for f in store.folders()}:
                store.create_folder(folder)
            with store.folder(folder) as box:
                return [box.append_bytes(message(n, pad=pad, message_id=message_id),
                                         flags=flags).uid or 0 for n in numbers]

    def create(self, folder: str) -> None:
        with self.store() as store:
            store.create_folder(folder)

    def infos(self, folder: str = "INBOX") -> list[MessageInfo]:
        with self.store() as store, store.folder(folder) as box:
            box.refresh()
            return box.messages()

    def numbers(self, folder: str = "INBOX") -> list[int]:
        with self.store() as store, store.folder(folder) as box:
            box.refresh()
            return sorted(body_number(box.read_message(m.uid)) for m in box.messages())

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self.store() as store, store.folder(folder) as box:
            return box.status().uidvalidity


def local_path(root: Path, user: str = LOCAL_USER) -> Path:
    return root / "local" / user / "Maildir"


def local_messages(root: Path, user: str = LOCAL_USER) -> list[bytes]:
    path = local_path(root, user)
    if not path.exists():
        return []
    with MaildirStore(path) as store, store.folder("INBOX") as inbox:
        return [inbox.read_message(m.uid) for m in inbox.messages()]


def local_numbers(root: Path, user: str = LOCAL_USER) -> list[int]:
    """The numbers of the messages delivered locally, sorted (duplicates show)."""
    return sorted(body_number(m) for m in local_messages(root, user))


@contextlib.asynccontextmanager
async def serving(root: Path, **options: Any) -> AsyncIterator[MAA]:
    """Our MAA over ``root/remote/{user}/Maildir`` on 127.0.0.1, POP3 and IMAP without
    TLS (plaintext logins allowed) and with implicit TLS (the self-signed ``CERT``)."""
    users = PasswordFile(root / "users", scrypt_n=2**8)
    for user in ("alice", "carol"):
        users.set_password(user, "pw")
    options.setdefault("allow_plaintext", True)
    try:
        maa = MAA("h", users, str(root / "remote" / "{user}" / "Maildir"),
                  ssl_context=CERT.server_context(), fsync=False, **options)
        async with maa:
            await maa.serve("127.0.0.1", 0, 0, 0, 0)
            yield maa
    finally:
        users.close()


@contextlib.asynccontextmanager
async def local(root: Path) -> AsyncIterator[MaildirDelivery]:
    delivery = MaildirDelivery(str(root / "local" / "{user}" / "Maildir"), fsync=False)
    try:
        yield delivery
    finally:
        delivery.close()


def account(maa: MAA | None, protocol: str, **options: Any) -> Account:
    """alice's account on ``maa`` without TLS (``port`` given: on another server)."""
    if "port" not in options:
        assert maa is not None
        options["port"] = maa.pop3_port if protocol == "pop3" else maa.imap_port
    options.setdefault("name", f"{protocol}-{options.get('after', 'keep')}")
    options.setdefault("tls", "none")
    options.setdefault("recipients", (LOCAL_USER,))
    options.setdefault("timeout", 10.0)
    return Account(protocol=protocol, host="127.0.0.1", user="alice",  # type: ignore[arg-type]
                   password="pw", **options)


def make_mra(root: Path, accounts: Sequence[Account], deliver: Deliver | None,
             **options: Any) -> MRA:
    return MRA(accounts, deliver, state_dir=root / "state", fsync=False, **options)


def state_of(mra: MRA, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(mra.state_file(name)).read_text())
    return data


def without(*names: str) -> IMAPConfig:
    """The MAA's IMAP configuration without the extensions ``names``."""
    return imap_config(extensions=tuple(e for e in dict.fromkeys(IMAP_EXTENSIONS)
                                        if e not in names))


# --- keep and delete, both protocols ----------------------------------------------------


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
@pytest.mark.parametrize("after", ["keep", "delete"])
def test_fetch_then_nothing_new(tmp_path: Path, protocol: str, after: str) -> None:
    remote = Remote(tmp_path)
    remote.put(1, 2, 3)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            mra = make_mra(tmp_path, [account(maa, protocol, after=after)], delivery)
            first, = await mra.run_once()
            assert first.error is None and len(first.fetched) == 3
            assert first.removed == (3 if after == "delete" else 0)
            again, = await mra.run_once()
            assert again.fetched == () and again.error is None and again.removed == 0
            remote.put(4)
            third, = await mra.run_once()
            assert len(third.fetched) == 1

    run(main())
    assert local_numbers(tmp_path) == [1, 2, 3, 4]
    assert remote.numbers() == ([] if after == "delete" else [1, 2, 3, 4])


def test_imap_keep_leaves_flags_alone(tmp_path: Path) -> None:
    """keep: EXAMINE and BODY.PEEK, so no \\Seen appears on the server."""
    remote = Remote(tmp_path)
    remote.put(1, 2)
    remote.put(3, flags=["\\Flagged"])

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            mra = make_mra(tmp_path, [account(maa, "imap")], delivery)
            report, = await mra.run_once()
            assert len(report.fetched) == 3 and report.removed == 0

    run(main())
    assert [set(i.flags) for i in remote.infos()] == [set(), set(), {"\\Flagged"}]
    assert local_numbers(tmp_path) == [1, 2, 3]


def test_imap_seen(tmp_path: Path) -> None:
    remote = Remote(tmp_path)
    remote.put(1, 2)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            mra = make_mra(tmp_path, [account(maa, "imap", after="seen")], delivery)
            first, = await mra.run_once()
            assert len(first.fetched) == 2 and first.removed == 0
            assert all("\\Seen" in i.flags for i in remote.infos())
            remote.put(3)
            second, = await mra.run_once()
            assert [f.rsplit("/", 1)[1] for f in second.fetched] == ["3"]

    run(main())
    assert [("\\Seen" in i.flags) for i in remote.infos()] == [True, True, True]
    assert remote.numbers() == [1, 2, 3]
    assert local_numbers(tmp_path) == [1, 2, 3]


def test_imap_delete_with_uidplus_spares_other_deleted_messages(tmp_path: Path) -> None:
    """UID EXPUNGE of our UIDs only: a message the user marked \\Deleted (too large
    for us, so not fetched) is not expunged with ours."""
    remote = Remote(tmp_path)
    remote.put(1, 2)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            mra = make_mra(tmp_path, [account(maa, "imap", after="delete", max_size=1000)],
                           delivery)
            remote.put(9, pad=2000, flags=["\\Deleted"])  # too large: not ours
            report, = await mra.run_once()
            assert report.removed == 2 and len(report.skipped) == 1

    run(main())
    assert remote.numbers() == [9]
    assert local_numbers(tmp_path) == [1, 2]


def test_imap_delete_without_uidplus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No UIDPLUS: \\Deleted then a plain EXPUNGE (which also removes what the user had
    marked \\Deleted: RFC 9051 §6.4.3)."""
    remote = Remote(tmp_path)
    remote.put(1, 2)
    remote.put(9, pad=2000, flags=["\\Deleted"])
    expunged: list[object] = []
    original = IMAPClient.expunge

    async def spy(self: IMAPClient, uids: Any = None) -> Any:
        expunged.append(uids)
        return await original(self, uids)

    monkeypatch.setattr(IMAPClient, "expunge", spy)

    async def main() -> None:
        async with serving(tmp_path, imap_config=without("UIDPLUS")) as maa, \
                local(tmp_path) as delivery:
            mra = make_mra(tmp_path, [account(maa, "imap", after="delete", max_size=1000)],
                           delivery)
            report, = await mra.run_once()
            assert report.removed == 2 and len(report.skipped) == 1

    run(main())
    assert expunged == [None]
    assert remote.numbers() == []
    assert local_numbers(tmp_path) == [1, 2]


@pytest.mark.parametrize("missing", [(), ("MOVE",), ("MOVE", "UIDPLUS")])
def test_imap_move(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   missing: tuple[str, ...]) -> None:
    """move: MOVE where offered, else COPY, \\Deleted and (UID) EXPUNGE."""
    remote = Remote(tmp_path)
    remote.put(1, 2, 3)
    remote.create("Archive")
    calls: list[str] = []
    for name in ("move", "copy"):
        original = getattr(IMAPClient, name)

        async def spy(self: IMAPClient, *args: Any, _name: str = name, _original: Any = original,
                      **kwargs: Any) -> Any:
            calls.append(_name)
            return await _original(self, *args, **kwargs)

        monkeypatch.setattr(IMAPClient, name, spy)

    async def main() -> None:
        async with serving(tmp_path, imap_config=without(*missing)) as maa, \
                local(tmp_path) as delivery:
            mra = make_mra(tmp_path, [account(maa, "imap", after="move", move_to="Archive")],
                           delivery)
            first, = await mra.run_once()
            assert len(first.fetched) == 3 and first.removed == 3
            again, = await mra.run_once()
            assert again.fetched == () and again.removed == 0

    run(main())
    assert calls == (["copy"] if "MOVE" in missing else ["move"])
    assert remote.numbers() == []
    assert remote.numbers("Archive") == [1, 2, 3]
    assert all("\\Deleted" not in i.flags for i in remote.infos("Archive"))
    assert local_numbers(tmp_path) == [1, 2, 3]


def test_imap_move_to_a_missing_folder_loses_nothing(tmp_path: Path) -> None:
    """The MOVE fails (no such folder): the pass reports it, the messages stay on the
    server and are remembered (not fetched twice); once the folder exists the next
    pass moves them."""
    remote = Remote(tmp_path)
    remote.put(1, 2)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            mra = make_mra(tmp_path, [account(maa, "imap", after="move", move_to="Archive")],
                           delivery)
            first, = await mra.run_once()
            assert first.error is not None and first.removed == 0
            assert remote.numbers() == [1, 2]
            assert local_numbers(tmp_path) == [1, 2]
            remote.create("Archive")
            second, = await mra.run_once()
            assert second.error is None and second.fetched == () and second.removed == 2

    run(main())
    assert remote.numbers() == [] and remote.numbers("Archive") == [1, 2]
    assert local_numbers(tmp_path) == [1, 2]


def test_move_to_a_fetched_folder_is_refused() -> None:
    """Moving into a folder the account also fetches would fetch each message twice."""
    with pytest.raises(ValueError, match="move_to"):
        account(None, "imap", port=143, after="move", move_to="Archive",
                folders=("INBOX", "Archive"))


def test_pop3_refuses_imap_modes() -> None:
    for after in ("seen", "move"):
        with pytest.raises(ValueError, match="POP3"):
            account(None, "pop3", port=110, after=after,
                    move_to="x" if after == "move" else None)


# --- folders ------------------------------------------------------------------------------


def test_several_folders(tmp_path: Path) -> None:
    remote = Remote(tmp_path)
    remote.put(1, 2)
    remote.put(3, folder="Lists")
    remote.put(4, folder="Lists/python")
    remote.put(5, folder="Other")  # not fetched

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            mra = make_mra(tmp_path, [account(maa, "imap", after="delete",
                                              folders=("INBOX", "Lists", "Lists/python"))],
                           delivery)
            first, = await mra.run_once()
            assert first.error is None and first.removed == 4
            assert [f.split("/")[0] for f in first.fetched] == ["INBOX", "INBOX", "Lists", "Lists"]
            assert first.fetched[-1].startswith("Lists/python/")
            state = state_of(mra, "imap-delete")
            assert sorted(state["folders"]) == ["INBOX", "Lists", "Lists/python"]
            assert all(f["uids"] != "" for f in state["folders"].values())
            remote.put(6, folder="Lists")
            second, = await mra.run_once()
            assert [f.split("/")[0] for f in second.fetched] == ["Lists"]
            # Expunged on the server: pruned from the memory by the next pass.
            state = state_of(mra, "imap-delete")
            folders = state["folders"]
            assert folders["INBOX"]["uids"] == folders["Lists/python"]["uids"] == ""

    run(main())
    assert local_numbers(tmp_path) == [1, 2, 3, 4, 6]
    assert remote.numbers("Other") == [5]
    assert remote.numbers("INBOX") == remote.numbers("Lists") == []


def test_a_missing_folder_is_reported_and_the_others_fetched(tmp_path: Path) -> None:
    remote = Remote(tmp_path)
    remote.put(1)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            mra = make_mra(tmp_path, [account(maa, "imap", folders=("INBOX", "Nowhere"))],
                           delivery)
            report, = await mra.run_once()
            assert report.error is not None and "Nowhere" in report.error
            assert len(report.fetched) == 1  # INBOX's, reported and remembered
            remote.put(2, folder="Nowhere")
            again, = await mra.run_once()
            assert again.error is None and [f.split("/")[0] for f in again.fetched] == [
                "Nowhere"]

    run(main())
    assert local_numbers(tmp_path) == [1, 2]


# --- limits -------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_max_size(tmp_path: Path, protocol: str) -> None:
    """Too large: left on the server and reported at each pass, never remembered, so
    fetched once the limit is raised."""
    remote = Remote(tmp_path)
    remote.put(1)
    remote.put(2, pad=5000)
    remote.put(3)
    size = next(i.size for i in remote.infos() if i.size > 5000)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            small = account(maa, protocol, after="delete", max_size=4000)
            mra = make_mra(tmp_path, [small], delivery)
            for _ in range(2):
                report, = await mra.run_once()
                skipped, = report.skipped
                assert skipped.size == size and "too large" in skipped.reason
                assert str(size) in skipped.reason and "4000" in skipped.reason
                assert skipped.folder == (None if protocol == "pop3" else "INBOX")
            assert local_numbers(tmp_path) == [1, 3]
            assert remote.numbers() == [2]
            state = json.dumps(state_of(mra, small.name))
            assert skipped.id not in state or protocol == "imap"
            if protocol == "imap":
                assert state_of(mra, small.name)["folders"]["INBOX"]["uids"] == ""
            larger = account(maa, protocol, after="delete", max_size=size)
            report, = await make_mra(tmp_path, [larger], delivery).run_once()
            assert len(report.fetched) == 1 and report.skipped == () and report.removed == 1

    run(main())
    assert local_numbers(tmp_path) == [1, 2, 3]
    assert remote.numbers() == []


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
@pytest.mark.parametrize("after", ["keep", "delete"])
def test_max_messages(tmp_path: Path, protocol: str, after: str) -> None:
    remote = Remote(tmp_path)
    remote.put(*range(1, 8))

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            mra = make_mra(tmp_path, [account(maa, protocol, after=after, max_messages=3)],
                           delivery)
            lefts = []
            for _ in range(4):
                report, = await mra.run_once()
                assert report.error is None
                lefts.append((len(report.fetched), report.left))
            assert lefts == [(3, 4), (3, 1), (1, 0), (0, 0)]

    run(main())
    assert local_numbers(tmp_path) == list(range(1, 8))
    assert remote.numbers() == ([] if after == "delete" else list(range(1, 8)))


def test_max_messages_counts_across_folders(tmp_path: Path) -> None:
    remote = Remote(tmp_path)
    remote.put(1, 2)
    remote.put(3, 4, folder="Lists")

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            mra = make_mra(tmp_path, [account(maa, "imap", max_messages=3,
                                              folders=("INBOX", "Lists"))], delivery)
            first, = await mra.run_once()
            assert len(first.fetched) == 3 and first.left == 1
            second, = await mra.run_once()
            assert [f.split("/")[0] for f in second.fetched] == ["Lists"] and second.left == 0

    run(main())
    assert local_numbers(tmp_path) == [1, 2, 3, 4]


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_a_large_message_streams_whole(tmp_path: Path, protocol: str) -> None:
    remote = Remote(tmp_path)
    remote.put(1, pad=300_000)
    remote.put(2)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            report, = await make_mra(tmp_path, [account(maa, protocol)], delivery).run_once()
            assert report.error is None and len(report.fetched) == 2

    run(main())
    assert sorted(local_messages(tmp_path), key=len) == [message(2), message(1, pad=300_000)]



def test_a_folder_with_a_non_ascii_name(tmp_path: Path) -> None:
    remote = Remote(tmp_path)
    remote.put(1, folder="Entwürfe")
    remote.put(2, folder="Archiv/Ärger")

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            acct = account(maa, "imap", name="wörk", after="move", move_to="Archiv/Ärger",
                           folders=("Entwürfe",))
            mra = make_mra(tmp_path, [acct], delivery)
            report, = await mra.run_once()
            assert report.error is None and report.fetched[0].startswith("Entwürfe/")
            assert list(state_of(mra, "wörk")["folders"]) == ["Entwürfe"]
            again, = await mra.run_once()
            assert again.fetched == ()

    run(main())
    assert local_numbers(tmp_path) == [1]
    assert remote.numbers("Archiv/Ärger") == [1, 2]


@pytest.mark.parametrize(("protocol", "after"), [
    ("pop3", "keep"), ("pop3", "delete"), ("imap", "keep"), ("imap", "delete"),
    ("imap", "move")])
def test_over_an_mbox_store(tmp_path: Path, protocol: str, after: str) -> None:
    remote = Remote(tmp_path, mbox=True)
    remote.put(1, 2)
    remote.create("Archive")

    async def main() -> None:
        async with serving(tmp_path, mailbox_format="mbox") as maa, \
                local(tmp_path) as delivery:
            acct = account(maa, protocol, after=after,
                           move_to="Archive" if after == "move" else None)
            mra = make_mra(tmp_path, [acct], delivery)
            first, = await mra.run_once()
            assert first.error is None and len(first.fetched) == 2
            remote.put(3)
            second, = await mra.run_once()
            assert second.error is None and len(second.fetched) == 1

    run(main())
    assert local_numbers(tmp_path) == [1, 2, 3]
    assert remote.numbers() == ([1, 2, 3] if after == "keep" else [])
    assert remote.numbers("Archive") == ([1, 2, 3] if after == "move" else [])

