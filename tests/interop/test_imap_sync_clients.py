"""Two-way sync by real clients, mbsync (isync) and offlineimap3, against our IMAP
server (StoreIMAPHandler over a Maildir store and over an mbox store) on 127.0.0.1:
a 2,000-message account (INBOX, Archive, Archive/2024, Entwürfe in modified UTF-7;
flags, keywords, \\Deleted, UID gaps; awkward contents) synced, synced again (nothing
may change on either side), then changed on both sides (new messages and folders,
flag changes, deletions, a flag changed behind the server's back) and synced once
more (both sides merged; contents and INTERNALDATEs kept).

During each plain-text run a reader in IDLE on INBOX checks what it is told (EXISTS,
EXPUNGE, FETCH) against the mailbox, and afterwards a QRESYNC client checks that
VANISHED (EARLIER) and the FETCH since its mark report every change the sync client
made. A smaller account is synced over implicit TLS and over STARTTLS."""

from __future__ import annotations

import imaplib
import os
import ssl
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailagents._mutf7 import encode_mutf7
from mailagents.aio.tls import make_self_signed
from mailagents.store import MaildirStore, MboxStore, Store

from ._imap_sync_server import (
    KEYWORDS,
    PASSWORD,
    SYSTEM,
    USER,
    Contents,
    Observer,
    State,
    add_local,
    change_flags_behind,
    expected,
    expected_contents,
    find_message,
    local_dates,
    local_state,
    maildir_files,
    marks,
    message,
    message_id,
    populate,
    qresync_check,
    server_dates,
    server_state,
    server_thread,
    server_uids,
    set_local_flags,
)
from .peers import require_binary

pytestmark = pytest.mark.interop

FOLDERS = {"INBOX": 1100, "Archive": 300, "Archive/2024": 400, "Entwürfe": 200}
"""2,000 messages (40 of them expunged on the server before the first sync)."""
RUN_TIMEOUT = 180.0
LOCAL_ARRIVAL = 1577934245.0  # 2020-01-02 03:04:05 UTC
NOT_MAILBOX = frozenset({"\\Noselect", "\\NonExistent"})


def make_store(kind: str, tmp_path: Path) -> Store:
    if kind == "maildir":
        return MaildirStore(tmp_path / "server" / "Maildir", fsync=False)
    return MboxStore(tmp_path / "server" / "mail", inbox=tmp_path / "server" / "inbox", fsync=False)


@pytest.fixture(params=["maildir", "mbox"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made = make_store(request.param, tmp_path)
    try:
        yield made
    finally:
        made.close()


def diff(got: State, want: State) -> list[str]:
    """What differs, briefly (for assertion messages)."""
    out = []
    for name in sorted(set(got) | set(want)):
        if name not in got or name not in want:
            out.append(f"folder {name!r} only in {'got' if name in got else 'want'}")
            continue
        g, w = got[name], want[name]
        for mid in sorted(set(g) | set(w)):
            if g.get(mid) != w.get(mid):
                out.append(f"{name}: {mid}: got {g.get(mid)}, want {w.get(mid)}")
    return out[:20]


def assert_state(got: State, want: State, side: str) -> None:
    assert got == want, f"{side}: " + "; ".join(diff(got, want))


@dataclass
class Client:
    """A sync client's configuration, written afresh for each run (the server's port
    changes), and how it ran."""

    base: Path
    tls: Path | None = None
    """The certificate to trust (the server then speaks TLS)."""
    starttls: bool = False
    """TLS by STARTTLS (else from the start, implicit TLS)."""
    outputs: list[str] = field(default_factory=list)
    told: list[Counter[str]] = field(default_factory=list)
    """Per run without TLS: what the reader in IDLE on INBOX was told."""

    @property
    def local(self) -> Path:
        return self.base / "local"

    def mutf7(self) -> bool:
        return False

    keywords = False
    """Whether the client syncs keywords from the server (offlineimap through its
    customflag_x; not back: a local letter goes up as ``STORE +FLAGS ()``, its
    combine_flags_and_keywords maps one way only)."""
    dates = False
    """Whether the client keeps INTERNALDATE as the local files' mtime, both ways
    (mbsync with CopyArrivalDate; offlineimap only uploads the mtime as the date)."""

    def command(self, port: int) -> list[str]:
        raise NotImplementedError

    def server_context(self) -> ssl.SSLContext:
        return CERT.server_context()

    def run(self, store: Store) -> str:
        ssl_context = None
        if self.tls is not None:
            ssl_context = self.server_context()
        before = marks(store)
        resynced: list[str] = []
        with server_thread(store, ssl_context=ssl_context, starttls=self.starttls) as port:
            # Without TLS, a reader in IDLE on INBOX watches the sync, and a QRESYNC
            # client asks afterwards what changed.
            observer = Observer(port) if self.tls is None else None
            try:
                done = subprocess.run(
                    self.command(port),
                    capture_output=True,
                    text=True,
                    timeout=RUN_TIMEOUT,
                    cwd=self.base,
                    env={**os.environ, "HOME": str(self.base)},
                )
            finally:
                view = observer.finish() if observer is not None else None
            if observer is not None and done.returncode == 0:
                resynced = qresync_check(port, before)
        output = done.stdout + done.stderr
        self.outputs.append(output)
        assert done.returncode == 0, output[-4000:]
        if observer is not None:
            assert not observer.errors, observer.errors[:10]
            self.told.append(observer.told)
            inbox = {
                uid: flags - {"\\Recent"} for uid, (flags, _) in server_uids(store)["INBOX"].items()
            }
            assert view == inbox, "the IDLE reader's view of INBOX is not the store's"
            assert not resynced, resynced
        return output

    def folder(self, name: str) -> Path:
        if self.mutf7():
            name = encode_mutf7(name)
        return self.local / name


CERT = make_self_signed(["localhost"])


class Mbsync(Client):
    dates = True

    def mutf7(self) -> bool:
        return True

    def command(self, port: int) -> list[str]:
        self.local.mkdir(exist_ok=True)
        if self.tls is not None:
            kind = "STARTTLS" if self.starttls else "IMAPS"
            transport = f"SSLType {kind}\nCertificateFile {self.tls}\n"
        else:
            transport = "SSLType None\n"
        # Sections are separated by blank lines (mbsync(1)).
        rc = self.base / "mbsyncrc"
        rc.write_text(
            f"IMAPAccount server\nHost localhost\nPort {port}\nUser {USER}\nPass {PASSWORD}\n"
            f"{transport}AuthMechs LOGIN\n\n"
            "IMAPStore server-far\nAccount server\n\n"
            f"MaildirStore server-near\nPath {self.local}/\nInbox {self.local}/INBOX\n"
            "SubFolders Verbatim\n\n"
            "Channel everything\nFar :server-far:\nNear :server-near:\nPatterns *\n"
            "Create Both\nExpunge Both\nRemove None\nSync All\nSyncState *\n"
            "CopyArrivalDate yes\n"
        )
        return ["mbsync", "-V", "-c", str(rc), "-a"]


class OfflineIMAP(Client):
    keywords = True

    def server_context(self) -> ssl.SSLContext:
        context = CERT.server_context()
        if self.starttls:
            # imaplib2 (offlineimap's IMAP library) restarts its reader thread right
            # after the STARTTLS handshake and writes CAPABILITY from another thread on
            # the same SSL object: when the TLS 1.3 session tickets the server sends
            # after the handshake are read at that moment, the CAPABILITY never
            # leaves the client (seen here about once in 20 runs; it then waits until
            # the server's 60 s pre-login timeout). The server sends no tickets (they
            # serve no IMAP client here anyway) so that the test is not flaky.
            context.num_tickets = 0
        return context

    def command(self, port: int) -> list[str]:
        self.local.mkdir(exist_ok=True)
        if self.tls is not None and self.starttls:
            transport = f"ssl = no\nstarttls = yes\nsslcacertfile = {self.tls}\n"
        elif self.tls is not None:
            transport = f"ssl = yes\nsslcacertfile = {self.tls}\n"
        else:
            transport = "ssl = no\nstarttls = no\n"
        rc = self.base / "offlineimaprc"
        rc.write_text(
            f"[general]\naccounts = server\nmetadata = {self.base / 'meta'}\n"
            "maxsyncaccounts = 1\nui = basic\n\n"
            "[Account server]\nlocalrepository = near\nremoterepository = far\n"
            "utf8foldernames = yes\n\n"
            f"[Repository near]\ntype = Maildir\nlocalfolders = {self.local}\nsep = /\n"
            + "".join(f"customflag_{k} = {v}\n" for k, v in KEYWORDS.items())
            + "\n"
            f"[Repository far]\ntype = IMAP\nremotehost = localhost\nremoteport = {port}\n"
            f"remoteuser = {USER}\nremotepass = {PASSWORD}\n{transport}maxconnections = 2\n"
        )
        return ["offlineimap", "-c", str(rc), "-o", "-u", "basic"]


def without_keywords(state: State) -> State:
    return {
        name: {mid: flags & SYSTEM for mid, flags in box.items()} for name, box in state.items()
    }


def check_dates(client: Client, store: Store) -> None:
    """Each local file's mtime is its message's INTERNALDATE on the server."""
    server = server_dates(store)
    local = local_dates(client.local, mutf7_names=client.mutf7())
    assert set(server) == set(local)
    for name, dates in server.items():
        assert set(dates) == set(local[name]), name
        wrong = [mid for mid, when in dates.items() if abs(local[name][mid] - when) > 1]
        assert not wrong, f"{name}: INTERNALDATE is not the local mtime for {wrong[:5]}"


def without_deleted(state: State) -> State:
    return {
        name: {mid: flags for mid, flags in box.items() if "\\Deleted" not in flags}
        for name, box in state.items()
    }


def change_server(client: Client, store: Store) -> None:
    """Through IMAP (imaplib): a new message in INBOX, \\Flagged set on one message and
    \\Seen cleared on another in Archive, one message expunged in Entwürfe, a new
    folder Lists/python with a message."""
    if client.tls is None:
        with server_thread(store) as port:
            imap = imaplib.IMAP4("localhost", port, timeout=30)
            _change_server(imap, client.keywords)
    else:
        context = CERT.client_context()
        with server_thread(
            store, ssl_context=client.server_context(), starttls=client.starttls
        ) as port:
            if client.starttls:
                imap = imaplib.IMAP4("localhost", port, timeout=30)
                assert "LOGINDISABLED" in imap.capabilities
                assert imap.starttls(context)[0] == "OK"
            else:
                imap = imaplib.IMAP4_SSL("localhost", port, ssl_context=context, timeout=30)
            _change_server(imap, client.keywords)


def _change_server(imap: imaplib.IMAP4, keywords: bool) -> None:
    try:
        assert imap.login(USER, PASSWORD)[0] == "OK"
        typ, _ = imap.append("INBOX", "(\\Seen)", None, message("INBOX", 1, tag=".far"))
        assert typ == "OK"
        assert imap.select("Archive")[0] == "OK"
        changes = [("2", "+FLAGS", "\\Flagged"), ("4", "-FLAGS", "\\Seen")]
        if keywords:
            changes += [("6", "+FLAGS", "$Forwarded"), ("13", "-FLAGS", "Work")]
        for number, command, flag in changes:
            typ, data = imap.uid(
                "SEARCH", "HEADER", "Message-ID", message_id("Archive", int(number))
            )
            assert typ == "OK" and data[0], data
            assert imap.uid("STORE", data[0].decode(), command, flag)[0] == "OK"
        assert imap.select(encode_mutf7("Entwürfe"))[0] == "OK"
        typ, data = imap.uid("SEARCH", "HEADER", "Message-ID", message_id("Entwürfe", 5))
        assert typ == "OK" and data[0], data
        uid = data[0].decode()
        assert imap.uid("STORE", uid, "+FLAGS.SILENT", "\\Deleted")[0] == "OK"
        assert imap.uid("EXPUNGE", uid)[0] == "OK"
        assert imap.create("Lists/python")[0] == "OK"
        new = message("Lists/python", 1, tag=".far")
        assert imap.append("Lists/python", "(\\Flagged)", None, new)[0] == "OK"
    except BaseException:
        imap.shutdown()
        raise
    imap.logout()


def apply_server_change(state: State, keywords: bool) -> None:
    state["INBOX"][message_id("INBOX", 1, tag=".far")] = frozenset({"\\Seen"})
    state["Archive"][message_id("Archive", 2)] |= {"\\Flagged"}
    state["Archive"][message_id("Archive", 4)] -= {"\\Seen"}
    if keywords:
        state["Archive"][message_id("Archive", 6)] |= {"$Forwarded"}
        state["Archive"][message_id("Archive", 13)] -= {"Work"}
    del state["Entwürfe"][message_id("Entwürfe", 5)]
    state["Lists/python"] = {message_id("Lists/python", 1, tag=".far"): frozenset({"\\Flagged"})}


def change_local(client: Client) -> None:
    """In the local Maildir, as a mail reader would: a new message in Archive/2024
    (its file's mtime the date to upload) and one in INBOX,
    \\Answered added to one message and \\Seen dropped from another in INBOX by
    renaming their files, one message of Archive/2024 deleted (its file removed), a
    new folder Projects with a message."""
    new = add_local(
        client.folder("Archive/2024"),
        message("Archive/2024", 1, tag=".near"),
        frozenset({"\\Seen", "\\Flagged"}),
    )
    os.utime(new, (LOCAL_ARRIVAL, LOCAL_ARRIVAL))
    inbox = client.folder("INBOX")
    add_local(inbox, message("INBOX", 1, tag=".near"))
    one = find_message(inbox, message_id("INBOX", 2))
    set_local_flags(one, frozenset({"\\Seen", "\\Answered"}))
    two = find_message(inbox, message_id("INBOX", 4))
    set_local_flags(two, frozenset())
    os.unlink(find_message(client.folder("Archive/2024"), message_id("Archive/2024", 8)))
    projects = client.folder("Projects")
    for sub in ("cur", "new", "tmp"):
        (projects / sub).mkdir(parents=True)
    add_local(projects, message("Projects", 1, tag=".near"), frozenset({"\\Seen"}))


def apply_local_change(state: State) -> None:
    state["Archive/2024"][message_id("Archive/2024", 1, tag=".near")] = frozenset(
        {"\\Seen", "\\Flagged"}
    )
    state["INBOX"][message_id("INBOX", 2)] = frozenset({"\\Seen", "\\Answered"})
    state["INBOX"][message_id("INBOX", 4)] = frozenset()
    state["INBOX"][message_id("INBOX", 1, tag=".near")] = frozenset()
    del state["Archive/2024"][message_id("Archive/2024", 8)]
    state["Projects"] = {message_id("Projects", 1, tag=".near"): frozenset({"\\Seen"})}


def drop_foreign(store: Store) -> dict[str, frozenset[str]]:
    """Two messages written into the server's Maildir INBOX by another program (as
    Dovecot's LDA or a hand ``mv`` would: LF line ends, no size in the name), one in
    new/, one in cur/ with flags; returns them as Message-ID → flags."""
    if not isinstance(store, MaildirStore):
        return {}
    root = Path(store.root)
    one, two = message("INBOX", 1, tag=".foreign"), message("INBOX", 2, tag=".foreign")
    (root / "new" / "1765000000.foreign1.otherhost").write_bytes(one.replace(b"\r\n", b"\n"))
    (root / "cur" / "1765000001.foreign2.otherhost:2,FS").write_bytes(two.replace(b"\r\n", b"\n"))
    return {
        message_id("INBOX", 1, tag=".foreign"): frozenset(),
        message_id("INBOX", 2, tag=".foreign"): frozenset({"\\Flagged", "\\Seen"}),
    }


def check_sides(client: Client, store: Store, want: State, when: str) -> None:
    """Both sides hold ``want`` (Message-IDs and flags), and the same contents."""
    server_contents: Contents = {}
    local_contents: Contents = {}
    assert_state(server_state(store, server_contents), want, f"server {when}")
    local = local_state(client.local, mutf7_names=client.mutf7(), contents=local_contents)
    assert_state(local, want if client.keywords else without_keywords(want), f"local {when}")
    for name, digests in server_contents.items():
        for mid, value in digests.items():
            assert local_contents[name][mid] == value, f"{name} {mid}: contents differ ({when})"


def sync_twice_then_merge(client: Client, store: Store, folders: dict[str, int]) -> None:
    account = populate(store, folders)
    want = expected(account)
    made = expected_contents(account)
    assert sum(len(box) for box in want.values()) == sum(folders.values()) - account.expunged
    want["INBOX"].update(drop_foreign(store))

    # 1. The first sync: the local side gets every message, with its flags and its
    # contents unchanged (but for line ends).
    client.run(store)
    want = without_deleted(want) if isinstance(client, Mbsync) else want
    check_sides(client, store, want, "after the first sync")
    if isinstance(client, Mbsync) and client.tls is None:
        # mbsync expunged INBOX's \\Deleted messages: the reader in IDLE heard of each.
        deleted = sum("\\Deleted" in flags for flags in expected(account)["INBOX"].values())
        assert deleted and client.told[0]["EXPUNGE"] == deleted, client.told
    if client.dates:
        check_dates(client, store)
    server_contents: Contents = {}
    server_state(store, server_contents)
    for name, digests in made.items():
        for mid, value in digests.items():
            if mid in want[name]:
                assert server_contents[name][mid] == value, f"{name} {mid} changed"

    # 2. Again: nothing changes on either side (UIDs, flags and MODSEQs on the
    # server; every message file's name and inode on the local side).
    server_before = server_uids(store)
    local_before = maildir_files(client.local)
    output = client.run(store)
    assert server_uids(store) == server_before, output[-2000:]
    assert maildir_files(client.local) == local_before, output[-2000:]

    # 3. A change on each side, then a sync merges them.
    change_server(client, store)
    change_local(client)
    apply_server_change(want, client.keywords)
    apply_local_change(want)
    if isinstance(store, MaildirStore):
        change_flags_behind(store, message_id("INBOX", 10), "F")
        want["INBOX"][message_id("INBOX", 10)] |= {"\\Flagged"}
    # CREATE Lists/python makes the parent too (RFC 9051 §6.3.4: SHOULD): a Maildir
    # store as a folder of its own (empty, selectable: synced as such), an mbox store
    # as a directory (\\Noselect: not a mailbox to sync).
    if any(f.name == "Lists" and not f.attributes & NOT_MAILBOX for f in store.list_folders()):
        want["Lists"] = {}
    client.run(store)
    if isinstance(client, OfflineIMAP):
        # offlineimap deletes on the server with STORE +FLAGS (\\Deleted) and a plain
        # EXPUNGE, which also removes the messages that had \\Deleted already in that
        # folder (RFC 9051 §6.4.3); their local copies go in the next run.
        local_want = {name: dict(box) for name, box in want.items()}
        want["Archive/2024"] = without_deleted(want)["Archive/2024"]
        assert_state(server_state(store), want, "server after the merge")
        local = local_state(client.local, mutf7_names=client.mutf7())
        assert_state(local, local_want, "local side after the merge")
        client.run(store)
    check_sides(client, store, want, "after the merge")
    if client.tls is None:
        # The flags the client set in INBOX, and its new message, were told in IDLE.
        assert client.told[2]["FETCH"] >= 2 and client.told[2]["EXISTS"] >= 1, client.told
    uploaded = server_dates(store)["Archive/2024"][message_id("Archive/2024", 1, tag=".near")]
    assert uploaded == LOCAL_ARRIVAL


@pytest.fixture
def mbsync() -> None:
    require_binary("mbsync")


@pytest.fixture
def offlineimap() -> None:
    require_binary("offlineimap")


SMALL = {"INBOX": 60, "Archive": 20, "Archive/2024": 20, "Entwürfe": 10}


@pytest.mark.usefixtures("mbsync")
def test_mbsync_syncs_both_ways(store: Store, tmp_path: Path) -> None:
    sync_twice_then_merge(Mbsync(tmp_path), store, FOLDERS)


@pytest.mark.usefixtures("offlineimap")
def test_offlineimap_syncs_both_ways(store: Store, tmp_path: Path) -> None:
    sync_twice_then_merge(OfflineIMAP(tmp_path), store, FOLDERS)


@pytest.mark.parametrize("starttls", [False, True], ids=["implicit", "starttls"])
@pytest.mark.usefixtures("mbsync")
def test_mbsync_over_tls(tmp_path: Path, starttls: bool) -> None:
    cert, _key = CERT.write(tmp_path / "tls")
    made = make_store("maildir", tmp_path)
    try:
        sync_twice_then_merge(Mbsync(tmp_path, tls=cert, starttls=starttls), made, SMALL)
    finally:
        made.close()


@pytest.mark.parametrize("starttls", [False, True], ids=["implicit", "starttls"])
@pytest.mark.usefixtures("offlineimap")
def test_offlineimap_over_tls(tmp_path: Path, starttls: bool) -> None:
    cert, _key = CERT.write(tmp_path / "tls")
    made = make_store("maildir", tmp_path)
    try:
        sync_twice_then_merge(OfflineIMAP(tmp_path, tls=cert, starttls=starttls), made, SMALL)
    finally:
        made.close()
