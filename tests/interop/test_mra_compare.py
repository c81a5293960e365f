"""Our MRA beside fetchmail and getmail6 on the same mailbox (issue 17's proof): our
MAA serves each fetcher a copy of the same messages over POP3 and over IMAP (with TLS
and the certificate checked); every fetcher delivers the same set of messages (the
same octets once fetchmail's Received field and the LF line ends of the other two are
undone; our MRA adds nothing and changes nothing), in keep mode a second run fetches
nothing for all three and leaves the server as it was, a new message is fetched alone,
and delete mode then empties the server (fetchmail and getmail6 fetching everything
again, our MRA nothing it has already); in delete mode on a fresh copy all three
deliver the same set and leave the server empty."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailagents.aio import SelfSignedCertificate, make_self_signed

from ._mra_fetchers import Fetcher, Fetchmail, Getmail, OurMRA, Remote
from .peers import mail_tree

pytestmark = pytest.mark.interop

MESSAGES = sorted([
    b"Message-ID: <dots@example.test>\r\nFrom: a@example.test\r\nSubject: dots\r\n\r\n"
    b".\r\n..\r\n.x\r\n...\r\nend\r\n",
    b"Message-ID: <8bit@example.test>\r\nFrom: a@example.test\r\nSubject: 8bit\r\n\r\n"
    b"\xe9t\xe9 \xff\r\n" + b"x" * 998 + b"\r\n",
    b"Message-ID: <from@example.test>\r\nFrom: a@example.test\r\nSubject: From_ lines\r\n"
    b"\r\nFrom the start\r\n>From quoted\r\n",
    b"Message-ID: <folded@example.test>\r\nFrom: a@example.test\r\nSubject: a folded\r\n"
    b" subject\r\nX-Empty:\r\n\r\nbody\r\n",
    b"From: no-id@example.test\r\nSubject: no Message-ID\r\n\r\nanonymous\r\n",
    b"Message-ID: <big@example.test>\r\nFrom: a@example.test\r\nSubject: big\r\n\r\n"
    + b"".join(b".%06d The quick brown fox jumps over the lazy dog.\r\n" % i
               for i in range(4_000)),
])
NEW = b"Message-ID: <new@example.test>\r\nFrom: b@example.test\r\nSubject: later\r\n\r\nnew\r\n"
TOOLS = ("fetchmail", "getmail6", "mra")


@pytest.fixture(scope="module")
def cert() -> SelfSignedCertificate:
    return make_self_signed(["localhost"])


@pytest.fixture
def homes() -> Iterator[Path]:
    """A folder that the user nobody can reach (getmail6 delivers as nobody)."""
    tree = mail_tree()
    try:
        yield tree
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def make(tool: str, home: Path, cert: SelfSignedCertificate) -> Fetcher:
    if tool == "fetchmail":
        return Fetchmail(home, cert)
    if tool == "getmail6":
        return Getmail(home, cert)
    return OurMRA(home, cert)


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_same_messages_keep_then_nothing_delete_then_empty(
    tmp_path: Path, homes: Path, cert: SelfSignedCertificate, protocol: str
) -> None:
    users = [f"{mode}-{tool}" for tool in TOOLS for mode in ("keep", "delete")]
    with Remote(tmp_path / "remote", cert, users) as remote:
        for user in users:
            remote.deliver(user, *MESSAGES)
        kept: dict[str, list[bytes]] = {}
        deleted: dict[str, list[bytes]] = {}
        for tool in TOOLS:
            keeper = make(tool, homes / f"{tool}-keep", cert)
            user = f"keep-{tool}"
            status, log = keeper.run(remote, protocol, user, keep=True)
            assert keeper.fetched(status), (tool, status, log)
            kept[tool] = keeper.delivered()
            # The second run finds nothing new, delivers nothing, and the server is
            # as it was.
            status, log = keeper.run(remote, protocol, user, keep=True)
            assert keeper.nothing_new(status), (tool, status, log)
            assert keeper.delivered() == kept[tool], (tool, log)
            assert remote.stored(user) == MESSAGES, tool
            # A new message: only it is fetched.
            remote.deliver(user, NEW)
            status, log = keeper.run(remote, protocol, user, keep=True)
            assert keeper.fetched(status), (tool, status, log)
            assert keeper.delivered() == sorted([*kept[tool], NEW]), (tool, log)
            # Then delete mode on the same account: the server is emptied. fetchmail
            # (fetchall) and getmail6 (read_all) fetch everything again; our MRA
            # removes what it remembers having fetched without fetching it twice.
            before = keeper.delivered()
            status, log = keeper.run(remote, protocol, user, keep=False)
            assert remote.stored(user) == [], (tool, log)
            again = sorted([*before, *MESSAGES, NEW]) if tool != "mra" else before
            assert keeper.delivered() == again, (tool, log)

            deleter = make(tool, homes / f"{tool}-delete", cert)
            user = f"delete-{tool}"
            status, log = deleter.run(remote, protocol, user, keep=False)
            assert deleter.fetched(status), (tool, status, log)
            deleted[tool] = deleter.delivered()
            assert remote.stored(user) == [], (tool, log)
    for tool in TOOLS:
        assert kept[tool] == MESSAGES, tool
        assert deleted[tool] == MESSAGES, tool
    assert kept["mra"] == kept["fetchmail"] == kept["getmail6"]
