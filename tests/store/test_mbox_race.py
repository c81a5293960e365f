"""The mbox side index while other handles replace it (the expunge race).

Background: ``test_appends_race_with_expunges_in_another_process[mbox]`` failed now and
then because a handle recognised the index it had read by its inode number only. An
expunge elsewhere replaces the index (written aside, renamed over); once the old file
was closed and freed, a later replacement could get the same inode number (ext4 hands
freed numbers out again), pass for the file read before, and be read from the old
position, in the middle of a record: the index was declared corrupt and rebuilt, and
UIDs renumbered. No lock was broken: every write of the index happens under the mbox
lock, and the change happened between two lock holds of the reader, not during one. A
handle now keeps the index it read open, so that number cannot come back while it
matters.

It needs no concurrency at all: two handles taking turns in one process are enough
(below, the reader's index is rebuilt at the 4th turn on ext4 without the fix). Whether
a file system hands a freed inode number out again is not ours to force (tmpfs does
not), so the test also checks the guarantee itself: the index read stays open.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from mailagents.store import DELETED
from mailagents.store.mbox import MboxStore
from tests.store.conftest import make_message


def test_index_read_by_a_handle_is_not_mistaken_for_a_newer_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = MboxStore(tmp_path)  # fsync on, as in the concurrency test
    index = tmp_path / ".INBOX.mailagents-index"
    reader = s.folder("INBOX")
    writer = s.folder("INBOX")
    try:
        first = reader.append_bytes(make_message("kept")).uid
        assert first is not None
        reader.refresh()
        validity = reader.status().uidvalidity
        kept = [first]
        held_read: list[bool] = []
        caplog.set_level(logging.WARNING, logger="mailagents.store.mbox")
        for n in range(30):
            reader.refresh()
            read = os.stat(index).st_ino  # the index as the reader last read it
            # The other handle replaces the index twice (each expunge writes a new one
            # and renames it over): on ext4 the second one used to get the number of
            # the one the reader had read and closed.
            for k in range(2):
                uid = writer.append_bytes(make_message(f"junk{n}.{k}"), flags=[DELETED]).uid
                assert uid is not None
                assert writer.expunge([uid]) == [uid]
            # ... and adds to it, so that it is longer than the one the reader read.
            for k in range(3):
                uid = writer.append_bytes(make_message(f"theirs{n}.{k}")).uid
                assert uid is not None
                writer.set_flags([uid], ["theirs"], "add")
                kept.append(uid)
            now = os.stat(index).st_ino
            held = getattr(reader._state, "index_ref", None)
            held_ino = None if held is None else os.fstat(held.fd).st_ino
            # The reader's next lock hold loads the index: it must see a new file and
            # read it whole, not go on from where it stopped in the one it read.
            uid = reader.append_bytes(make_message(f"mine{n}")).uid
            assert uid is not None
            kept.append(uid)
            rebuilt = [r for r in caplog.records if "unusable" in r.getMessage()]
            assert not rebuilt, f"index rebuilt ({n}); inode number reused: {now == read}"
            assert reader.status().uidvalidity == validity
            # What guarantees it whatever the file system does with freed inode numbers:
            # the reader kept the index it had read open, so its number was not free.
            assert now != read
            held_read.append(held_ino == read)
        assert all(held_read)
        reader.refresh()
        assert [m.uid for m in reader.messages()] == kept
        assert reader.read_message(first) == make_message("kept")
    finally:
        reader.close()
        writer.close()
        s.close()
