"""fetchmail, getmail6 and s-nail, the IMAP fetchers and a mailx, against our IMAP
server (StoreIMAPHandler over a Maildir and an mbox store): fetchmail with "keep"
(the messages stay, marked \\Seen) and without (flagged \\Deleted and expunged), over
clear text, STARTTLS and implicit TLS, and in IDLE mode; getmail6 remembering what it
fetched (a second run fetches nothing, then only a new message) and deleting; s-nail
headless listing, printing, flagging and deleting. Every message arrives with the
octets we stored (after the fetcher's own trace header and LF line ends are undone)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from mailagents.agents._imap_session import imap_config, store_imap_server
from mailagents.aio import ListenerLimits, SelfSignedCertificate, make_self_signed
from mailagents.aio.imap import IMAPServer
from mailagents.store import MaildirStore, MboxStore, Store
from mailagents.userdb import PasswordFile

from .peers import LoopThread, chown_tree, mail_tree, require_binary, require_root

pytestmark = pytest.mark.interop

T = TypeVar("T")

USER = "fetch@example.test"
PASSWORD = "fetch secret 1"
HOSTNAME = "localhost"  # the name in the certificate
RUN_TIMEOUT = 30.0

MESSAGES = [
    b"From: a@example.test\r\nSubject: dots\r\n\r\n.\r\n..\r\n.x\r\n...\r\nend\r\n",
    b"From: a@example.test\r\nSubject: 8bit\r\n\r\n\xe9t\xe9 \xff\r\n" + b"x" * 998 + b"\r\n",
    b"From: a@example.test\r\nSubject: mbox quoting\r\n\r\nFrom the start\r\n>From x\r\n",
    b"From: a@example.test\r\nSubject: big\r\n\r\n"
    + b"".join(
        b".%06d The quick brown fox jumps over the lazy dog.\r\n" % i for i in range(20_000)
    ),
]
NEW = b"From: b@example.test\r\nSubject: arrived later\r\n\r\n.\r\nnew\r\n"

# Header fields a fetcher puts in front of the message (fetchmail: Received;
# getmail6: Return-Path, and Delivered-To/Received unless told not to).
TRACE = re.compile(
    rb"\A(?:(?:Received|Return-Path|Delivered-To|X-getmail-[\w-]+):"
    rb"[^\n]*\n(?:[ \t][^\n]*\n)*)+"
)


def as_sent(delivered: bytes) -> bytes:
    """A delivered message back to the octets our server sent: the fetcher's trace
    fields taken off the top, LF line ends made CRLF again."""
    body = TRACE.sub(b"", delivered, count=1)
    return body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def short(output: bytes) -> str:
    """A transcript for an assertion message: the last 6,000 characters."""
    return re.sub(r"[#*.]{10,}", "...", output.decode(errors="replace"))[-6000:]


def run_peer(
    argv: list[str], env: dict[str, str], stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """Run a client to its end (at most RUN_TIMEOUT s); on a time-out, fail with what
    it had written so far."""
    try:
        return subprocess.run(
            argv, input=stdin, env=env, capture_output=True, timeout=RUN_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as expired:
        out = (expired.stdout or b"") + b"\n--- stderr:\n" + (expired.stderr or b"")
        pytest.fail(f"{argv[0]} timed out; its output:\n{short(out)}")


class Server:
    """Our IMAP server on a loop thread over one store (``kind``: Maildir or mbox):
    a listener offering STARTTLS that also takes passwords in clear text (so that the
    clients can be tried without TLS too), and one with implicit TLS."""

    def __init__(
        self, root: Path, cert: SelfSignedCertificate, kind: str, *, plaintext: bool = True
    ) -> None:
        root.mkdir()
        self.root = root
        self.kind = kind
        self.users = PasswordFile(root / "users", scrypt_n=2**8)
        self.users.set_password(USER, PASSWORD)
        self.store: Store
        if kind == "maildir":
            self.store = MaildirStore(root / "Maildir", fsync=False)
        else:
            self.store = MboxStore(root / "mail", inbox=root / "inbox", fsync=False)
        self.thread = LoopThread()
        self.servers: list[IMAPServer] = []
        self.cert = cert
        self.plaintext = plaintext

    async def _start(self) -> None:
        async def stores(identity: str) -> Store:
            return self.store

        limits = ListenerLimits(
            auth_failure_delay=0.01,
            max_auth_failure_delay=0.05,
            shutdown_grace=0.5,
            shutdown_timeout=0.5,
        )
        for implicit in (False, True):
            server = store_imap_server(
                self.users,
                stores,
                config=imap_config(allow_plaintext_login=self.plaintext and not implicit),
                ssl_context=self.cert.server_context(),
                implicit_tls=implicit,
                limits=limits,
            )
            self.servers.append(server)
            await server.start("127.0.0.1", 0)

    async def _close(self) -> None:
        for server in self.servers:
            await server.close()

    @property
    def port(self) -> int:
        """The clear-text port (STARTTLS offered)."""
        return self.servers[0].port

    @property
    def tls_port(self) -> int:
        """The implicit-TLS port."""
        return self.servers[1].port

    def __enter__(self) -> Server:
        self.thread.__enter__()
        try:
            self.thread.run(self._start())
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.thread.run(self._close())
        finally:
            self.thread.__exit__(None, None, None)
            self.store.close()
            self.users.close()

    def in_store(self, work: Callable[[], T]) -> T:
        """``work`` on the store's executor, as the server's own store calls run."""

        async def call() -> T:
            return await asyncio.get_running_loop().run_in_executor(self.store.executor, work)

        return self.thread.run(call(), timeout=RUN_TIMEOUT)

    def deliver(self, *messages: bytes, flags: tuple[str, ...] = ()) -> None:
        def work() -> None:
            with self.store.folder("INBOX") as inbox:
                for data in messages:
                    inbox.append_bytes(data, flags=flags)

        self.in_store(work)

    def stored(self) -> list[tuple[bytes, frozenset[str]]]:
        """INBOX's messages and their flags, in UID order."""

        def work() -> list[tuple[bytes, frozenset[str]]]:
            with self.store.folder("INBOX") as inbox:
                inbox.refresh()
                return [(inbox.read_message(m.uid), m.flags) for m in inbox.messages()]

        return self.in_store(work)


@pytest.fixture(scope="module")
def cert() -> SelfSignedCertificate:
    return make_self_signed((HOSTNAME,))


@pytest.fixture(params=["maildir", "mbox"])
def server(
    request: pytest.FixtureRequest, tmp_path: Path, cert: SelfSignedCertificate
) -> Iterator[Server]:
    with Server(tmp_path / "server", cert, request.param) as running:
        yield running


@pytest.fixture
def maildir_server(tmp_path: Path, cert: SelfSignedCertificate) -> Iterator[Server]:
    with Server(tmp_path / "server", cert, "maildir") as running:
        yield running


# ------------------------------------------------------------------------- fetchmail

# fetchmail's exit statuses (fetchmail(1), "EXIT CODES").
FM_MAIL, FM_NOMAIL = 0, 1


def split_mbox(data: bytes) -> list[bytes]:
    """The messages an ``mda "cat >> FILE"`` appended, one after the other: each starts
    with fetchmail's Received field."""
    parts = re.split(rb"(?m)^(?=Received: from 127\.0\.0\.1)", data)
    return [part for part in parts if part]


class Fetchmail:
    """fetchmail with a private HOME and rc file, delivering every message through
    ``mda "cat >> FILE"`` into one file, :attr:`out`."""

    def __init__(self, home: Path, cert: SelfSignedCertificate) -> None:
        self.binary = require_binary("fetchmail")
        self.home = home
        home.mkdir()
        self.out = home / "out"
        self.cafile = home / "cert.pem"
        self.cafile.write_bytes(cert.cert_pem)

    def rc(self, port: int, options: str) -> Path:
        rc = self.home / "fetchmailrc"
        rc.write_text(
            "set no syslog\n"
            f'set idfile "{self.home}/fetchids"\n'
            f"poll 127.0.0.1 with proto IMAP service {port} auth password timeout 30\n"
            f'  user "{USER}" there with password "{PASSWORD}" is root here\n'
            f"  {options}\n"
            f'  mda "cat >> {self.out}"\n'
        )
        rc.chmod(0o600)
        return rc

    def command(self, port: int, options: str) -> tuple[list[str], dict[str, str]]:
        return (
            [self.binary, "--nodetach", "--verbose", "-f", str(self.rc(port, options))],
            {**os.environ, "HOME": str(self.home), "FETCHMAILHOME": str(self.home)},
        )

    def run(self, port: int, options: str) -> tuple[int, str]:
        """One poll; (exit status, transcript)."""
        argv, env = self.command(port, options)
        done = run_peer(argv, env)
        return done.returncode, short(done.stdout + done.stderr)

    def delivered(self) -> list[bytes]:
        """Every message delivered so far, as sent, in order."""
        if not self.out.exists():
            return []
        return [as_sent(part) for part in split_mbox(self.out.read_bytes())]

    def verified(self) -> str:
        """Options that check our certificate (a CA file and the name)."""
        return f'sslcertck sslcertfile "{self.cafile}" sslcommonname {HOSTNAME}'


@pytest.fixture
def fetchmail(tmp_path: Path, cert: SelfSignedCertificate) -> Fetchmail:
    return Fetchmail(tmp_path / "fetchmail", cert)


def test_fetchmail_keep_marks_seen_then_fetchall_deletes_and_expunges(
    server: Server, fetchmail: Fetchmail
) -> None:
    server.deliver(*MESSAGES)
    status, log = fetchmail.run(server.port, "keep sslproto ''")
    assert status == FM_MAIL, log
    assert fetchmail.delivered() == MESSAGES, log
    # "keep": every message stays, marked \Seen (fetchmail stores the flag itself).
    stored = server.stored()
    assert [data for data, _ in stored] == MESSAGES
    assert all("\\Seen" in flags and "\\Deleted" not in flags for _, flags in stored), stored

    # Nothing unseen is left: nothing is fetched.
    status, log = fetchmail.run(server.port, "keep sslproto ''")
    assert status == FM_NOMAIL, log
    assert len(fetchmail.delivered()) == len(MESSAGES)

    # A new message: only it is fetched.
    server.deliver(NEW)
    status, log = fetchmail.run(server.port, "keep sslproto ''")
    assert status == FM_MAIL, log
    assert fetchmail.delivered() == [*MESSAGES, NEW], log

    # Without "keep", with "fetchall": everything is fetched again, flagged \Deleted
    # and expunged.
    status, log = fetchmail.run(server.port, "fetchall sslproto ''")
    assert status == FM_MAIL, log
    assert re.search(r"IMAP> A\d+ STORE \d+ \+FLAGS \(\\Seen \\Deleted\)", log), log
    assert re.search(r"IMAP> A\d+ EXPUNGE", log), log
    assert fetchmail.delivered() == [*MESSAGES, NEW, *MESSAGES, NEW], log
    assert server.stored() == []


def test_fetchmail_without_keep_fetches_only_unseen_and_deletes_them(
    maildir_server: Server, fetchmail: Fetchmail
) -> None:
    server = maildir_server
    server.deliver(MESSAGES[0], flags=("\\Seen",))
    server.deliver(*MESSAGES[1:])
    status, log = fetchmail.run(server.port, "no keep sslproto ''")
    assert status == FM_MAIL, log
    assert fetchmail.delivered() == MESSAGES[1:], log
    assert server.stored() == [(MESSAGES[0], frozenset({"\\Seen"}))]


def test_fetchmail_starttls_with_the_certificate_checked(
    server: Server, fetchmail: Fetchmail
) -> None:
    server.deliver(*MESSAGES[:2])
    status, log = fetchmail.run(server.port, f"keep sslproto 'tls1.2+' {fetchmail.verified()}")
    assert status == FM_MAIL, log
    assert "STARTTLS" in log and "upgrade to TLS succeeded" in log, log
    assert fetchmail.delivered() == MESSAGES[:2], log


def fingerprint(cert: SelfSignedCertificate, digest: str) -> str:
    """The certificate's fingerprint with ``digest``, as fetchmail and s-nail write
    it: upper-case hex pairs with colons."""
    der = ssl.PEM_cert_to_DER_cert(cert.cert_pem.decode())
    text = hashlib.new(digest, der, usedforsecurity=False).hexdigest().upper()
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2))


def test_fetchmail_implicit_tls_checked_by_name_and_by_fingerprint(
    server: Server, fetchmail: Fetchmail, cert: SelfSignedCertificate
) -> None:
    server.deliver(MESSAGES[0])
    status, log = fetchmail.run(server.tls_port, f"keep ssl {fetchmail.verified()}")
    assert status == FM_MAIL, log
    assert fetchmail.delivered() == [MESSAGES[0]], log

    # The fingerprint instead of the CA file (certificate checks off).
    server.deliver(NEW)
    md5 = fingerprint(cert, "md5")
    status, log = fetchmail.run(server.tls_port, f'keep ssl no sslcertck sslfingerprint "{md5}"')
    assert status == FM_MAIL, log
    assert "fingerprints match" in log, log
    assert fetchmail.delivered() == [MESSAGES[0], NEW], log

    # A wrong fingerprint: no connection, nothing fetched.
    server.deliver(MESSAGES[1])
    wrong = ":".join(["00"] * 16)
    status, log = fetchmail.run(server.tls_port, f'keep ssl no sslcertck sslfingerprint "{wrong}"')
    assert status not in (FM_MAIL, FM_NOMAIL), log
    assert fetchmail.delivered() == [MESSAGES[0], NEW], log


def wait_for(condition: Callable[[], bool], timeout: float = RUN_TIMEOUT) -> bool:
    """Poll ``condition`` every 0.1 s for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def idling(log: Path, count: int) -> bool:
    """fetchmail's log shows its ``count``-th IDLE accepted (``+`` after it)."""
    parts = log.read_bytes().split(b" IDLE\n")
    return len(parts) > count and b"IMAP< + " in parts[count]


def test_fetchmail_idle_fetches_what_arrives_while_idling(
    server: Server, fetchmail: Fetchmail
) -> None:
    """fetchmail with "idle" stays logged in, IDLE after each poll; a message appended
    through the store (the in-process change hub) wakes it and is fetched, and so is
    one another program delivers (the folder poll): a file renamed into new/, an
    append to the mbox by another process."""
    server.deliver(MESSAGES[0])
    argv, env = fetchmail.command(server.port, "keep idle sslproto ''")
    log = fetchmail.home / "log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: idling(log, 1)), short(log.read_bytes())
        assert fetchmail.delivered() == [MESSAGES[0]]
        server.deliver(NEW)
        assert wait_for(lambda: idling(log, 2)), short(log.read_bytes())
        assert fetchmail.delivered() == [MESSAGES[0], NEW], short(log.read_bytes())
        expected = [MESSAGES[0], NEW]
        if server.kind == "maildir":
            # Another program's delivery: written in tmp/, renamed into new/.
            maildir = server.root / "Maildir"
            (maildir / "tmp" / "1.M1P1.elsewhere").write_bytes(MESSAGES[1])
            os.rename(maildir / "tmp" / "1.M1P1.elsewhere", maildir / "new" / "1.M1P1.elsewhere")
        else:
            # Another process appends to the mbox (with the store's locks).
            script = (
                "import sys\n"
                "from mailagents.store import MboxStore\n"
                "store = MboxStore(sys.argv[1], inbox=sys.argv[2], fsync=False)\n"
                "with store, store.folder('INBOX') as inbox:\n"
                "    inbox.append_bytes(sys.stdin.buffer.read())\n"
            )
            root = server.root
            package = str(Path(__file__).resolve().parents[2])
            done = run_peer(
                [sys.executable, "-c", script, str(root / "mail"), str(root / "inbox")],
                {**os.environ, "PYTHONPATH": package},
                MESSAGES[1],
            )
            assert done.returncode == 0, done.stderr
        assert wait_for(lambda: idling(log, 3)), short(log.read_bytes())
        expected.append(MESSAGES[1])
        assert fetchmail.delivered() == expected, short(log.read_bytes())
        assert process.poll() is None, short(log.read_bytes())  # still there, idling
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    stored = server.stored()
    assert len(stored) == len(expected)
    assert all("\\Seen" in flags for _, flags in stored), stored


# -------------------------------------------------------------------------- getmail6


# getmail6 (6.18.11) forks its delivery child (Maildir, Mboxrd, external MDA) and only
# then installs the SIGCHLD handler that wakes it: a child that is done first goes
# unnoticed, and getmail waits out its whole time-out ("waiting child pid N timed
# out") with a zombie child, the message delivered but not remembered. This peer bug
# has nothing to do with IMAP; getmail6 gets, through a sitecustomize module, a plain
# waitpid() for its child instead.
GETMAIL_WAIT_FIX = """
import os

try:
    from getmailcore import baseclasses
    from getmailcore.exceptions import getmailOperationError
except ImportError:
    baseclasses = None

if baseclasses is not None:

    def _prepare_child(self):
        pass

    def _wait_for_child(self, childpid):
        pid, status = os.waitpid(childpid, 0)
        if not os.WIFEXITED(status):
            raise getmailOperationError("child pid %d failed to exit" % pid)
        return os.WEXITSTATUS(status)

    baseclasses.ForkingBase._prepare_child = _prepare_child
    baseclasses.ForkingBase._wait_for_child = _wait_for_child
"""


class Getmail:
    """getmail6 with a private HOME and getmail directory (its memory of what it has
    fetched), into a Maildir or an mboxrd file owned by ``nobody`` (as root, getmail6
    delivers only as another user)."""

    def __init__(self, home: Path, cert: SelfSignedCertificate, destination: str) -> None:
        self.binary = require_binary("getmail")
        require_root("getmail6 (delivering as user nobody)")
        # Not under tmp_path: pytest makes /tmp/pytest-of-root private again whenever
        # a test run starts, and nobody could no longer reach the destination.
        self.home = home
        self.destination = destination
        nobody = pwd.getpwnam("nobody")
        if destination == "Maildir":
            self.out = home / "Maildir"
            for sub in ("cur", "new", "tmp"):
                (self.out / sub).mkdir(parents=True)
            chown_tree(self.out, nobody.pw_uid, nobody.pw_gid)
        else:
            self.out = home / "mboxrd"
            self.out.write_bytes(b"")
            os.chown(self.out, nobody.pw_uid, nobody.pw_gid)
        self.cafile = home / "cert.pem"
        self.cafile.write_bytes(cert.cert_pem)
        self.fix = home / "python"
        self.fix.mkdir()
        (self.fix / "sitecustomize.py").write_text(GETMAIL_WAIT_FIX)

    def command(
        self, port: int, *, tls: bool, read_all: bool, delete: bool
    ) -> tuple[list[str], dict[str, str]]:
        """The command line and environment of a run with a fresh rc file."""
        retriever = (
            "type = SimpleIMAPSSLRetriever\n"
            f"ca_certs = {self.cafile}\n"
            f"ssl_cert_hostname = {HOSTNAME}\n"
            if tls
            else "type = SimpleIMAPRetriever\n"
        )
        path = f"{self.out}/" if self.destination == "Maildir" else str(self.out)
        rc = self.home / "getmailrc"
        rc.write_text(
            "[retriever]\n"
            f"{retriever}"
            "server = 127.0.0.1\n"
            f"port = {port}\n"
            f"username = {USER}\n"
            f"password = {PASSWORD}\n"
            "mailboxes = ('INBOX',)\n"
            "record_mailbox = false\n"
            # Also how long getmail6 waits for its delivery child (as nobody).
            "timeout = 60\n"
            "\n[destination]\n"
            f"type = {self.destination}\n"
            f"path = {path}\n"
            "user = nobody\n"
            "\n[options]\n"
            f"read_all = {str(read_all).lower()}\n"
            f"delete = {str(delete).lower()}\n"
            "delivered_to = false\n"
            "received = false\n"
            "verbose = 2\n"
        )
        env = {
            **os.environ,
            "HOME": str(self.home),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(self.fix),
        }
        return [self.binary, "--getmaildir", str(self.home), "--rcfile", "getmailrc"], env

    def run(self, port: int, *, tls: bool, read_all: bool, delete: bool) -> tuple[int, str]:
        """One run; (exit status, output)."""
        done = run_peer(*self.command(port, tls=tls, read_all=read_all, delete=delete))
        return done.returncode, short(done.stdout + done.stderr)

    def delivered(self) -> list[bytes]:
        """Every message delivered so far, as sent (sorted: a Maildir has no order)."""
        if self.destination == "Maildir":
            files = [p for sub in ("new", "cur") for p in (self.out / sub).iterdir()]
            return sorted(as_sent(p.read_bytes()) for p in files)
        return sorted(as_sent(m) for m in mboxrd_messages(self.out.read_bytes()))


def mboxrd_messages(data: bytes) -> list[bytes]:
    """An mboxrd file's messages: the From_ lines taken off, the '>' added before any
    (quoted) From_ line taken away, the blank line that ends each message dropped."""
    messages: list[bytes] = []
    for chunk in re.split(rb"(?m)^From [^\n]*\n", data)[1:]:
        body = re.sub(rb"(?m)^>(>*From )", rb"\1", chunk)
        messages.append(body[:-1] if body.endswith(b"\n\n") else body)
    return messages


@pytest.fixture(params=["Maildir", "Mboxrd"])
def getmail(request: pytest.FixtureRequest, cert: SelfSignedCertificate) -> Iterator[Getmail]:
    home = mail_tree()
    try:
        yield Getmail(home, cert, request.param)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("tls", [False, True], ids=["imap", "imaps"])
def test_getmail6_only_new_then_delete(server: Server, getmail: Getmail, tls: bool) -> None:
    server.deliver(*MESSAGES)
    port = server.tls_port if tls else server.port

    status, log = getmail.run(port, tls=tls, read_all=False, delete=False)
    assert status == 0, log
    assert f"{len(MESSAGES)} messages" in log, log
    assert getmail.delivered() == sorted(MESSAGES), log
    assert [data for data, _ in server.stored()] == MESSAGES

    # It remembers what it fetched: nothing the second time.
    status, log = getmail.run(port, tls=tls, read_all=False, delete=False)
    assert status == 0, log
    assert "0 messages" in log, log
    assert getmail.delivered() == sorted(MESSAGES), log

    # A new message: only it.
    server.deliver(NEW)
    status, log = getmail.run(port, tls=tls, read_all=False, delete=False)
    assert status == 0, log
    assert "1 messages" in log, log
    assert getmail.delivered() == sorted([*MESSAGES, NEW]), log

    # read_all and delete: everything again, and gone from the server.
    status, log = getmail.run(port, tls=tls, read_all=True, delete=True)
    assert status == 0, log
    assert getmail.delivered() == sorted([*MESSAGES, NEW] * 2), log
    assert server.stored() == []


def stop(process: subprocess.Popen[bytes]) -> None:
    """End a client we started, for certain."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def test_getmail6_idle_fetches_what_arrives(server: Server, cert: SelfSignedCertificate) -> None:
    """getmail6 --idle: after the first fetch it waits in IDLE on INBOX; a message
    appended meanwhile wakes it and only that one is fetched."""
    home = mail_tree()
    try:
        getmail = Getmail(home, cert, "Mboxrd")
        server.deliver(*MESSAGES[:2])
        argv, env = getmail.command(server.port, tls=False, read_all=False, delete=False)
        log = home / "log"
        with open(log, "wb") as log_file:
            process = subprocess.Popen(
                [*argv, "--idle", "INBOX"], env=env, stdout=log_file, stderr=subprocess.STDOUT
            )
        try:
            assert wait_for(lambda: b"2 messages" in log.read_bytes()), short(log.read_bytes())
            assert getmail.delivered() == sorted(MESSAGES[:2])
            time.sleep(0.5)  # into IDLE (what arrives before it is fetched all the same)
            server.deliver(NEW)
            assert wait_for(lambda: b"1 messages" in log.read_bytes()), short(log.read_bytes())
            assert wait_for(lambda: len(getmail.delivered()) == 3), short(log.read_bytes())
            assert getmail.delivered() == sorted([*MESSAGES[:2], NEW])
            assert process.poll() is None, short(log.read_bytes())  # idling again
        finally:
            stop(process)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert [data for data, _ in server.stored()] == [*MESSAGES[:2], NEW]


# --------------------------------------------------------------------------- s-nail


def snail(
    server: Server,
    commands: str,
    *,
    tls: str = "",
    read_only: bool = False,
    home: Path,
    folder: str = "INBOX",
) -> str:
    """s-nail headless (``-#``, batch mode) on our ``folder`` over IMAP, running
    ``commands``; its output. ``tls``: "" (clear text), "starttls" or "imaps"."""
    binary = require_binary("s-nail")
    scheme, port = ("imaps", server.tls_port) if tls == "imaps" else ("imap", server.port)
    argv = [
        binary,
        "-N",
        "-n",
        "-#",
        "-S",
        "v15-compat",
        # The password chain: USER never percent-encoded, HOST with the port.
        "-S",
        f"password-{USER}@127.0.0.1:{port}={PASSWORD}",
        # s-nail checks the certificate against the URL's host by name only
        # (127.0.0.1 is among its IP addresses, not its names): the certificate's
        # SHA-256 fingerprint instead, with verification strict.
        "-S",
        "tls-fingerprint-digest=SHA256",
        "-S",
        f"tls-fingerprint={fingerprint(server.cert, 'sha256')}",
        "-S",
        "tls-verify=strict",
        "-S",
        "headline=msg %m: %s",
        "-S",
        "hold",
        "-S",
        "keep",
    ]
    if tls == "starttls":
        argv += ["-S", "imap-use-starttls"]
    if read_only:
        argv.append("-R")
    account = f"{scheme}://{USER.replace('@', '%40')}@127.0.0.1:{port}"
    argv += ["-S", f"folder={account}", "-f", f"{account}/{folder}"]
    env = {**os.environ, "HOME": str(home), "MAILRC": "/dev/null", "LC_ALL": "C.UTF-8"}
    done = run_peer(argv, env, commands.encode())
    output = done.stdout.decode("utf-8", "replace")
    errors = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0, (output, errors)
    return output


SNAIL_SUBJECTS = ["first", "second", "third"]


def snail_message(n: int) -> bytes:
    return (
        f"From: sender{n}@example.test\r\nTo: b@example.test\r\n"
        f"Subject: {SNAIL_SUBJECTS[n]}\r\n\r\nbody line {n}\r\n"
    ).encode()


@pytest.mark.parametrize("tls", ["", "starttls", "imaps"])
def test_snail_lists_prints_flags_and_deletes(server: Server, tmp_path: Path, tls: str) -> None:
    server.deliver(*(snail_message(n) for n in range(3)))
    output = snail(server, "headers\nprint 2\nflag 1\ndelete 3\nquit\n", tls=tls, home=tmp_path)
    listed = re.findall(r"(?m)^msg[ ]+(\d+):[ ]+(.*?)[ ]*$", output)
    assert listed == [("1", "first"), ("2", "second"), ("3", "third")], output
    assert "body line 1" in output and "body line 0" not in output, output
    stored = server.stored()
    assert [data for data, _ in stored] == [snail_message(0), snail_message(1)], output
    assert stored[0][1] == {"\\Flagged"}, stored
    assert stored[1][1] == {"\\Seen"}, stored


def test_snail_read_only_changes_nothing(server: Server, tmp_path: Path) -> None:
    server.deliver(*(snail_message(n) for n in range(3)))
    output = snail(server, "print 2\nflag 1\ndelete 3\nquit\n", read_only=True, home=tmp_path)
    assert "body line 1" in output, output
    stored = server.stored()
    assert [data for data, _ in stored] == [snail_message(n) for n in range(3)], output
    assert all(flags == frozenset() for _, flags in stored), stored


def test_snail_copies_to_a_new_folder_and_reads_it(server: Server, tmp_path: Path) -> None:
    server.deliver(*(snail_message(n) for n in range(3)))
    snail(server, "copy 1 3 +Archive\nquit\n", home=tmp_path)

    def archived() -> list[bytes]:
        with server.store.folder("Archive") as folder:
            return [folder.read_message(m.uid) for m in folder.messages()]

    assert server.in_store(archived) == [snail_message(0), snail_message(2)]
    assert len(server.stored()) == 3

    # s-nail opens the new folder and lists it.
    output = snail(server, "headers\nquit\n", home=tmp_path, folder="Archive")
    listed = re.findall(r"(?m)^msg[ ]+(\d+):[ ]+(.*?)[ ]*$", output)
    assert listed == [("1", "first"), ("2", "third")], output


def test_snail_folders_search_move_and_a_non_ascii_folder(server: Server, tmp_path: Path) -> None:
    """s-nail lists our folders (the modified UTF-7 name decoded), finds messages with
    IMAP search specifications, moves one into a new folder and opens a folder whose
    name is not ASCII."""
    server.deliver(*(snail_message(n) for n in range(3)))

    def folders() -> None:
        server.store.create_folder("Entwürfe")
        server.store.create_folder("Sent Items")
        with server.store.folder("Entwürfe") as folder:
            folder.append_bytes(snail_message(1))

    server.in_store(folders)
    commands = (
        "folders\n"
        "from '(subject third)'\n"
        "from '(or (subject first) (body \"line 1\"))'\n"
        "move 2 +Archive\n"
        "folder +Entwürfe\n"
        "headers\n"
        "quit\n"
    )
    output = snail(server, commands, home=tmp_path)
    lines = output.splitlines()
    for name in ("INBOX", "Entwürfe", "Sent Items"):
        assert name in lines, output
    listed = re.findall(r"(?m)^msg[ ]+(\d+):[ ]+(.*?)[ ]*$", output)
    assert listed == [
        ("3", "third"),  # subject third
        ("1", "first"),  # first, or "line 1" in the body
        ("2", "second"),
        ("1", "second"),  # the headers of Entwürfe
    ], output

    def archived() -> list[bytes]:
        with server.store.folder("Archive") as folder:
            return [folder.read_message(m.uid) for m in folder.messages()]

    assert server.in_store(archived) == [snail_message(1)]
    assert [data for data, _ in server.stored()] == [snail_message(0), snail_message(2)]


def test_fetchmail_without_tls_sends_no_password_where_login_is_disabled(
    tmp_path: Path, cert: SelfSignedCertificate, fetchmail: Fetchmail
) -> None:
    """Our server's default: LOGINDISABLED before TLS (RFC 9051 §6.2.3); fetchmail told
    not to use TLS logs in nowhere, sends no password and fetches nothing."""
    with Server(tmp_path / "strict", cert, "maildir", plaintext=False) as server:
        server.deliver(MESSAGES[0])
        status, log = fetchmail.run(server.port, "keep sslproto ''")
        assert status not in (FM_MAIL, FM_NOMAIL), log
        assert "LOGINDISABLED" in log, log
        assert PASSWORD not in log and 'LOGIN "' not in log, log
        assert fetchmail.delivered() == []
        # With STARTTLS the same server lets it in.
        status, log = fetchmail.run(server.port, f"keep sslproto 'tls1.2+' {fetchmail.verified()}")
        assert status == FM_MAIL, log
        assert fetchmail.delivered() == [MESSAGES[0]], log


def test_fetchmail_idling_while_snail_expunges_then_new_mail(
    server: Server, fetchmail: Fetchmail, tmp_path: Path
) -> None:
    """Two clients at once: fetchmail idles on INBOX while s-nail deletes its first
    message (EXPUNGE goes out to the idler); a message that arrives next is fetched by
    fetchmail under its new sequence number."""
    server.deliver(snail_message(0), snail_message(1))
    argv, env = fetchmail.command(server.port, "keep idle sslproto ''")
    log = fetchmail.home / "log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: idling(log, 1)), short(log.read_bytes())
        snail(server, "delete 1\nquit\n", home=tmp_path)
        assert wait_for(lambda: b"* 1 EXPUNGE" in log.read_bytes()), short(log.read_bytes())
        assert [data for data, _ in server.stored()] == [snail_message(1)]
        server.deliver(NEW)
        assert wait_for(lambda: len(fetchmail.delivered()) == 3), short(log.read_bytes())
        assert fetchmail.delivered() == [snail_message(0), snail_message(1), NEW]
        assert process.poll() is None, short(log.read_bytes())
    finally:
        stop(process)
    stored = server.stored()
    assert [data for data, _ in stored] == [snail_message(1), NEW]
    assert all("\\Seen" in flags for _, flags in stored), stored
