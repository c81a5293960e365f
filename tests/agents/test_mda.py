"""The MDA (mailagents/agents/mda.py): local delivery to users and aliases, Maildir and
mbox alike, one result per recipient; the RCPT check, quotas, loops, the added
Return-Path: and Delivered-To:, streaming of spooled messages, per-copy failures."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
from pathlib import Path
from typing import Any

import pytest

from mailagents.agents import MDA, LocalRecipients, MaildirDelivery
from mailagents.agents import mda as mda_module
from mailagents.delivery import Handoff, Message, MessageSpool
from mailagents.smtp import Envelope, Mailbox, Recipient
from mailagents.smtp import Path as SMTPPath
from mailagents.smtp._params import MailParameters
from mailagents.store import MaildirStore, MboxStore, Store

MESSAGE = b"From: a@remote.test\r\nSubject: hi\r\n\r\nline one\r\nline two\r\n"
USERS = {"alice@example.test": None, "bob": 2000, "carol@example.test": None}
ALIASES = {"postmaster": ["alice@example.test"], "team@example.test": ["alice", "bob"],
           "@other.test": ["carol@example.test"]}
DOMAINS = {"example.test", "other.test"}


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


def handoff(*rcpts: str, message: bytes | Message = MESSAGE, sender: str = "a@remote.test"
            ) -> Handoff:
    content = message if isinstance(message, Message) else Message.from_bytes(message)
    local, _, domain = sender.partition("@")
    envelope = Envelope(
        mail_from=SMTPPath(Mailbox(local, domain) if sender else None),
        mail_parameters=MailParameters(),
        recipients=tuple(
            Recipient(path=SMTPPath(Mailbox(*r.split("@")))) for r in rcpts
        ),
        size=content.size,
    )
    return Handoff(id="h1", envelope=envelope, message=content)


def make_mda(tmp_path: Path, fmt: str = "maildir", **options: Any) -> MDA:
    recipients = LocalRecipients(USERS, ALIASES, local_domains=DOMAINS)
    template = str(tmp_path / "{user}")
    return MDA(template, recipients, format=fmt, fsync=False, **options)  # type: ignore[arg-type]


def store_of(tmp_path: Path, user: str, fmt: str) -> Store:
    path = tmp_path / user
    return MaildirStore(path) if fmt == "maildir" else MboxStore(path)


def messages(tmp_path: Path, user: str, fmt: str, folder: str = "INBOX") -> list[bytes]:
    if not (tmp_path / user).exists():
        return []
    with store_of(tmp_path, user, fmt) as store, store.folder(folder) as box:
        return [box.read_message(m.uid) for m in box.messages()]


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_users_and_aliases_get_one_copy_each_with_the_added_fields(
    tmp_path: Path, fmt: str
) -> None:
    mda = make_mda(tmp_path, fmt)
    try:
        results = run(mda(handoff("alice@example.test", "team@example.test",
                                  "Postmaster@Example.TEST", "nobody@other.test")))
    finally:
        mda.close()
    assert [r.status for r in results] == ["delivered"] * 4
    alice = messages(tmp_path, "alice@example.test", fmt)
    assert len(alice) == 1  # alice, team and postmaster all reach her: one copy
    [bob] = messages(tmp_path, "bob", fmt)
    [carol] = messages(tmp_path, "carol@example.test", fmt)  # the catch-all
    parsed = email.message_from_bytes(bob, policy=email.policy.default)
    assert parsed["Return-Path"] == "<a@remote.test>"
    assert parsed["Delivered-To"] == "bob@example.test"
    assert bob.startswith(b"Return-Path: <a@remote.test>\r\nDelivered-To: bob@example.test\r\n")
    assert bob.endswith(MESSAGE)
    assert carol.startswith(b"Return-Path: <a@remote.test>\r\nDelivered-To: carol@example.test")


def test_null_sender_is_written_as_empty_return_path(tmp_path: Path) -> None:
    mda = make_mda(tmp_path)
    try:
        run(mda(handoff("alice@example.test", sender="")))
    finally:
        mda.close()
    [copy] = messages(tmp_path, "alice@example.test", "maildir")
    assert copy.startswith(b"Return-Path: <>\r\n")


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_an_extension_goes_to_its_folder_when_it_exists(tmp_path: Path, fmt: str) -> None:
    with store_of(tmp_path, "alice@example.test", fmt) as store:
        store.create_folder("lists")
    mda = make_mda(tmp_path, fmt)
    try:
        results = run(mda(handoff("alice+lists@example.test", "alice+nope@example.test")))
    finally:
        mda.close()
    assert [r.status for r in results] == ["delivered", "delivered"]
    assert len(messages(tmp_path, "alice@example.test", fmt, "lists")) == 1
    assert len(messages(tmp_path, "alice@example.test", fmt)) == 1  # nope: INBOX


def test_unknown_recipient_is_refused_at_rcpt_and_after_data(tmp_path: Path) -> None:
    mda = make_mda(tmp_path)
    try:
        reply = run(mda.check_recipient(Mailbox("nobody", "example.test")))
        assert (reply.code, reply.enhanced) == (550, "5.1.1")
        reply = run(mda.check_recipient(Mailbox("alice", "remote.test")))
        assert reply.code == 550
        assert run(mda.check_recipient(Mailbox("alice", "example.test"))) is None
        assert run(mda.check_recipient(Mailbox("postmaster", ""))) is None
        assert run(mda.check_recipient(None)).code == 550
        results = run(mda(handoff("nobody@example.test", "alice@example.test")))
    finally:
        mda.close()
    assert [(r.status, r.reply.code) for r in results] == [("permanent", 550),
                                                          ("delivered", 250)]


@pytest.mark.parametrize(("mode", "rcpt_code", "data_code"),
                         [("temporary", 452, 452), ("permanent", 552, 552)])
def test_quota(tmp_path: Path, mode: str, rcpt_code: int, data_code: int) -> None:
    mda = make_mda(tmp_path, quota_reply=mode)  # bob has 2000 octets
    big = MESSAGE + b"x" * 1500 + b"\r\n"
    try:
        assert run(mda.check_recipient(Mailbox("bob", "example.test"))) is None
        first = run(mda(handoff("bob@example.test", message=big)))
        assert first[0].delivered
        # The next would pass the quota: refused, the others still delivered.
        results = run(mda(handoff("bob@example.test", "alice@example.test", message=big)))
        assert [(r.status, r.reply.code) for r in results] == [
            (mode, data_code), ("delivered", 250)]
        assert results[0].reply.enhanced == f"{data_code // 100}.2.2"
        # A small one still fits...
        assert run(mda(handoff("bob@example.test", message=b"a\r\n\r\nb\r\n")))[0].delivered
    finally:
        mda.close()
    # ...and once the store is measured full, RCPT says so (usage measured afresh).
    mda = make_mda(tmp_path, quota_reply=mode, usage_ttl=0.0)
    try:
        with open(tmp_path / "bob" / "filler", "wb") as f:
            f.write(b"x" * 2000)
        reply = run(mda.check_recipient(Mailbox("bob", "example.test")))
        assert reply is not None and reply.code == rcpt_code
    finally:
        mda.close()


def test_too_many_received_fields_is_a_loop(tmp_path: Path) -> None:
    looped = b"Received: from a by b; x\r\n" * 5 + MESSAGE
    mda = make_mda(tmp_path, max_received=4)
    try:
        results = run(mda(handoff("alice@example.test", "bob@example.test", message=looped)))
        assert [(r.status, r.reply.code, r.reply.enhanced) for r in results] == [
            ("permanent", 554, "5.4.6")] * 2
        ok = b"received: from a by b; x\r\n" * 4 + MESSAGE
        assert run(mda(handoff("alice@example.test", message=ok)))[0].delivered
    finally:
        mda.close()
    assert len(messages(tmp_path, "alice@example.test", "maildir")) == 1


def test_count_received() -> None:
    assert mda_module.count_received(b"") == 0
    assert mda_module.count_received(b"Received: a\r\n") == 1
    assert mda_module.count_received(b"X: 1\r\nRECEIVED: a\r\n\tcont\r\nreceived:b\r\n") == 2
    assert mda_module.count_received(b"X-Received: a\r\n") == 0


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_a_spooled_message_is_streamed_not_read_whole(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b"".join(b"line %06d\r\n" % i for i in range(20000))
    spool = MessageSpool(memory_limit=1000, directory=tmp_path)
    spool.write(MESSAGE + body)
    message = spool.finish()
    assert not message.in_memory

    def no_whole_read(self: Message) -> bytes:
        raise AssertionError("the MDA read the message whole")

    monkeypatch.setattr(Message, "read", no_whole_read)
    mda = make_mda(tmp_path, fmt)
    try:
        results = run(mda(handoff("alice@example.test", "carol@example.test", message=message)))
    finally:
        mda.close()
        message.close()
    monkeypatch.undo()
    assert [r.status for r in results] == ["delivered", "delivered"], results
    for user in ("alice@example.test", "carol@example.test"):
        [copy] = messages(tmp_path, user, fmt)
        assert copy.endswith(MESSAGE + body)


@pytest.mark.parametrize("path", ["batch", "stream"])
def test_a_failed_copy_fails_only_its_recipients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    real_write = mda_module._write
    real_batch = MaildirDelivery.deliver_bytes

    def write(store: Store, folder: str | None, message: Message) -> str:
        if "bob" in str(getattr(store, "root", "")):
            raise OSError("bob's disk is on fire")
        return real_write(store, folder, message)

    async def batch(self: MaildirDelivery, directory: str, message: bytes) -> None:
        if "bob" in directory:
            raise OSError("bob's disk is on fire")
        await real_batch(self, directory, message)

    monkeypatch.setattr(mda_module, "_write", write)
    monkeypatch.setattr(MaildirDelivery, "deliver_bytes", batch)
    mda = make_mda(tmp_path)
    message: bytes | Message = MESSAGE
    if path == "stream":  # spooled to a file: streamed, not batched
        spool = MessageSpool(memory_limit=10, directory=tmp_path)
        spool.write(MESSAGE)
        message = spool.finish()
    try:
        results = run(mda(handoff("alice@example.test", "bob@example.test",
                                  "team@example.test", message=message)))
    finally:
        mda.close()
    assert [(r.status, r.reply.code) for r in results] == [
        ("delivered", 250), ("temporary", 451), ("temporary", 451)]
    assert len(messages(tmp_path, "alice@example.test", "maildir")) == 1


def test_inbox_copies_held_in_memory_are_batched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_batch = MaildirDelivery.deliver_bytes

    async def batch(self: MaildirDelivery, directory: str, message: bytes) -> None:
        calls.append(os.path.basename(directory))
        await real_batch(self, directory, message)

    monkeypatch.setattr(MaildirDelivery, "deliver_bytes", batch)
    with store_of(tmp_path, "alice@example.test", "maildir") as store:
        store.create_folder("lists")
    mda = make_mda(tmp_path)
    try:
        run(mda(handoff("alice@example.test", "alice+lists@example.test")))
    finally:
        mda.close()
    assert calls == ["alice@example.test"]  # the INBOX copy; the folder one is streamed
    assert len(messages(tmp_path, "alice@example.test", "maildir", "lists")) == 1


def test_a_shared_resolver_is_not_closed(tmp_path: Path) -> None:
    from mailagents.store import StoreResolver

    resolver = StoreResolver(str(tmp_path / "{user}"), fsync=False)
    mda = MDA(resolver, LocalRecipients(USERS, ALIASES, local_domains=DOMAINS))
    run(mda(handoff("alice@example.test")))
    mda.close()
    assert resolver.open_stores() >= 1
    resolver.close()


def test_constructor_checks(tmp_path: Path) -> None:
    recipients = LocalRecipients(USERS, ALIASES, local_domains=DOMAINS)
    with pytest.raises(ValueError):
        MDA(str(tmp_path), recipients, quota_reply="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        MDA(str(tmp_path), recipients, max_received=0)


def test_delivery_does_not_move_new_to_cur(tmp_path: Path) -> None:
    mda = make_mda(tmp_path)
    try:
        run(mda(handoff("alice@example.test")))
        run(mda(handoff("alice@example.test")))
    finally:
        mda.close()
    assert len(os.listdir(tmp_path / "alice@example.test" / "new")) == 2
    assert os.listdir(tmp_path / "alice@example.test" / "cur") == []


def test_an_alias_broken_after_loading_is_a_temporary_failure(tmp_path: Path) -> None:
    from mailagents.userdb import PasswordFile

    store = PasswordFile(tmp_path / "passwd", scrypt_n=2**8)
    store.set_password("alice@example.test", "pw")
    store.set_password("bob@example.test", "pw")
    recipients = LocalRecipients(store, {"postmaster": ["alice"], "team": ["alice", "bob"]},
                                 local_domains={"example.test"})
    mda = MDA(str(tmp_path / "{user}"), recipients, fsync=False)
    try:
        store.delete("bob@example.test")  # the alias team now leads to nobody
        reply = run(mda.check_recipient(Mailbox("team", "example.test")))
        assert reply is not None and (reply.code, reply.enhanced) == (451, "4.3.0")
        results = run(mda(handoff("team@example.test", "alice@example.test")))
        assert [(r.status, r.reply.code) for r in results] == [("temporary", 451),
                                                              ("delivered", 250)]
    finally:
        mda.close()
        store.close()
