"""Postfix delivering into our LMTP server (mailagents.agents.LMTPServer over the MDA),
as its lmtp(8) transport, over TCP and over a Unix socket: every recipient answered on
its own after the data, one of them failing (over quota: deferred by Postfix, then
delivered once there is room) while the others are delivered."""

from __future__ import annotations

import pwd
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailagents.agents import MDA, LMTPServer, LocalRecipients
from mailagents.store import MaildirStore

from .peers import LoopThread, free_port, running_postfix

pytestmark = pytest.mark.interop

USERS = "alice@example.test\nbob@example.test\ncarol@example.test 300\n"
ALIASES = "postmaster: alice@example.test\n"


def inbox(root: Path, user: str) -> list[bytes]:
    path = root / f"{user}@example.test"
    if not path.exists():
        return []
    with MaildirStore(path) as store, store.folder("INBOX") as box:
        return [box.read_message(m.uid) for m in box.messages()]


def wait_for(check: object, what: str, log: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout:g} s\n{log()}")  # type: ignore[operator]
        time.sleep(0.1)


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[tuple[Path, MDA]]:
    (tmp_path / "users").write_text(USERS)
    (tmp_path / "aliases").write_text(ALIASES)
    recipients = LocalRecipients(tmp_path / "users", tmp_path / "aliases",
                                 local_domains={"example.test"})
    root = tmp_path / "mail"
    mda = MDA(str(root / "{user}"), recipients, usage_ttl=0.0)
    yield root, mda
    mda.close()


@pytest.mark.parametrize("over", ["inet", "unix"])
def test_postfix_delivers_into_our_lmtp_one_recipient_failing(
    tmp_path: Path, mail: tuple[Path, MDA], over: str
) -> None:
    root, mda = mail
    port = free_port()
    socket_path = Path("/tmp") / f"mailagents-lmtp-{port}.sock"
    transport = (f"lmtp:inet:127.0.0.1:{port}" if over == "inet"
                 else f"lmtp:unix:{socket_path}")
    body = "x" * 400  # more than carol's quota of 300 octets
    with LoopThread() as loop:
        lmtp = LMTPServer("lmtp.example.test", mda)
        if over == "inet":
            loop.run(lmtp.serve("127.0.0.1", port))
        else:  # Postfix's lmtp(8) runs as the postfix user
            postfix_uid = pwd.getpwnam("postfix").pw_uid
            loop.run(lmtp.serve_unix(socket_path, mode=0o600, owner=postfix_uid))
        try:
            with running_postfix(transport=transport) as postfix:
                with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
                    refused = smtp.sendmail(
                        "sender@example.test",
                        ["alice@example.test", "bob@example.test", "carol@example.test"],
                        "From: sender@example.test\r\nSubject: lmtp proof\r\n\r\n"
                        f"{body}\r\n",
                    )
                assert refused == {}
                wait_for(lambda: inbox(root, "alice") and inbox(root, "bob"),
                         "alice and bob have no copy", postfix.log)
                line = postfix.wait_log("to=<carol@example.test>")
                assert "status=deferred" in line and "452 4.2.2" in line, line
                for user in ("alice", "bob"):
                    sent = postfix.wait_log(f"to=<{user}@example.test>")
                    assert "status=sent" in sent and "250 2.0.0" in sent, sent
                [copy] = inbox(root, "alice")
                assert copy.startswith(b"Return-Path: <sender@example.test>\r\n"
                                       b"Delivered-To: alice@example.test\r\n")
                assert b"with LMTP id" in copy and b"Subject: lmtp proof" in copy
                assert b"by mx.example.test (Postfix)" in copy  # Postfix's own Received
                assert inbox(root, "carol") == []
                # Room for carol: Postfix's retry gets her copy in.
                (tmp_path / "users").write_text(USERS.replace(" 300", " 100000"))
                mda.recipients.reload()
                wait_for(lambda: inbox(root, "carol"), "carol has no copy after the retry",
                         postfix.log)
                assert len(inbox(root, "alice")) == 1  # no duplicate for the others
        finally:
            loop.run(lmtp.close())
    assert not socket_path.exists()
