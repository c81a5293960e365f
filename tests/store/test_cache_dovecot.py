"""Dovecot serving a Maildir that holds our message caches and kept STATUS numbers
(``mailagents-cache`` with its ``.lock``, ``mailagents-status``, in INBOX's root and in
a subfolder): it lists the same folders, and counts and serves the same messages."""

from __future__ import annotations

import imaplib
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailagents.store import _cache_status
from mailagents.store.maildir import MaildirStore
from tests.interop.peers import mail_tree, running_dovecot
from tests.store.conftest import make_message

pytestmark = pytest.mark.interop


@pytest.fixture
def tree() -> Iterator[Path]:
    path = mail_tree()
    yield path
    shutil.rmtree(path, ignore_errors=True)


class _Later:
    """``time`` for ``_cache_status`` as if every file had settled long ago."""

    @staticmethod
    def time_ns() -> int:
        return time.time_ns() + 3_600 * 10**9


def test_dovecot_ignores_our_cache_files(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cache_status, "time", _Later)
    maildir = tree / "Maildir"
    counts = {"INBOX": 3, "Archive": 2}
    with MaildirStore(maildir) as store:
        store.create_folder("Archive")
        for name, count in counts.items():
            with store.folder(name) as folder:
                for i in range(count):
                    folder.append_bytes(make_message(f"{name} {i}"))
                folder.refresh()
                for info in folder.messages():
                    folder.cached(info.uid)
                cache = folder.message_cache()
                assert cache is not None
                cache.compact()
            assert store.status(name).messages == count
    for where in (maildir, maildir / ".Archive"):
        assert (where / "mailagents-cache").is_file()
        assert (where / "mailagents-cache.lock").exists()
        assert (where / "mailagents-status").is_file()
    with running_dovecot(maildir) as dovecot:
        client = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
        try:
            client.login(dovecot.user, dovecot.password)
            typ, listed = client.list()
            assert typ == "OK", dovecot.log()
            names = sorted(
                re.search(rb'"?([^" ]+)"?$', line).group(1).decode()  # type: ignore[union-attr]
                for line in listed
                if isinstance(line, bytes)
            )
            assert names == sorted(counts)
            for name, count in counts.items():
                typ, data = client.status(name, "(MESSAGES)")
                assert typ == "OK", dovecot.log()
                assert b"MESSAGES %d" % count in data[0]  # type: ignore[operator]
                typ, _ = client.select(name, readonly=True)
                assert typ == "OK"
                typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
                bodies = [item[1] for item in data if isinstance(item, tuple)]
                assert len(bodies) == count
                assert all(b"Subject: " + name.encode() in body for body in bodies)
        finally:
            client.logout()
