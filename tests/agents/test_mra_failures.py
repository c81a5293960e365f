"""The MRA when the destination fails, and in the crash windows (without processes):
a temporary refusal (4xx) stops the pass, the refused message and those after it stay
on the server and come next time; a permanent one (5xx) is reported as skipped and the
pass goes on; a message delivered to some recipients; SMTPForward against our own SMTP
and LMTP servers and a closed port; a destination, a DELE, a STORE or a MOVE that
raises after the state was saved, finished by the next pass. Nothing is ever lost."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailagents.agents import MDA, LMTPServer, LocalRecipients, SMTPForward, _mra_fetch
from mailagents.aio import Session, SMTPHandler, SMTPServer
from mailagents.aio.imap_client import IMAPClient
from mailagents.aio.pop3_client import POP3Client
from mailagents.delivery import Deliver, Handoff, RecipientResult
from mailagents.smtp import Accept, Envelope, LMTPReplies, RcptTo, Reject, Reply, ServerConfig
from mailagents.store import MaildirStore
from tests.agents.test_mra import (
    LOCAL_USER,
    Remote,
    account,
    body_number,
    local,
    local_numbers,
    make_mra,
    message,
    run,
    serving,
    state_of,
)

TEMPORARY = Reply(code=451, enhanced="4.3.0", lines=("Try later",))
PERMANENT = Reply(code=550, enhanced="5.7.1", lines=("Not wanted",))
CAROL = "carol@local.test"


def judged(delivery: Deliver, verdict: Callable[[int, str], Reply | None]) -> Deliver:
    """``delivery``, except for the (message number, recipient) pairs ``verdict``
    refuses with its reply."""

    async def deliver(handoff: Handoff) -> list[RecipientResult]:
        number = body_number(handoff.message.read())
        refused = {str(r.path.mailbox): verdict(number, str(r.path.mailbox))
                   for r in handoff.envelope.recipients}
        wanted = [r for r in handoff.envelope.recipients if refused[str(r.path.mailbox)] is None]
        done: dict[str, RecipientResult] = {}
        if wanted:
            sub = Handoff(id=handoff.id, envelope=_with(handoff.envelope, wanted),
                          message=handoff.message)
            for result in await delivery(sub):
                done[str(result.recipient.path.mailbox)] = result
        results = []
        for r in handoff.envelope.recipients:
            reply = refused[str(r.path.mailbox)]
            results.append(done[str(r.path.mailbox)] if reply is None
                           else RecipientResult.failed(r, reply))
        return results

    return deliver


def _with(envelope: Envelope, recipients: list[Any]) -> Envelope:
    return Envelope(mail_from=envelope.mail_from, mail_parameters=envelope.mail_parameters,
                    recipients=tuple(recipients), size=envelope.size)


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_temporary_refusal_stops_the_pass(tmp_path: Path, protocol: str) -> None:
    remote = Remote(tmp_path)
    remote.put(1, 2, 3)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            acct = account(maa, protocol, after="delete")
            refusing = judged(delivery, lambda n, _: TEMPORARY if n == 2 else None)
            report, = await make_mra(tmp_path, [acct], refusing).run_once()
            assert report.error is not None and "451" in report.error
            assert len(report.fetched) == 1 and report.removed == 1
            assert remote.numbers() == [2, 3]
            assert local_numbers(tmp_path) == [1]
            report, = await make_mra(tmp_path, [acct], delivery).run_once()
            assert report.error is None and len(report.fetched) == 2 and report.removed == 2

    run(main())
    assert remote.numbers() == []
    assert local_numbers(tmp_path) == [1, 2, 3]


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_permanent_refusal_is_skipped_and_the_pass_goes_on(tmp_path: Path, protocol: str) -> None:
    remote = Remote(tmp_path)
    remote.put(1, 2, 3)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            acct = account(maa, protocol, after="delete")
            mra = make_mra(tmp_path, [acct],
                           judged(delivery, lambda n, _: PERMANENT if n == 2 else None))
            for expected in (2, 0):
                report, = await mra.run_once()
                assert report.error is None and len(report.fetched) == expected
                skipped, = report.skipped
                assert "refused" in skipped.reason and "550" in skipped.reason
            assert remote.numbers() == [2]  # left on the server, refused at each pass

    run(main())
    assert local_numbers(tmp_path) == [1, 3]


def test_refused_for_good_for_one_of_two_recipients(tmp_path: Path) -> None:
    """Delivered to bob, refused for good for carol: the message is done (removed, not
    fetched again, so bob gets one copy)."""
    remote = Remote(tmp_path)
    remote.put(1, 2)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            acct = account(maa, "imap", after="delete", recipients=(LOCAL_USER, CAROL))
            mra = make_mra(tmp_path, [acct], judged(
                delivery, lambda n, who: PERMANENT if n == 1 and who == CAROL else None))
            first, = await mra.run_once()
            assert first.error is None and len(first.fetched) == 2 and first.removed == 2
            again, = await mra.run_once()
            assert again.fetched == ()

    run(main())
    assert remote.numbers() == []
    assert local_numbers(tmp_path) == [1, 2]
    assert local_numbers(tmp_path, CAROL) == [2]


def test_refused_for_now_for_one_of_two_recipients(tmp_path: Path) -> None:
    """Delivered to bob, refused for now for carol: the pass stops, the message stays
    and comes again next time, to both (bob gets a duplicate, carol her copy)."""
    remote = Remote(tmp_path)
    remote.put(1)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            acct = account(maa, "pop3", after="delete", recipients=(LOCAL_USER, CAROL))
            first, = await make_mra(tmp_path, [acct], judged(
                delivery, lambda n, who: TEMPORARY if who == CAROL else None)).run_once()
            assert first.error is not None and first.fetched == () and first.removed == 0
            assert remote.numbers() == [1]
            second, = await make_mra(tmp_path, [acct], delivery).run_once()
            assert second.error is None and len(second.fetched) == 1

    run(main())
    assert remote.numbers() == []
    assert local_numbers(tmp_path) == [1, 1]
    assert local_numbers(tmp_path, CAROL) == [1]


# --- SMTPForward -------------------------------------------------------------------------


class Recorder(SMTPHandler):
    """Keeps each message; refuses RCPT for ``refuse`` (address to reply)."""

    def __init__(self, refuse: dict[str, Reply] | None = None) -> None:
        self.messages: list[tuple[Envelope, bytes]] = []
        self.refuse = refuse or {}

    async def on_rcpt(self, session: Session, event: RcptTo) -> Accept | Reject:
        reply = self.refuse.get(str(event.path.mailbox))
        return Accept() if reply is None else Reject(reply=reply)

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        self.messages.append((envelope, bytes(message)))
        return Accept()


def test_smtp_forward_to_our_smtp_server(tmp_path: Path) -> None:
    """The envelope sender is the message's Return-Path (else the null sender); the
    recipients are the account's; a recipient refused for good is reported."""
    remote = Remote(tmp_path)
    with remote.store() as store, store.folder("INBOX") as box:
        box.append_bytes(b"Return-Path: <alice@remote.test>\r\n" + message(1))
        box.append_bytes(message(2))
    recorder = Recorder({"nobody@local.test": PERMANENT})

    async def main() -> None:
        async with SMTPServer(recorder, ServerConfig(hostname="mx.local.test")) as smtp, \
                serving(tmp_path) as maa:
            forward = SMTPForward("127.0.0.1", smtp.port)
            acct = account(maa, "imap", after="delete", recipients=(LOCAL_USER, CAROL))
            report, = await make_mra(tmp_path, [acct], forward).run_once()
            assert report.error is None and len(report.fetched) == 2
            nobody = account(maa, "imap", name="nobody", recipients=("nobody@local.test",))
            remote.put(3)
            report, = await make_mra(tmp_path, [nobody], forward).run_once()
            skipped, = report.skipped
            assert "550" in skipped.reason

    run(main())
    assert remote.numbers() == [3]
    senders = [str(e.mail_from) for e, _ in recorder.messages]
    assert senders == ["<alice@remote.test>", "<>"]
    for envelope, _ in recorder.messages:
        assert [str(r.path.mailbox) for r in envelope.recipients] == [LOCAL_USER, CAROL]
    assert [body_number(d) for _, d in recorder.messages] == [1, 2]


def test_smtp_forward_temporary_recipient_refusal_stops_the_pass(tmp_path: Path) -> None:
    remote = Remote(tmp_path)
    remote.put(1, 2)
    recorder = Recorder({CAROL: TEMPORARY})

    async def main() -> None:
        async with SMTPServer(recorder, ServerConfig(hostname="mx.local.test")) as smtp, \
                serving(tmp_path) as maa:
            acct = account(maa, "pop3", after="delete", recipients=(CAROL,))
            report, = await make_mra(tmp_path, [acct],
                                     SMTPForward("127.0.0.1", smtp.port)).run_once()
            assert report.error is not None and "451" in report.error
            assert report.fetched == ()

    run(main())
    assert recorder.messages == []
    assert remote.numbers() == [1, 2]


def test_lmtp_forward_to_our_lmtp_server(tmp_path: Path) -> None:
    """Over LMTP into an MDA: bob is a user, carol is not (refused for good at RCPT),
    so the message is delivered to bob and done."""
    remote = Remote(tmp_path)
    remote.put(1, 2)
    users = LocalRecipients({LOCAL_USER: None}, {"postmaster": [LOCAL_USER]},
                            local_domains={"local.test"})
    mda = MDA(str(tmp_path / "local" / "{user}" / "Maildir"), users, fsync=False)

    async def main() -> None:
        async with LMTPServer("lmtp.local.test", mda, close_deliver=True) as lmtp, \
                serving(tmp_path) as maa:
            await lmtp.serve("127.0.0.1", 0)
            forward = SMTPForward("127.0.0.1", lmtp.port, lmtp=True)
            acct = account(maa, "imap", after="delete", recipients=(LOCAL_USER, CAROL))
            report, = await make_mra(tmp_path, [acct], forward).run_once()
            assert report.error is None and len(report.fetched) == 2 and report.removed == 2

    run(main())
    assert remote.numbers() == []
    assert local_numbers(tmp_path) == [1, 2]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize("lmtp", [False, True])
def test_forward_to_a_closed_port_is_temporary(tmp_path: Path, lmtp: bool) -> None:
    remote = Remote(tmp_path)
    remote.put(1, 2)

    async def main() -> None:
        async with serving(tmp_path) as maa:
            acct = account(maa, "imap", after="delete")
            forward = SMTPForward("127.0.0.1", closed_port(), lmtp=lmtp)
            report, = await make_mra(tmp_path, [acct], forward).run_once()
            assert report.error is not None and "451" in report.error
            assert report.fetched == () and report.skipped == () and report.removed == 0

    run(main())
    assert remote.numbers() == [1, 2]


# --- crash windows -------------------------------------------------------------------------


def failing_once(cls: type, name: str, monkeypatch: pytest.MonkeyPatch,
                 when: Callable[..., bool] = lambda *a, **k: True) -> list[int]:
    """Make ``cls.name`` raise ``ConnectionResetError`` the first time ``when`` says so;
    returns a list that counts the failures."""
    original = getattr(cls, name)
    failures: list[int] = []

    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not failures and when(*args, **kwargs):
            failures.append(1)
            raise ConnectionResetError(f"{name} failed (test)")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, wrapper)
    return failures


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_a_destination_that_raises(tmp_path: Path, protocol: str) -> None:
    """Not a refusal but an error: the pass fails; what was handed off before is
    remembered (and removed at the next pass for POP3, whose DELEs need QUIT), the
    rest comes next time."""
    remote = Remote(tmp_path)
    remote.put(1, 2, 3)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            acct = account(maa, protocol, after="delete")

            async def breaking(handoff: Handoff) -> list[RecipientResult]:
                if b"m2" in handoff.message.header:
                    raise OSError("disk on fire (test)")
                return await delivery(handoff)

            report, = await make_mra(tmp_path, [acct], breaking).run_once()
            assert report.error is not None and "disk on fire" in report.error
            assert local_numbers(tmp_path) == [1]
            assert remote.numbers() == [1, 2, 3] if protocol == "pop3" else [2, 3]
            report, = await make_mra(tmp_path, [acct], delivery).run_once()
            assert report.error is None and len(report.fetched) == 2
            assert report.removed == 3 if protocol == "pop3" else 2

    run(main())
    assert remote.numbers() == []
    assert local_numbers(tmp_path) == [1, 2, 3]


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_removal_fails_after_the_state_was_saved(tmp_path: Path, protocol: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The DELE (POP3) or the STORE \\Deleted (IMAP) breaks once the messages are
    remembered: the next pass fetches nothing again and removes them."""
    remote = Remote(tmp_path)
    remote.put(1, 2, 3)
    if protocol == "pop3":
        failures = failing_once(POP3Client, "dele", monkeypatch)
    else:
        failures = failing_once(IMAPClient, "store", monkeypatch)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            acct = account(maa, protocol, after="delete")
            mra = make_mra(tmp_path, [acct], delivery)
            first, = await mra.run_once()
            assert first.error is not None and failures == [1]
            assert remote.numbers() == [1, 2, 3]
            state = state_of(mra, acct.name)
            assert (len(state["uidls"]) if protocol == "pop3"
                    else state["folders"]["INBOX"]["uids"]) in (3, "1:3")
            second, = await mra.run_once()
            assert second.error is None and second.fetched == () and second.removed == 3

    run(main())
    assert remote.numbers() == []
    assert local_numbers(tmp_path) == [1, 2, 3]


@pytest.mark.parametrize("command", ["move", "expunge"])
def test_imap_move_or_expunge_fails_after_the_state_was_saved(
        tmp_path: Path, command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = Remote(tmp_path)
    remote.put(1, 2)
    remote.create("Archive")
    failures = failing_once(IMAPClient, command, monkeypatch)
    after = "move" if command == "move" else "delete"

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            acct = account(maa, "imap", after=after,
                           move_to="Archive" if after == "move" else None)
            mra = make_mra(tmp_path, [acct], delivery)
            first, = await mra.run_once()
            assert first.error is not None and failures == [1]
            second, = await mra.run_once()
            assert second.error is None and second.fetched == () and second.removed == 2

    run(main())
    assert remote.numbers() == []
    assert remote.numbers("Archive") == ([1, 2] if command == "move" else [])
    assert local_numbers(tmp_path) == [1, 2]


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_a_break_after_the_first_batch(tmp_path: Path, protocol: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """More messages than a batch: the first batch is saved and marked, then the
    connection breaks in the middle of the second (RETR or FETCH raises): nothing is
    lost or fetched twice, whatever the server had removed."""
    monkeypatch.setattr(_mra_fetch, "BATCH", 4)
    remote = Remote(tmp_path)
    remote.put(*range(1, 11))
    if protocol == "pop3":
        failing_once(POP3Client, "retrieve", monkeypatch, lambda n, *_: n == 7)
    else:
        failing_once(IMAPClient, "fetch_message", monkeypatch, lambda n, *_, **__: n == 7)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            mra = make_mra(tmp_path, [account(maa, protocol, after="delete")], delivery)
            first, = await mra.run_once()
            assert first.error is not None and "test" in first.error
            assert local_numbers(tmp_path) == [1, 2, 3, 4, 5, 6]
            # POP3: no QUIT, so no DELE took effect; IMAP: the first batch expunged,
            # then 5 and 6 on the way out (the session itself still works).
            assert remote.numbers() == (list(range(1, 11)) if protocol == "pop3"
                                        else list(range(7, 11)))
            second, = await mra.run_once()
            assert second.error is None and len(second.fetched) == 4

    run(main())
    assert remote.numbers() == []
    assert local_numbers(tmp_path) == list(range(1, 11))


def test_remote_store_sanity(tmp_path: Path) -> None:
    """The harness itself: Remote.put numbers messages from UID 1 in order."""
    remote = Remote(tmp_path)
    assert remote.put(5, 6) == [1, 2]
    with MaildirStore(remote.path) as store, store.folder("INBOX") as box:
        assert [body_number(box.read_message(m.uid)) for m in box.messages()] == [5, 6]


@pytest.mark.parametrize("how", ["expunged", "answered-empty"])
def test_a_message_gone_before_its_fetch(tmp_path: Path, how: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Another client expunged message 1 after the pass listed it: our server answers
    NO [EXPUNGEISSUED], others OK without the message (RFC 2180 §4.1.2); either way
    nothing is handed off for it (no empty message), and the pass goes on."""
    remote = Remote(tmp_path)
    remote.put(1, 2)
    original = IMAPClient.fetch_message

    async def gone(self: IMAPClient, n: int, sink: Any, **kwargs: Any) -> Any:
        if n == 1:
            if how == "answered-empty":
                return ()
            with remote.store() as store, store.folder("INBOX") as box:
                box.set_flags([1], ["\\Deleted"], "add")
                box.expunge([1])
        return await original(self, n, sink, **kwargs)

    monkeypatch.setattr(IMAPClient, "fetch_message", gone)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            mra = make_mra(tmp_path, [account(maa, "imap")], delivery)
            report, = await mra.run_once()
            assert report.error is None and [f.rsplit("/", 1)[1] for f in report.fetched] == [
                "2"]

    run(main())
    assert local_numbers(tmp_path) == [2]


class RefusingUpdate:
    """A POP3 server whose QUIT fails to remove the messages marked deleted (``-ERR``,
    RFC 1939 §6) the first ``failures`` times; it keeps its messages in memory."""

    def __init__(self, messages: list[bytes], failures: int = 1) -> None:
        self.messages = dict(enumerate(messages, 1))
        self.failures = failures
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> RefusingUpdate:
        self.server = await asyncio.start_server(self.session, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        deleted: set[int] = set()
        writer.write(b"+OK ready\r\n")
        try:
            for _ in range(100):
                words = (await asyncio.wait_for(reader.readline(), 10)).split()
                if not words:
                    break
                command, args = words[0].upper(), words[1:]
                live = {n: m for n, m in self.messages.items() if n not in deleted}
                if command == b"CAPA":
                    writer.write(b"+OK\r\nUSER\r\nUIDL\r\n.\r\n")
                elif command == b"UIDL":
                    writer.write(b"+OK\r\n" + b"".join(b"%d u%d\r\n" % (n, n) for n in live)
                                 + b".\r\n")
                elif command == b"LIST":
                    writer.write(b"+OK\r\n" + b"".join(b"%d %d\r\n" % (n, len(m))
                                                       for n, m in live.items()) + b".\r\n")
                elif command == b"RETR":
                    writer.write(b"+OK\r\n" + live[int(args[0])] + b".\r\n")
                elif command == b"DELE":
                    deleted.add(int(args[0]))
                    writer.write(b"+OK\r\n")
                elif command == b"QUIT":
                    if deleted and self.failures:
                        self.failures -= 1
                        writer.write(b"-ERR some deleted messages not removed\r\n")
                    else:
                        for n in deleted:
                            del self.messages[n]
                        writer.write(b"+OK bye\r\n")
                    break
                else:
                    writer.write(b"+OK\r\n")
                await writer.drain()
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


def test_pop3_quit_that_removes_nothing(tmp_path: Path) -> None:
    """The server answers QUIT with -ERR (the deletions did not happen): the pass
    says so, and the next pass (fetching nothing again) deletes them."""

    async def main() -> None:
        async with RefusingUpdate([message(1), message(2)]) as server, \
                local(tmp_path) as delivery:
            acct = account(None, "pop3", port=server.port, after="delete")
            mra = make_mra(tmp_path, [acct], delivery)
            first, = await mra.run_once()
            assert len(first.fetched) == 2 and first.removed == 0
            assert first.error is not None and "QUIT" in first.error
            assert sorted(server.messages) == [1, 2]
            second, = await mra.run_once()
            assert second.error is None and second.fetched == () and second.removed == 2
            assert server.messages == {}

    run(main())
    assert local_numbers(tmp_path) == [1, 2]


def test_imap_seen_fails_after_the_state_was_saved(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The STORE \\Seen breaks once the messages are remembered: the next pass sets
    \\Seen on the remembered messages still without it, and fetches nothing again."""
    remote = Remote(tmp_path)
    remote.put(1, 2)
    failures = failing_once(IMAPClient, "store", monkeypatch)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            mra = make_mra(tmp_path, [account(maa, "imap", after="seen")], delivery)
            first, = await mra.run_once()
            assert first.error is not None and failures == [1]
            assert not any("\\Seen" in i.flags for i in remote.infos())
            second, = await mra.run_once()
            assert second.error is None and second.fetched == ()
            assert all("\\Seen" in i.flags for i in remote.infos())

    run(main())
    assert local_numbers(tmp_path) == [1, 2]


def test_smtp_forward_one_recipient_refused_for_good_at_rcpt(tmp_path: Path) -> None:
    remote = Remote(tmp_path)
    remote.put(1)
    recorder = Recorder({CAROL: PERMANENT})

    async def main() -> None:
        async with SMTPServer(recorder, ServerConfig(hostname="mx.local.test")) as smtp, \
                serving(tmp_path) as maa:
            acct = account(maa, "imap", after="delete", recipients=(CAROL, LOCAL_USER))
            mra = make_mra(tmp_path, [acct], SMTPForward("127.0.0.1", smtp.port))
            report, = await mra.run_once()
            assert report.error is None and len(report.fetched) == 1 and report.removed == 1
            again, = await mra.run_once()
            assert again.fetched == ()

    run(main())
    [(envelope, _)] = recorder.messages
    assert [str(r.path.mailbox) for r in envelope.recipients] == [LOCAL_USER]
    assert remote.numbers() == []
