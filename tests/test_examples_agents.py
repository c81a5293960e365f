"""The agent examples of issue 18, each run as ``python examples/X.py`` would be (a
subprocess in a temporary folder), its visible effect checked; the pieces they define
(a policy, a rate limit) tested on their own. Sockets on 127.0.0.1 only, on free ports;
every wait bounded."""

from __future__ import annotations

import ast
import asyncio
import os
import queue
import runpy
import signal
import smtplib
import subprocess
import sys
import textwrap
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from mailagents.agents import MAA, Local, Refused, Relay
from mailagents.aio import Session, make_self_signed
from mailagents.smtp import MailFrom, MailParameters, parse_mailbox
from mailagents.smtp import Path as SMTPPath
from mailagents.store import MaildirStore
from mailagents.userdb import PasswordFile

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 60.0


def example_env(extra: dict[str, str] | None) -> dict[str, str]:
    """The environment of an example: ours, the checkout first on the path (as for a
    clone that is not installed), and ``extra``."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


def run_example(name: str, *args: str, cwd: Path, env: dict[str, str] | None = None,
                ) -> subprocess.CompletedProcess[str]:
    """Run ``python examples/<name> ARGS`` to its end."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], cwd=cwd, capture_output=True,
        text=True, timeout=TIMEOUT, env=example_env(env), check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


class Running:
    """An example running as a server: its output lines as they come."""

    def __init__(self, name: str, *args: str, cwd: Path, env: dict[str, str] | None = None):
        self.process = subprocess.Popen(
            [sys.executable, str(EXAMPLES / name), *args], cwd=cwd, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=example_env(env),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.matched: set[int] = set()
        assert self.process.stdout is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_line(self, start: str, timeout: float = TIMEOUT) -> str:
        """The first output line starting with ``start`` that no earlier call returned,
        once it has come."""
        for index, line in enumerate(self.seen):
            if index not in self.matched and line.startswith(start):
                self.matched.add(index)
                return line
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no line {start!r} in {timeout:g} s: {self.seen}") from None
            if got is None:
                self.lines.put(None)  # the end, for the next call too
                raise AssertionError(f"exited without {start!r}: {self.seen}\n{self.stderr()}")
            self.seen.append(got)
            if got.startswith(start):
                self.matched.add(len(self.seen) - 1)
                return got

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read()

    def wait_exit(self, timeout: float = TIMEOUT) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def running() -> Iterator[list[Running]]:
    """Examples started as servers, killed at the end if still running."""
    started: list[Running] = []
    yield started
    for example in started:
        example.stop()


def load(name: str) -> dict[str, Any]:
    """The example's definitions, without running its demonstration."""
    return runpy.run_path(str(EXAMPLES / name), run_name="example")


# ------------------------------------------------------------------- the MTA's policy


def test_mta_reject_domain_runs(tmp_path: Path) -> None:
    out = run_example("mta_reject_domain.py", cwd=tmp_path).stdout.splitlines()
    assert out == [
        "refused: {'carol@blocked.example': "
        "(550, b'5.7.1 We take no mail for blocked.example')}",
        "RCPT dave@elsewhere.example: (250, b'2.1.5 Recipient OK')",
        "alice got: ['Subject: Hello']",
    ]
    assert list(tmp_path.iterdir()) == []  # all in its temporary folder


def test_mta_reject_domain_is_under_fifteen_lines() -> None:
    source = (EXAMPLES / "mta_reject_domain.py").read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    counted = 0
    for node in tree.body:
        names = {getattr(node, "name", None)}
        if isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        imports_needed = isinstance(node, ast.ImportFrom) and node.module in (
            "typing", "mailagents.agents", "mailagents.smtp")
        if names & {"NO_MAIL", "RejectDomain", "make_mta"} or imports_needed:
            assert node.end_lineno is not None
            counted += sum(1 for line in lines[node.lineno - 1:node.end_lineno]
                           if line.strip() and not line.strip().startswith("#"))
    assert 10 <= counted < 15, counted


def test_reject_domain_policy_keeps_the_usual_rules() -> None:
    example = load("mta_reject_domain.py")
    policy = example["RejectDomain"](local_domains={"example.test"},
                                     relay_networks=["127.0.0.0/8"])
    here, away = ("127.0.0.1", 4000), ("192.0.2.7", 4000)

    def classify(address: str, peer: tuple[str, int], identity: str | None = None) -> object:
        return policy.classify(SMTPPath(parse_mailbox(address)), peer=peer, identity=identity)

    for peer in (here, away):
        for address in ("carol@blocked.example", "Carol@BLOCKED.Example"):
            refused = classify(address, peer)
            assert isinstance(refused, Refused)
            assert refused.reply.code == 550 and refused.reply.enhanced == "5.7.1"
    assert isinstance(classify("carol@blocked.example", away, "alice"), Refused)
    assert isinstance(classify("alice@example.test", away), Local)
    assert isinstance(classify("dave@elsewhere.example", here), Relay)
    assert isinstance(classify("dave@mx.blocked.example", here), Relay)  # the domain only
    denied = classify("dave@elsewhere.example", away)  # still no open relay
    assert isinstance(denied, Refused) and denied.reason == "relay-denied"
    assert denied.reply.lines == ("Relay access denied",)


# ------------------------------------------------------------------- the MSA's limit


def test_msa_rate_limit_runs(tmp_path: Path) -> None:
    out = run_example("msa_rate_limit.py", cwd=tmp_path).stdout.splitlines()
    assert out == [
        "message 1: accepted",
        "message 2: accepted",
        "message 3: accepted",
        "message 4: refused at MAIL: 451 4.7.0 Sending rate limit reached for "
        "alice@example.test: 3 messages in 60 s, try again in 60 s",
        "bob's new mail: 3 messages",
    ]


def test_rate_limit_window_slides_per_user() -> None:
    example = load("msa_rate_limit.py")
    now = [0.0]
    limit = example["RateLimit"](limit=2, window=10, clock=lambda: now[0])
    event = MailFrom(path=SMTPPath(parse_mailbox("alice@example.test")),
                     parameters=MailParameters())

    def mail(identity: str, at: float) -> str | None:
        now[0] = at
        reply = asyncio.run(limit(Session(peer=("127.0.0.1", 1), identity=identity), event))
        return None if reply is None else f"{reply.code} {reply.enhanced} {reply.text}"

    assert mail("alice@example.test", 0) is None
    assert mail("Alice@Example.test", 1) is None  # one user, whatever the case
    assert mail("alice@example.test", 2) == (
        "451 4.7.0 Sending rate limit reached for alice@example.test: 2 messages in 10 s, "
        "try again in 8 s")
    assert mail("bob@example.test", 2) is None  # each user has a limit of their own
    assert mail("alice@example.test", 9.5) is not None  # refused ones do not count...
    assert mail("alice@example.test", 10) is None  # ...and the one at 0 has left
    assert mail("alice@example.test", 10.5) is not None  # 1 and 10 are in the window
    assert mail("alice@example.test", 11) is None
    assert len(limit.started["alice@example.test"]) == 2
    with pytest.raises(ValueError):
        example["RateLimit"](limit=0, window=10)


# --------------------------------------------------------------- the MDA's extensions


def test_mda_plus_address_runs(tmp_path: Path) -> None:
    out = run_example("mda_plus_address.py", cwd=tmp_path).stdout.splitlines()
    assert out == [
        "[LocalTarget(identity='alice', address='alice@example.test', folder='lists')]",
        "RCPT bob+lists@example.test: 550 5.1.1 No such user here",
        "RCPT alice+lists@example.test: accepted",
        "alice+lists@example.test: delivered into lists",
        "alice+shop@example.test: delivered into INBOX",
        "alice@example.test: delivered into INBOX",
        "INBOX: ['Subject: number 2', 'Subject: number 3']",
        "lists: ['Subject: number 1']",
    ]


# ---------------------------------------------------------------- IMAP over an mbox


def test_imap_over_mbox_runs(tmp_path: Path) -> None:
    out = run_example("imap_over_mbox.py", cwd=tmp_path).stdout
    lines = out.splitlines()
    assert lines[:6] == [
        "SELECT INBOX: ('OK', [b'2'])",
        "FETCH: b'Subject: first\\r\\n\\r\\n'",
        "FETCH: b'Hello Alice.\\r\\n'",
        "FETCH: b'Subject: second\\r\\n\\r\\n'",
        "FETCH: b'From the top, once more.\\r\\n'",  # >From unescaped (mboxrd)
        "EXPUNGE: ('OK', [b'1'])",
    ]
    # The spool is an mbox still: the first message gone, the second with its flag.
    assert out.split("the spool now:\n", 1)[1] == (
        "From carol@example.org Mon Dec  7 10:00:00 2026\n"
        "From: carol@example.org\nSubject: second\nStatus: RO\n\n"
        ">From the top, once more.\n\n"
    )


# --------------------------------------------------------------------- the LMTP sink


def test_lmtp_sink_answers_each_recipient_and_prints(
    tmp_path: Path, running: list[Running]
) -> None:
    sink = Running("lmtp_sink.py", "--port", "0", "--max-messages", "2", cwd=tmp_path)
    running.append(sink)
    port = int(sink.wait_line("LMTP sink on 127.0.0.1:").rsplit(":", 1)[1])
    lmtp = smtplib.LMTP("127.0.0.1", port, timeout=20)
    try:
        assert lmtp.sendmail("a@example.org", ["b@example.test", "c@example.test"],
                             "Subject: one\r\n\r\nBody.\r\n") == {}
        # smtplib reads one reply after the data; LMTP gives one per recipient.
        code, text = lmtp.getreply()
        assert code == 250 and b"<c@example.test> delivered" in text
        code, _ = lmtp.mail("<>")
        assert code == 250
        for rcpt in ("postmaster@example.test",):
            assert lmtp.rcpt(rcpt)[0] == 250
        lmtp.putcmd("data")
        assert lmtp.getreply()[0] == 354
        lmtp.send(b"Subject: two\r\nX-Test: yes\r\n\r\n..dot\r\n.\r\n")
        code, text = lmtp.getreply()  # one reply per recipient: one here
        assert code == 250 and b"<postmaster@example.test> delivered" in text
        # The second message was the last: the sink is stopping (421 unless the QUIT
        # came first).
        assert lmtp.docmd("QUIT")[0] in (221, 421)
    finally:
        lmtp.close()
    assert sink.wait_exit() == 0
    first = sink.wait_line("--- message 1 ")
    assert first.startswith("--- message 1 from <a@example.org> to <b@example.test>, "
                            "<c@example.test>, ")
    assert sink.wait_line("Received: from ").endswith(" ([127.0.0.1])")
    sink.wait_line("\tby sink.example.test (mailagents) with LMTP id ")
    sink.wait_line("Subject: one")
    assert sink.wait_line("--- message 2 ").startswith(
        "--- message 2 from <> to <postmaster@example.test>, ")
    sink.wait_line("Subject: two")
    sink.wait_line("X-Test: yes")
    sink.wait_line("stopped after 2 message(s)")
    assert not any("dot" in line for line in sink.seen)  # the header only


def test_lmtp_sink_stops_on_sigterm(tmp_path: Path, running: list[Running]) -> None:
    sink = Running("lmtp_sink.py", "--port", "0", cwd=tmp_path)
    running.append(sink)
    sink.wait_line("LMTP sink on 127.0.0.1:")
    sink.process.send_signal(signal.SIGTERM)
    assert sink.wait_exit() == 0
    sink.wait_line("stopped after 0 message(s)")


# ------------------------------------------------------------ the fetchmail replacement


class RemoteServers:
    """Our MAA as the remote side: POP3 with implicit TLS for ``pop``, IMAP with
    STARTTLS for ``imap``, over Maildirs under ``root``, in a thread of its own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.certificate = make_self_signed(["localhost"])
        self.users = PasswordFile(root / "users", scrypt_n=2**8)
        self.users.set_password("pop", "pop secret")
        self.users.set_password("imap", "imap secret")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.maa = MAA("remote.example.test", self.users, str(root / "{user}" / "Maildir"),
                       ssl_context=self.certificate.server_context(), fsync=False)
        self.run(self.maa.serve("127.0.0.1", None, 0, 0, None))

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(TIMEOUT)

    def add(self, user: str, subject: str) -> None:
        with MaildirStore(self.root / user / "Maildir", fsync=False) as store, \
                store.folder("INBOX") as inbox:
            inbox.append_bytes(f"Message-ID: <{subject}@remote.test>\r\nSubject: {subject}"
                               "\r\n\r\nHello.\r\n".encode())

    def count(self, user: str) -> int:
        with MaildirStore(self.root / user / "Maildir", fsync=False) as store, \
                store.folder("INBOX") as inbox:
            return len(inbox.messages())

    def close(self) -> None:
        try:
            self.run(self.maa.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
            self.users.close()


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[RemoteServers]:
    servers = RemoteServers(tmp_path / "remote")
    try:
        yield servers
    finally:
        servers.close()


def fetch_config(home: Path, remote: RemoteServers) -> Path:
    remote.certificate.write(home)  # cert.pem: the authority the accounts trust
    (home / "imap.password").write_text("imap secret\n")
    path = home / "fetch.toml"
    path.write_text(f"""\
state_dir = "state"
[destination]
maildir = "mail/{{user}}/Maildir"

[[account]]
name = "home"
protocol = "pop3"
host = "127.0.0.1"
port = {remote.maa.pop3s_port}
ca_file = "cert.pem"
user = "pop"
password_env = "HOME_PASSWORD"
recipients = ["alice@example.test"]
after = "delete"

[[account]]
name = "work"
protocol = "imap"
host = "127.0.0.1"
port = {remote.maa.imap_port}
tls = "starttls"
ca_file = "cert.pem"
user = "imap"
password_file = "imap.password"
recipients = ["alice@example.test", "bob@example.test"]
interval = 30
""")
    return path


def local_subjects(home: Path, user: str) -> list[str]:
    new = home / "mail" / user / "Maildir" / "new"
    return sorted(line for path in new.iterdir() for line in path.read_text().splitlines()
                  if line.startswith("Subject:"))


def test_fetchmail_replacement_once(tmp_path: Path, remote: RemoteServers) -> None:
    home = tmp_path / "home"
    home.mkdir()
    config = fetch_config(home, remote)
    remote.add("pop", "p1")
    remote.add("pop", "p2")
    remote.add("imap", "i1")
    env = {"HOME_PASSWORD": "pop secret"}
    # Run from elsewhere: the file's paths are taken from its own folder.
    first = run_example("fetchmail_replacement.py", str(config), cwd=tmp_path, env=env)
    assert sorted(first.stdout.splitlines()) == [
        "home: 2 new, 2 removed (ok)", "work: 1 new, 0 removed (ok)"]
    assert local_subjects(home, "alice@example.test") == [
        "Subject: i1", "Subject: p1", "Subject: p2"]
    assert local_subjects(home, "bob@example.test") == ["Subject: i1"]
    assert remote.count("pop") == 0 and remote.count("imap") == 1  # deleted; kept
    assert sorted(p.name for p in (home / "state").iterdir()) and not (
        tmp_path / "state").exists()
    second = run_example("fetchmail_replacement.py", str(config), cwd=tmp_path, env=env)
    assert sorted(second.stdout.splitlines()) == [
        "home: 0 new, 0 removed (ok)", "work: 0 new, 0 removed (ok)"]
    # No password: said before anything is fetched.
    unset = subprocess.run(
        [sys.executable, str(EXAMPLES / "fetchmail_replacement.py"), str(config)],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT, check=False,
        env={k: v for k, v in example_env(None).items() if k != "HOME_PASSWORD"},
    )
    assert (unset.returncode, unset.stdout) == (1, "")
    assert unset.stderr == "account 'home': HOME_PASSWORD is not set\n"
    # A wrong password: reported, exit status 1.
    failed = subprocess.run(
        [sys.executable, str(EXAMPLES / "fetchmail_replacement.py"), str(config)],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT, check=False,
        env=example_env({"HOME_PASSWORD": "wrong"}),
    )
    assert failed.returncode == 1, failed.stderr
    assert any(line.startswith("home: 0 new, 0 removed (error: ")
               for line in failed.stdout.splitlines()), failed.stdout


def test_fetchmail_replacement_sample_is_what_the_real_command_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The TOML of the docstring is valid for ``python -m mailagents fetch`` too, and
    the example makes the same accounts of it."""
    from mailagents import _cli_fetch

    docstring = ast.get_docstring(ast.parse((EXAMPLES / "fetchmail_replacement.py").read_text()))
    assert docstring is not None
    sample = textwrap.dedent(docstring.split("::\n\n", 1)[1].split("\n\nRelative", 1)[0])
    config = tmp_path / "fetch.toml"
    config.write_text(sample)
    (tmp_path / "work.password").write_text("work secret\n")
    monkeypatch.setenv("HOME_PASSWORD", "home secret")
    assert _cli_fetch.main(["--config", str(config), "--check"]) == 0
    assert capsys.readouterr().out.endswith(": 2 account(s), configuration valid\n")
    example = load("fetchmail_replacement.py")
    tables = tomllib.loads(sample)["account"]
    home, work = (example["account"](table, tmp_path) for table in tables)
    assert (home.name, home.protocol, home.tls, home.after, home.secret()) == (
        "home", "pop3", "implicit", "delete", "home secret")
    assert (work.tls, work.folders, work.secret()) == (
        "starttls", ("INBOX", "Lists"), "work secret")
    assert work.recipients == ("alice@example.test",)


def test_fetchmail_replacement_daemon(
    tmp_path: Path, remote: RemoteServers, running: list[Running]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    config = fetch_config(home, remote)
    remote.add("imap", "before")
    daemon = Running("fetchmail_replacement.py", str(config), "--daemon", cwd=tmp_path,
                     env={"HOME_PASSWORD": "pop secret"})
    running.append(daemon)
    daemon.wait_line("work: 1 new")
    daemon.wait_line("home: 0 new")
    # New mail on the IMAP side: IDLE says so, well before the 30 s interval.
    remote.add("imap", "later")
    daemon.wait_line("work: 1 new", timeout=25)
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
    assert local_subjects(home, "alice@example.test") == ["Subject: before", "Subject: later"]
