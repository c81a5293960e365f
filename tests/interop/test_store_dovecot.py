"""Dovecot and mailagents sharing one Maildir: the same messages, flags, keywords,
UIDs and UIDVALIDITY, whichever of the two wrote them."""

from __future__ import annotations

import imaplib
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailagents.store import ANSWERED, DELETED, FLAGGED, SEEN

from .peers import Dovecot, mail_tree, running_dovecot

pytestmark = pytest.mark.interop

FETCH = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\) RFC822\.SIZE (\d+)")


def message(i: int) -> bytes:
    return (
        b"From: a@example.test\r\nTo: b@example.test\r\nSubject: message %d\r\n\r\n"
        b"Body %d\r\nFrom the start\r\n.leading dot\r\n" % (i, i)
    )


@pytest.fixture
def tree() -> Iterator[Path]:
    path = mail_tree()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def imap_view(dovecot: Dovecot) -> tuple[int, dict[int, tuple[frozenset[str], int, bytes]]]:
    """UIDVALIDITY and uid -> (flags, size, body) as Dovecot serves them."""
    client = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
    try:
        client.login(dovecot.user, dovecot.password)
        typ, _ = client.select("INBOX", readonly=True)
        assert typ == "OK", dovecot.log()
        uidvalidity = int(client.response("UIDVALIDITY")[1][0])
        typ, data = client.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE BODY.PEEK[])")
        assert typ == "OK"
        view: dict[int, tuple[frozenset[str], int, bytes]] = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            match = FETCH.search(item[0])
            assert match, item[0]
            flags = frozenset(f.decode() for f in match.group(2).split()) - {"\\Recent"}
            view[int(match.group(1))] = (flags, int(match.group(3)), item[1])
        return uidvalidity, view
    finally:
        client.logout()


def test_dovecot_serves_our_maildir_with_our_uids_and_flags(tree: Path) -> None:
    from mailagents.store.maildir import MaildirStore

    maildir = tree / "Maildir"
    flags = [
        frozenset(),
        frozenset({SEEN}),
        frozenset({SEEN, ANSWERED, FLAGGED}),
        frozenset({"$Forwarded", "project-x"}),
        frozenset({DELETED, SEEN}),
    ]
    with MaildirStore(maildir) as store, store.folder("INBOX") as inbox:
        for i, f in enumerate(flags):
            inbox.append_bytes(message(i), flags=f)
        inbox.refresh()
        ours = {m.uid: m for m in inbox.messages()}
        status = inbox.status()
        bodies = {uid: inbox.read_message(uid) for uid in ours}
    with running_dovecot(maildir) as dovecot:
        uidvalidity, theirs = imap_view(dovecot)
    assert uidvalidity == status.uidvalidity
    assert sorted(theirs) == sorted(ours)
    for uid, info in ours.items():
        their_flags, size, body = theirs[uid]
        assert their_flags == info.flags, (uid, their_flags, info.flags)
        assert size == info.size == len(bodies[uid])
        assert body == bodies[uid]


def test_we_read_a_maildir_that_dovecot_wrote(tree: Path) -> None:
    from mailagents.store.maildir import MaildirStore

    maildir = tree / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    with running_dovecot(maildir) as dovecot:
        client = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
        client.login(dovecot.user, dovecot.password)
        for i, flags in enumerate(["", "\\Seen", "\\Seen \\Flagged", "$Label1 \\Answered"]):
            typ, _ = client.append("INBOX", f"({flags})" if flags else None, None, message(i))
            assert typ == "OK", dovecot.log()
        client.select("INBOX")
        client.uid("STORE", "1", "+FLAGS", "(\\Draft work)")
        client.logout()
        uidvalidity, theirs = imap_view(dovecot)
    with MaildirStore(maildir) as store, store.folder("INBOX") as inbox:
        ours = {m.uid: m for m in inbox.messages()}
        assert inbox.status().uidvalidity == uidvalidity
        assert sorted(ours) == sorted(theirs)
        for uid, (flags, size, body) in theirs.items():
            assert ours[uid].flags == flags, (uid, ours[uid].flags, flags)
            assert ours[uid].size == size
            assert inbox.read_message(uid) == body


def test_uids_agree_after_both_sides_add_messages(tree: Path) -> None:
    from mailagents.store.maildir import MaildirStore

    maildir = tree / "Maildir"
    with MaildirStore(maildir) as store, store.folder("INBOX") as inbox:
        inbox.append_bytes(message(0))
        inbox.append_bytes(message(1), assign_uid=False)  # the MDA fast path
    with running_dovecot(maildir) as dovecot:
        client = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
        client.login(dovecot.user, dovecot.password)
        client.append("INBOX", None, None, message(2))
        client.logout()
        _, before = imap_view(dovecot)
    with MaildirStore(maildir) as store, store.folder("INBOX") as inbox:
        result = inbox.append_bytes(message(3))
        inbox.refresh()
        ours = {m.uid: inbox.read_message(m.uid) for m in inbox.messages()}
    assert result.uid is not None and result.uid > max(before)
    with running_dovecot(maildir) as dovecot:
        _, after = imap_view(dovecot)
    assert {uid: body for uid, (_, _, body) in after.items()} == ours


def test_dovecot_reads_what_a_delivery_handle_wrote_into_a_fresh_maildir(tree: Path) -> None:
    # A delivery handle (the MSA's) writes only an empty dovecot-uidlist and the files
    # in new/; Dovecot must take that uidlist as its own (same UIDVALIDITY), number the
    # messages, and show them all as new (\Recent: still in new/ until it reads them).
    from mailagents.store.maildir import MaildirStore

    maildir = tree / "Maildir"
    with MaildirStore(maildir) as store:
        delivery = store.folder("INBOX", deliver_only=True)
        results = delivery.append_batch([message(i) for i in range(3)])
        delivery.close()
    assert all(not isinstance(r, Exception) for r in results)
    assert len(list((maildir / "new").iterdir())) == 3
    with running_dovecot(maildir) as dovecot:
        client = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
        try:
            client.login(dovecot.user, dovecot.password)
            typ, _ = client.select("INBOX")
            assert typ == "OK", dovecot.log()
            recent = int(client.response("RECENT")[1][0])
        finally:
            client.logout()
        uidvalidity, theirs = imap_view(dovecot)
    assert recent == 3
    assert uidvalidity == results[0].uidvalidity  # type: ignore[union-attr]
    assert sorted(theirs) == [1, 2, 3]
    assert sorted(body for _, _, body in theirs.values()) == sorted(message(i) for i in range(3))
    # And we agree with Dovecot's numbering afterwards.
    with MaildirStore(maildir) as store, store.folder("INBOX") as inbox:
        assert inbox.status().uidvalidity == uidvalidity
        assert {m.uid: inbox.read_message(m.uid) for m in inbox.messages()} == {
            uid: body for uid, (_, _, body) in theirs.items()
        }


def test_dovecot_starts_again_on_new_ports_when_one_was_taken(tree: Path) -> None:
    # The fixture's own robustness: between choosing a free port and Dovecot binding
    # it, another program may take it (a fresh-clone run failed so). The daemon exits;
    # start() picks new ports and starts it again instead of waiting 15 s for nothing.
    from mailagents.store.maildir import MaildirStore

    MaildirStore(tree / "Maildir").close()
    dovecot = Dovecot(tree / "Maildir")
    taken = dovecot.imap_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))  # bound, not listening: Dovecot's bind fails
        try:
            with pytest.warns(UserWarning, match="Dovecot start 1 of 3: exited"):
                dovecot.start()
            assert dovecot.imap_port != taken
            client = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
            client.login(dovecot.user, dovecot.password)
            assert client.select("INBOX")[0] == "OK"
            client.logout()
        finally:
            dovecot.stop()


def test_our_imap_side_files_leave_dovecot_in_agreement(tree: Path) -> None:
    # The \Recent watermark, INTERNALDATE zones, STATUS peeks and the expunge
    # watermark live in files of ours: Dovecot serves the same UIDs, flags and keywords,
    # and what it changes reaches us with a higher HIGHESTMODSEQ, same UIDVALIDITY.
    import datetime

    from mailagents.store.maildir import MaildirStore

    maildir = tree / "Maildir"
    zone = datetime.timezone(datetime.timedelta(hours=2))
    with MaildirStore(maildir) as store, store.folder("INBOX") as inbox:
        for i in range(4):
            date = datetime.datetime(2026, 3, 3, 10, i, tzinfo=zone)
            inbox.append_bytes(message(i), flags=[SEEN, "Work"], internaldate=date)
        inbox.refresh()
        assert len(inbox.claim_recent()) == 4
        first = inbox.messages()[0].uid
        inbox.set_flags([first], [DELETED], "add")
        inbox.expunge()
        inbox.refresh()
        ours = {m.uid: m for m in inbox.messages()}
        before = inbox.status()
        assert store.status("INBOX") == before
    with running_dovecot(maildir) as dovecot:
        uidvalidity, theirs = imap_view(dovecot)
        assert uidvalidity == before.uidvalidity
        assert {uid: flags for uid, (flags, _, _) in theirs.items()} == {
            uid: m.flags for uid, m in ours.items()
        }
        client = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
        client.login(dovecot.user, dovecot.password)
        client.select("INBOX")
        last = max(ours)
        typ, _ = client.uid("STORE", str(last), "+FLAGS", "(\\Flagged Home)")
        assert typ == "OK", dovecot.log()
        client.logout()
    with MaildirStore(maildir) as store:
        peek = store.status("INBOX")
        with store.folder("INBOX") as inbox:
            after = inbox.status()
            assert after.uidvalidity == before.uidvalidity
            assert after.highestmodseq > before.highestmodseq
            assert peek.messages == after.messages == len(ours)
            assert inbox.info(last).flags == {SEEN, FLAGGED, "Work", "Home"}
            assert inbox.info(last).internaldate.utcoffset() == datetime.timedelta(hours=2)
            assert inbox.claim_recent() == []
