"""Another program's delivery seen by the watcher: Dovecot's LDA (``dovecot-lda``) and
Postfix's virtual(8) write a message into a Maildir that our store made, and both the
watcher's core (inotify and the poll fallback) and the asyncio side (a FolderWatch, as
an IDLE session holds it) notice it without being told; our store then reads the
message."""

from __future__ import annotations

import asyncio
import os
import pwd
import select
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailagents.aio._watching import FolderWatcher
from mailagents.store import MaildirStore
from mailagents.store._hub import ChangeHub
from mailagents.store._watch import Watcher
from mailagents.store._watch_inotify import available
from tests.interop.peers import chown_tree, mail_tree, require_binary, require_root

pytestmark = pytest.mark.interop

LDA = "/usr/lib/dovecot/dovecot-lda"
MESSAGE = b"From: a@example.test\nTo: nobody@example.test\nSubject: from another program\n\nhello\n"


def lda() -> str:
    return LDA if os.path.exists(LDA) else require_binary("dovecot-lda")


def deliver_with_lda(maildir: Path) -> None:
    """Run Dovecot's LDA as the mail user (``nobody``) delivering into ``maildir``."""
    binary = lda()
    require_root("dovecot-lda")
    nobody = pwd.getpwnam("nobody")
    base = maildir.parent / "dovecot"
    for sub in ("run", "state"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    conf = base / "dovecot.conf"
    conf.write_text(
        f"base_dir = {base}/run\nstate_dir = {base}/state\nlog_path = {base}/lda.log\n"
        f"mail_location = maildir:{maildir}\nprotocols =\nssl = no\nfirst_valid_uid = 1\n"
    )
    chown_tree(maildir.parent, nobody.pw_uid, nobody.pw_gid)
    result = subprocess.run(
        [binary, "-c", str(conf), "-f", "a@example.test"],
        input=MESSAGE,
        user=nobody.pw_uid,
        group=nobody.pw_gid,
        extra_groups=[],
        env={"USER": "nobody", "HOME": str(maildir.parent), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    log = (base / "lda.log").read_text(errors="replace") if (base / "lda.log").exists() else ""
    assert result.returncode == 0, (result.stderr, log)


@pytest.fixture
def maildir() -> Iterator[Path]:
    root = mail_tree()
    path = root / "Maildir"
    MaildirStore(str(path)).close()
    yield path
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize(
    "inotify",
    [pytest.param(True, marks=pytest.mark.skipif(not available(), reason="Linux")), False],
)
def test_lda_delivery_found_by_the_watcher(maildir: Path, inotify: bool) -> None:
    watcher = Watcher(inotify=inotify, clock=lambda: 1 << 62)
    key = watcher.add(str(maildir))
    deliver_with_lda(maildir)
    fd = watcher.fileno()
    if fd is None:
        found = watcher.poll_changes()
    else:
        select.select([fd], [], [], 10)
        found = watcher.read_changes()
    assert found == {key}
    watcher.close()
    with MaildirStore(str(maildir)) as store, store.folder("INBOX") as box:
        (info,) = box.messages()
        assert box.read_message(info.uid).replace(b"\r\n", b"\n").endswith(b"\n\nhello\n")


def test_lda_delivery_wakes_a_session_watch(maildir: Path) -> None:
    async def main() -> None:
        watcher = FolderWatcher(hub=ChangeHub(), poll_interval=0.1)
        with watcher.watch(str(maildir)) as watch:
            await asyncio.to_thread(deliver_with_lda, maildir)
            await asyncio.wait_for(watch.wait(), 20)

    asyncio.run(main())


def test_postfix_delivery_wakes_a_session_watch() -> None:
    """Postfix's virtual(8) delivers into a Maildir our store made (as nobody): a
    session's watch wakes without being told, and our store reads the message."""
    import smtplib

    from tests.interop.peers import running_postfix

    with running_postfix() as postfix:
        maildir = postfix.maildir("alice")
        MaildirStore(str(maildir)).close()
        chown_tree(postfix.mail / "alice", postfix.uid, postfix.gid)

        async def main() -> None:
            watcher = FolderWatcher(hub=ChangeHub(), poll_interval=0.1)
            with watcher.watch(str(maildir)) as watch:

                def send() -> None:
                    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=20) as smtp:
                        smtp.sendmail("a@example.test", ["alice@example.test"], MESSAGE)

                await asyncio.to_thread(send)
                await asyncio.wait_for(watch.wait(), 30)

        asyncio.run(main())
        with MaildirStore(str(maildir)) as store, store.folder("INBOX") as box:
            (info,) = box.messages()
            assert b"from another program" in box.read_message(info.uid)
