"""Our asyncio IMAP client against Dovecot 2.3 serving a Maildir: the commands Dovecot
advertises (LOGIN and AUTHENTICATE PLAIN with SASL-IR, CAPABILITY, ID, NAMESPACE,
ENABLE, LIST, STATUS, SELECT/EXAMINE with CONDSTORE, FETCH, a big body streamed to a
file, SEARCH and ESEARCH, STORE, COPY and MOVE with COPYUID, APPEND with APPENDUID,
EXPUNGE and UID EXPUNGE, IDLE, COMPRESS=DEFLATE when imap_zlib is installed)."""

from __future__ import annotations

import asyncio
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailagents.aio.imap_client import IMAPClient, IMAPCommandError, IMAPTimeouts
from mailagents.imap._search import FlagKey, TextKey
from mailagents.store.maildir import MaildirStore

from .peers import Dovecot, mail_tree, require_binary, require_root

pytestmark = pytest.mark.interop

ZLIB = Path("/usr/lib/dovecot/modules/lib20_zlib_plugin.so")
IMAP_ZLIB = Path("/usr/lib/dovecot/modules/lib30_imap_zlib_plugin.so")

BIG = b"From: a@example.test\r\nSubject: big\r\n\r\n" + b"".join(
    b"%06d The quick brown fox jumps over the lazy dog.\r\n" % i for i in range(60_000)
)
MESSAGES = [
    b"From: a@example.test\r\nTo: b@example.test\r\nSubject: first\r\n\r\nhello\r\n",
    b"From: c@example.test\r\nSubject: second\r\n\r\nworld\r\n",
    BIG,
]


class DovecotZlib(Dovecot):
    """Dovecot with imap_zlib (COMPRESS=DEFLATE, RFC 4978) when it is installed."""

    def _config(self) -> Path:
        conf = super()._config()
        text = conf.read_text()
        if IMAP_ZLIB.exists() and ZLIB.exists():
            text += "mail_plugins = $mail_plugins zlib\n"
            text += "protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n"
        conf.write_text(text)
        return conf


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    require_root("Dovecot")
    require_binary("dovecot")
    tree = mail_tree()
    maildir = tree / "Maildir"
    with MaildirStore(maildir) as store, store.folder("INBOX") as inbox:
        for data in MESSAGES:
            inbox.append_bytes(data)
    server = DovecotZlib(maildir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(tree, ignore_errors=True)


def connect(server: Dovecot) -> object:
    return IMAPClient.connect(
        "127.0.0.1", server.imap_port, starttls=False, timeouts=IMAPTimeouts.uniform(20)
    )


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_login_and_mailbox_commands(dovecot: Dovecot) -> None:
    async def main() -> None:
        async with connect(dovecot) as client:  # type: ignore[attr-defined]
            assert client.has("IMAP4REV1")
            await client.login(dovecot.user, dovecot.password, allow_plaintext=True)
            assert client.has("IDLE"), client.capabilities
            assert await client.id({"name": "mailagents"}) is not None
            assert await client.namespace() is not None
            enabled = await client.enable("CONDSTORE")
            assert "CONDSTORE" in enabled
            await client.create("Archive")
            names = [entry.mailbox for entry in await client.list("", "*")]
            assert "INBOX" in names and "Archive" in names
            status = await client.status("INBOX", ["MESSAGES", "UIDNEXT"])
            assert status.messages == len(MESSAGES)
            box = await client.select("INBOX", condstore=True)
            assert box.exists == len(MESSAGES) and box.uidvalidity
            assert box.highestmodseq is not None
            fetched = await client.fetch("1:2", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert len(fetched) == 2
            sink = io.BytesIO()
            await client.fetch_message(3, sink)
            assert sink.getvalue() == BIG
            found = await client.search(TextKey(name="SUBJECT", value="second"))
            assert list(found.numbers.iter_numbers(10)) == [2]
            if client.has("ESEARCH"):
                counted = await client.search(FlagKey(name="ALL"), return_options=["COUNT"])
                assert counted.count == len(MESSAGES)
            await client.store(1, ["\\Flagged"])
            copied = await client.copy("1:2", "Archive")
            assert copied is not None
            moved = await client.move(3, "Archive", uid=False)
            assert moved is not None
            appended = await client.append("Archive", b"Subject: new\r\n\r\nbody\r\n")
            assert appended is not None
            await client.store(1, ["\\Deleted"])
            expunged = await client.expunge()
            assert len(expunged) == 1
            with pytest.raises(IMAPCommandError) as info:
                await client.select("does-not-exist")
            assert info.value.status == "NO"

    run(main())


def test_authenticate_plain_and_idle(dovecot: Dovecot) -> None:
    async def main() -> None:
        async with connect(dovecot) as client:  # type: ignore[attr-defined]
            await client.login(
                dovecot.user, dovecot.password, mechanism="PLAIN", allow_plaintext=True
            )
            await client.select("INBOX")

            async def deliver() -> None:
                async with connect(dovecot) as other:  # type: ignore[attr-defined]
                    await other.login(dovecot.user, dovecot.password, allow_plaintext=True)
                    await other.append("INBOX", b"Subject: news\r\n\r\nnew\r\n")

            async with client.idle() as news:
                task = asyncio.ensure_future(deliver())
                async for response in news:
                    if getattr(response, "count", None) == len(MESSAGES) + 1:
                        break
                await task

    run(main())


@pytest.mark.skipif(not IMAP_ZLIB.exists(), reason="Dovecot's imap_zlib is not installed")
def test_compress_deflate(dovecot: Dovecot) -> None:
    async def main() -> None:
        async with connect(dovecot) as client:  # type: ignore[attr-defined]
            await client.login(dovecot.user, dovecot.password, allow_plaintext=True)
            assert client.has("COMPRESS=DEFLATE"), client.capabilities
            await client.compress()
            box = await client.select("INBOX")
            assert box.exists == len(MESSAGES)
            sink = io.BytesIO()
            await client.fetch_message(3, sink)
            assert sink.getvalue() == BIG

    run(main())


def test_qresync_examine_uid_expunge_and_streamed_append(dovecot: Dovecot) -> None:
    from mailagents.imap._commands import QResync
    from mailagents.imap._seqset import SequenceSet

    async def main() -> None:
        async with connect(dovecot) as client:  # type: ignore[attr-defined]
            await client.login(dovecot.user, dovecot.password, allow_plaintext=True)
            assert client.has("QRESYNC") and client.has("UIDPLUS"), client.capabilities
            await client.enable("QRESYNC")
            first = await client.select("INBOX")
            assert first.uidvalidity is not None and first.highestmodseq is not None
            uids = [f.uid for f in await client.fetch("1:*", "(UID)")]
            assert len(uids) == len(MESSAGES)
            await client.store(uids[0], ["\\Answered"], uid=True)
            await client.store(uids[1], ["\\Deleted"], uid=True, silent=True)
            expunged = await client.expunge(uids=[uids[1]])
            # With QRESYNC enabled, expunges are reported as VANISHED (RFC 7162 §3.2.10).
            assert expunged and all(hasattr(r, "uids") for r in expunged), expunged
            await client.unselect()
            again = await client.examine(
                "INBOX",
                qresync=QResync(
                    uidvalidity=first.uidvalidity,
                    modseq=first.highestmodseq,
                    known_uids=SequenceSet.from_numbers(uids),
                ),
            )
            assert again.read_only
            vanished = {n for s in again.vanished for n in s.iter_numbers(max(uids))}
            assert vanished == {uids[1]}, again
            changed = {f.uid: f.flags for f in again.fetched}
            assert "\\Answered" in (changed.get(uids[0]) or ()), again.fetched
            # A message from a file: streamed (LITERAL+ from Dovecot), never read whole.
            code = await client.append("INBOX", io.BytesIO(BIG), flags=["\\Seen"])
            assert code is not None
            status = await client.status("INBOX", ["MESSAGES", "HIGHESTMODSEQ"])
            assert status.messages == len(MESSAGES) and status.highestmodseq

    run(main())
