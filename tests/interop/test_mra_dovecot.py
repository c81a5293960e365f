"""Our MRA against Dovecot 2.3 (issue 17's proof): POP3 (STLS and implicit TLS) and
IMAP (STARTTLS and implicit TLS), each with the test certificate verified, in every
mode the protocol allows (POP3 keep and delete; IMAP keep, seen, delete and move): the
messages arrive with the octets Dovecot serves, a second pass fetches nothing, a new
message is fetched alone, and the server is left as the mode says (looked at through
IMAP). Then a UIDVALIDITY reset on Dovecot's side (its dovecot-uidlist and index files
removed while it is stopped, so that it numbers the folder anew): the messages with a
Message-ID are recognised, neither lost nor fetched twice, in keep and in delete mode;
one without a Message-ID comes twice, as documented."""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailagents.agents import MRA, Account, MaildirDelivery, SMTPForward
from mailagents.agents.mra import FetchReport
from mailagents.aio import SelfSignedCertificate, make_self_signed
from mailagents.aio.imap_client import IMAPClient, IMAPTimeouts
from mailagents.imap.responses import FetchData
from mailagents.store.maildir import MaildirStore

from .peers import (
    Dovecot,
    DovecotPOP3,
    free_ports,
    mail_tree,
    require_root,
    running_postfix,
)

pytestmark = pytest.mark.interop

TIMEOUT = 60.0
MESSAGES = [
    b"Message-ID: <dots@example.test>\r\nFrom: a@example.test\r\nSubject: dots\r\n\r\n"
    b".\r\n..\r\n.x\r\n...\r\nend\r\n",
    b"Message-ID: <8bit@example.test>\r\nFrom: a@example.test\r\nSubject: 8bit\r\n\r\n"
    b"\xe9t\xe9 \xff\r\n" + b"x" * 998 + b"\r\n",
    b"Message-ID: <big@example.test>\r\nFrom: a@example.test\r\nSubject: big\r\n\r\n"
    + b"".join(b".%06d The quick brown fox jumps over the lazy dog.\r\n" % i
               for i in range(4_000)),
]
NO_ID = b"From: a@example.test\r\nSubject: no Message-ID\r\n\r\nanonymous\r\n"
NEW = b"Message-ID: <new@example.test>\r\nFrom: b@example.test\r\nSubject: later\r\n\r\nnew\r\n"
RECIPIENT = "me@local.test"


class DovecotTLS(DovecotPOP3):
    """Dovecot with the certificate on every listener: STARTTLS on ``imap_port``, STLS
    on ``pop3_port``, implicit TLS on ``imaps_port`` and ``pop3s_port``."""

    def __init__(self, maildir: Path, cert: SelfSignedCertificate) -> None:
        self.imaps_port = 0
        super().__init__(maildir, cert_pem=cert.cert_pem, key_pem=cert.key_pem)

    def _new_ports(self) -> None:
        self.imap_port, self.pop3_port, self.pop3s_port, self.imaps_port = free_ports(4)

    def _ports(self) -> list[int]:
        return [*super()._ports(), self.imaps_port]

    def _config(self) -> Path:
        conf = super()._config()
        text = conf.read_text()
        listener = "  inet_listener imaps {\n    port = 0\n  }"
        assert listener in text, "Dovecot template changed"
        text = text.replace(
            listener,
            f"  inet_listener imaps {{\n    address = 127.0.0.1\n"
            f"    port = {self.imaps_port}\n    ssl = yes\n  }}",
        )
        conf.write_text(text)
        return conf

    def restart(self) -> None:
        """Stop the daemon (keeping its folder and the Maildir) and start it again."""
        self._kill()
        self.start()


@pytest.fixture(scope="module")
def cert() -> SelfSignedCertificate:
    return make_self_signed(["localhost"])


@pytest.fixture
def dovecot(cert: SelfSignedCertificate) -> Iterator[DovecotTLS]:
    require_root("Dovecot")
    tree = mail_tree()
    maildir = tree / "Maildir"
    with MaildirStore(maildir) as store, store.folder("INBOX") as inbox:
        for data in MESSAGES:
            inbox.append_bytes(data)
    server = DovecotTLS(maildir, cert)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(tree, ignore_errors=True)


class Fetcher:
    """An MRA with one account on the Dovecot, into a local Maildir."""

    def __init__(self, root: Path, dovecot: DovecotTLS, cert: SelfSignedCertificate,
                 protocol: str, tls: str, **options: Any) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        ca = root / "ca.pem"
        ca.write_bytes(cert.cert_pem)
        if protocol == "pop3":
            port = dovecot.pop3s_port if tls == "implicit" else dovecot.pop3_port
        else:
            port = dovecot.imaps_port if tls == "implicit" else dovecot.imap_port
        options.setdefault("recipients", (RECIPIENT,))
        self.options: dict[str, Any] = dict(
            name=f"{protocol}-{tls}", protocol=protocol, host="127.0.0.1", port=port,
            user=dovecot.user, password=dovecot.password, tls=tls, ca_file=str(ca),
            timeout=20.0, **options,
        )

    def account(self, **changes: Any) -> Account:
        self.options.update(changes)
        return Account(**self.options)

    def fetch(self, **changes: Any) -> FetchReport:
        account = self.account(**changes)

        async def main() -> FetchReport:
            delivery = MaildirDelivery(str(self.root / "local" / "{user}" / "Maildir"),
                                       fsync=False)
            try:
                mra = MRA([account], delivery, state_dir=self.root / "state", fsync=False)
                report = await mra.fetch(account)
            finally:
                delivery.close()
            assert report.error is None, report
            return report

        return asyncio.run(asyncio.wait_for(main(), TIMEOUT))

    def local(self) -> list[bytes]:
        """The messages in the local Maildir, sorted."""
        path = self.root / "local" / RECIPIENT / "Maildir"
        if not path.exists():
            return []
        with MaildirStore(path, fsync=False) as store, store.folder("INBOX") as inbox:
            inbox.refresh()
            return sorted(inbox.read_message(m.uid) for m in inbox.messages())


def imap(dovecot: DovecotTLS, work: Any) -> Any:
    """Run ``work(client)`` on a logged-in IMAP session of our client (clear text on
    loopback: the checks of the server's side)."""

    async def main() -> Any:
        async with IMAPClient.connect("127.0.0.1", dovecot.imap_port, starttls=False,
                                      timeouts=IMAPTimeouts.uniform(20)) as client:
            await client.login(dovecot.user, dovecot.password, allow_plaintext=True)
            return await work(client)

    return asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def server_view(dovecot: DovecotTLS, folder: str = "INBOX") -> tuple[int, list[set[str]]]:
    """(UIDVALIDITY, the flags of each message) of ``folder`` on the Dovecot."""

    async def work(client: IMAPClient) -> tuple[int, list[set[str]]]:
        box = await client.examine(folder)
        flags: list[set[str]] = []
        if box.exists:
            for item in await client.fetch("1:*", "(FLAGS)"):
                if isinstance(item, FetchData):  # \Recent: a session-only flag
                    flags.append({str(f) for f in item.flags or ()} - {"\\Recent"})
        return box.uidvalidity or 0, flags

    return imap(dovecot, work)  # type: ignore[no-any-return]


def append(dovecot: DovecotTLS, *messages: bytes, folder: str = "INBOX") -> None:
    async def work(client: IMAPClient) -> None:
        for data in messages:
            await client.append(folder, data)

    imap(dovecot, work)


def create(dovecot: DovecotTLS, folder: str) -> None:
    async def work(client: IMAPClient) -> None:
        await client.create(folder)

    imap(dovecot, work)


# --------------------------------------------------------------------------- POP3


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
@pytest.mark.parametrize("after", ["keep", "delete"])
def test_pop3(tmp_path: Path, dovecot: DovecotTLS, cert: SelfSignedCertificate,
              tls: str, after: str) -> None:
    fetcher = Fetcher(tmp_path, dovecot, cert, "pop3", tls, after=after)
    first = fetcher.fetch()
    assert len(first.fetched) == len(MESSAGES), first
    assert first.removed == (len(MESSAGES) if after == "delete" else 0)
    assert fetcher.local() == sorted(MESSAGES)
    again = fetcher.fetch()
    assert again.fetched == () and again.removed == 0, again
    append(dovecot, NEW)
    third = fetcher.fetch()
    assert len(third.fetched) == 1, third
    assert fetcher.local() == sorted([*MESSAGES, NEW])
    _, flags = server_view(dovecot)
    assert len(flags) == (0 if after == "delete" else len(MESSAGES) + 1)


# --------------------------------------------------------------------------- IMAP


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
@pytest.mark.parametrize("after", ["keep", "seen", "delete", "move"])
def test_imap(tmp_path: Path, dovecot: DovecotTLS, cert: SelfSignedCertificate,
              tls: str, after: str) -> None:
    options: dict[str, Any] = {"after": after, "idle": False}
    if after == "move":
        create(dovecot, "Archive")
        options["move_to"] = "Archive"
    fetcher = Fetcher(tmp_path, dovecot, cert, "imap", tls, **options)
    first = fetcher.fetch()
    assert len(first.fetched) == len(MESSAGES), first
    assert first.removed == (len(MESSAGES) if after in ("delete", "move") else 0)
    assert fetcher.local() == sorted(MESSAGES)
    again = fetcher.fetch()
    assert again.fetched == () and again.removed == 0, again
    append(dovecot, NEW)
    third = fetcher.fetch()
    assert len(third.fetched) == 1, third
    assert fetcher.local() == sorted([*MESSAGES, NEW])
    _, flags = server_view(dovecot)
    total = len(MESSAGES) + 1
    if after == "keep":
        assert flags == [set()] * total  # not even \Seen: the folder was EXAMINEd
    elif after == "seen":
        assert flags == [{"\\Seen"}] * total
    else:
        assert flags == []
    if after == "move":
        _, moved = server_view(dovecot, "Archive")
        assert len(moved) == total


# --------------------------------------------------------------- UIDVALIDITY reset


def reset_uidvalidity(dovecot: DovecotTLS) -> None:
    """Stop Dovecot, remove what it numbers the folder by (dovecot-uidlist and its
    index files; dovecot-uidvalidity stays, so the new value is another), start it."""
    dovecot._kill()
    removed = 0
    for path in dovecot.maildir.iterdir():
        if path.name == "dovecot-uidlist" or path.name.startswith("dovecot.index"):
            path.unlink()
            removed += 1
    assert removed, sorted(p.name for p in dovecot.maildir.iterdir())
    time.sleep(1.1)  # in case Dovecot takes the time as the new UIDVALIDITY
    dovecot.start()


@pytest.mark.parametrize("after", ["keep", "delete"])
def test_imap_uidvalidity_reset(tmp_path: Path, dovecot: DovecotTLS,
                                cert: SelfSignedCertificate, after: str) -> None:
    append(dovecot, NO_ID)
    before, _ = server_view(dovecot)
    fetcher = Fetcher(tmp_path, dovecot, cert, "imap", "implicit", after="keep",
                      idle=False)
    first = fetcher.fetch()
    assert len(first.fetched) == len(MESSAGES) + 1, first
    reset_uidvalidity(dovecot)
    fetcher = Fetcher(tmp_path, dovecot, cert, "imap", "implicit", after=after,
                      idle=False)  # the ports may have changed
    now, flags = server_view(dovecot)
    assert now != before and len(flags) == len(MESSAGES) + 1, (before, now)
    append(dovecot, NEW)
    second = fetcher.fetch()
    # Recognised by Message-ID and size: the three; fetched again: the one without a
    # Message-ID; fetched as new: NEW.
    assert second.recognised == len(MESSAGES), second
    assert len(second.fetched) == 2, second
    assert fetcher.local() == sorted([*MESSAGES, NO_ID, NO_ID, NEW])
    assert second.removed == (len(MESSAGES) + 2 if after == "delete" else 0)
    third = fetcher.fetch()
    assert third.fetched == () and third.recognised == 0, third
    _, flags = server_view(dovecot)
    assert len(flags) == (0 if after == "delete" else len(MESSAGES) + 2)
    assert fetcher.local() == sorted([*MESSAGES, NO_ID, NO_ID, NEW])


# ------------------------------------------------------- no STARTTLS: no downgrade


def test_starttls_required_when_dovecot_offers_none(tmp_path: Path) -> None:
    """A Dovecot without TLS (no STARTTLS, no STLS in its capabilities): an account
    with ``tls="starttls"`` fails its pass, fetches nothing and logs in nowhere."""
    require_root("Dovecot")
    tree = mail_tree()
    maildir = tree / "Maildir"
    with MaildirStore(maildir) as store, store.folder("INBOX") as inbox:
        inbox.append_bytes(MESSAGES[0])
    server = Dovecot(maildir)
    try:
        server.start()
        accounts = [
            Account(name=protocol, protocol=protocol, host="127.0.0.1",  # type: ignore[arg-type]
                    port=server.pop3_port if protocol == "pop3" else server.imap_port,
                    user=server.user, password=server.password, recipients=(RECIPIENT,),
                    tls="starttls", timeout=20.0, idle=False)
            for protocol in ("pop3", "imap")
        ]

        async def main() -> list[FetchReport]:
            delivery = MaildirDelivery(str(tmp_path / "local" / "{user}" / "Maildir"),
                                       fsync=False)
            try:
                mra = MRA(accounts, delivery, state_dir=tmp_path / "state", fsync=False)
                return await mra.run_once()
            finally:
                delivery.close()

        reports = asyncio.run(asyncio.wait_for(main(), TIMEOUT))
        for report in reports:
            assert report.error is not None and report.fetched == (), report
            assert "TLS" in report.error, report
        log = server.log()
        assert "Login: user=<" not in log and "auth failed" not in log, log
        assert log.count("pop3-login: Info: Disconnected") >= 1, log
        assert not (tmp_path / "local").exists()
    finally:
        server.stop()
        shutil.rmtree(tree, ignore_errors=True)


# ------------------------------------------------------------------ size limit


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_too_large_left_on_dovecot_and_reported(
    tmp_path: Path, dovecot: DovecotTLS, cert: SelfSignedCertificate, protocol: str
) -> None:
    big = next(m for m in MESSAGES if b"Subject: big" in m)
    fetcher = Fetcher(tmp_path, dovecot, cert, protocol, "implicit", after="delete",
                      max_size=len(big) - 1, idle=False)
    first = fetcher.fetch()
    assert len(first.fetched) == len(MESSAGES) - 1, first
    assert [s.size for s in first.skipped] == [len(big)], first
    assert first.skipped[0].reason.startswith("too large"), first
    assert fetcher.local() == sorted(m for m in MESSAGES if m != big)
    again = fetcher.fetch()  # still there, still too large, reported again
    assert again.fetched == () and len(again.skipped) == 1, again
    _, flags = server_view(dovecot)
    assert len(flags) == 1
    fetcher.fetch(max_size=None)
    assert fetcher.local() == sorted(MESSAGES)


# ---------------------------------------------- the daemon: IMAP IDLE on Dovecot


def test_daemon_idles_on_dovecot_and_fetches_what_arrives(
    tmp_path: Path, dovecot: DovecotTLS, cert: SelfSignedCertificate
) -> None:
    """``python -m mailagents fetch --daemon``: Dovecot offers IDLE, so a message
    appended while the daemon waits is fetched long before the polling interval
    (600 s); twice, in delete mode; SIGTERM ends it with status 0."""
    (tmp_path / "ca.pem").write_bytes(cert.cert_pem)
    config = tmp_path / "fetch.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n\n[destination]\n'
        f'maildir = "{tmp_path / "local" / "{user}" / "Maildir"}"\n\n'
        f'[[account]]\nname = "dovecot"\nprotocol = "imap"\nhost = "127.0.0.1"\n'
        f'port = {dovecot.imaps_port}\ntls = "implicit"\nca_file = "{tmp_path / "ca.pem"}"\n'
        f'user = "{dovecot.user}"\npassword = "{dovecot.password}"\n'
        f'recipients = ["{RECIPIENT}"]\nafter = "delete"\ninterval = 600\ntimeout = 30\n'
    )
    package = Path(__file__).resolve().parent.parent.parent
    process = subprocess.Popen(
        [sys.executable, "-m", "mailagents", "fetch", "--config", str(config), "--daemon"],
        env={**os.environ, "PYTHONPATH": str(package)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    lines: queue.Queue[bytes] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in process.stdout or ()],
                              daemon=True)
    reader.start()
    seen: list[str] = []

    def next_report(timeout: float = 45.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5).decode(errors="replace").rstrip()
            except queue.Empty:
                assert process.poll() is None, seen
                continue
            seen.append(line)
            if line.startswith("dovecot: "):
                return line
        raise AssertionError(f"no report in {timeout} s: {seen}")

    def wait_fetched(count: int) -> None:
        """Reports until one says ``count`` fetched and removed; the others (a pass
        after the server told of a change, finding nothing) say 0."""
        while True:
            report = next_report()
            assert report.endswith("(ok)"), seen
            if report.startswith(f"dovecot: {count} fetched, {count} removed"):
                return
            assert report.startswith("dovecot: 0 fetched, 0 removed"), seen

    fetcher = Fetcher(tmp_path, dovecot, cert, "imap", "implicit")
    try:
        wait_fetched(len(MESSAGES))
        time.sleep(1.0)  # into IDLE (a message that comes before is fetched anyway)
        append(dovecot, NEW)
        wait_fetched(1)
        time.sleep(1.0)
        append(dovecot, NO_ID)
        wait_fetched(1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, seen
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        reader.join(10)
    assert fetcher.local() == sorted([*MESSAGES, NEW, NO_ID])
    _, flags = server_view(dovecot)
    assert flags == []


# ------------------------------------------------------------- SCRAM-SHA-256


class DovecotSCRAM(DovecotTLS):
    """:class:`DovecotTLS` offering SCRAM-SHA-256 (and SCRAM-SHA-1) besides PLAIN."""

    def _config(self) -> Path:
        conf = super()._config()
        text = conf.read_text()
        assert "auth_mechanisms = plain login" in text, "Dovecot template changed"
        text = text.replace("auth_mechanisms = plain login",
                            "auth_mechanisms = scram-sha-256 scram-sha-1 plain login")
        conf.write_text(text)
        return conf


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_scram_sha_256_chosen_when_dovecot_offers_it(
    tmp_path: Path, cert: SelfSignedCertificate, protocol: str
) -> None:
    """No mechanism configured: the MRA logs in with SCRAM-SHA-256, the strongest that
    Dovecot offers (its log names the mechanism), over POP3 (SASL) and IMAP."""
    require_root("Dovecot")
    tree = mail_tree()
    maildir = tree / "Maildir"
    with MaildirStore(maildir) as store, store.folder("INBOX") as inbox:
        inbox.append_bytes(MESSAGES[0])
    server = DovecotSCRAM(maildir, cert)
    try:
        server.start()
        fetcher = Fetcher(tmp_path, server, cert, protocol, "implicit", idle=False)
        report = fetcher.fetch()
        assert len(report.fetched) == 1, report
        assert fetcher.local() == [MESSAGES[0]]
        log = server.log()
        assert "method=SCRAM-SHA-256" in log, log
        assert "method=PLAIN" not in log, log
    finally:
        server.stop()
        shutil.rmtree(tree, ignore_errors=True)


# ------------------------------------------- Dovecot to Postfix: SMTPForward


RETURNED = (b"Return-Path: <sender@example.org>\r\nMessage-ID: <bounced@example.test>\r\n"
            b"From: sender@example.org\r\nSubject: with a Return-Path\r\n\r\nreinjected\r\n")


def test_reinjected_into_postfix_over_smtp(
    tmp_path: Path, dovecot: DovecotTLS, cert: SelfSignedCertificate
) -> None:
    """Fetched from Dovecot in delete mode and re-injected into a private Postfix
    (SMTPForward): each message is in the user's Maildir with the octets Dovecot
    served, under the envelope sender of its Return-Path field (else the null
    sender), and gone from Dovecot. A recipient Postfix refuses for good (550 5.1.1)
    leaves the message on Dovecot, reported."""
    require_root("Postfix")
    append(dovecot, RETURNED)
    with running_postfix() as postfix:
        forward = SMTPForward("127.0.0.1", postfix.port, starttls=False)
        fetcher = Fetcher(tmp_path, dovecot, cert, "imap", "implicit", after="delete",
                          idle=False, recipients=("alice@example.test",), deliver=forward)
        report = fetcher.fetch()
        assert len(report.fetched) == len(MESSAGES) + 1 and not report.skipped, report
        assert report.removed == len(MESSAGES) + 1, report
        for sent in [*MESSAGES, RETURNED]:
            message_id = sent.split(b"\r\n", 1)[0] if sent is not RETURNED else b"<bounced@"
            got = postfix.wait_delivered("alice", message_id, timeout=30)
            got = got.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            if sent is RETURNED:
                assert got.startswith(b"Return-Path: <sender@example.org>\r\n"), got[:300]
                assert got.endswith(sent[sent.index(b"\r\n") + 2:]), got[:300]
            else:
                assert got.startswith(b"Return-Path: <>\r\n"), got[:300]
                assert got.endswith(sent), got[:300]
        _, flags = server_view(dovecot)
        assert flags == []

        append(dovecot, NEW)
        refused = Fetcher(tmp_path / "refused", dovecot, cert, "imap", "implicit",
                          after="delete", idle=False, deliver=forward,
                          recipients=("nobody-here@example.test",))
        report = refused.fetch()
        assert report.fetched == () and len(report.skipped) == 1, report
        assert "550" in report.skipped[0].reason, report
        _, flags = server_view(dovecot)
        assert len(flags) == 1  # left there
