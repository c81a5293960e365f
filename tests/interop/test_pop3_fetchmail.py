"""fetchmail and getmail6, the POP3 fetchers people run, against our MAA: TLS (STLS with
fetchmail, implicit TLS with getmail6) with the certificate verified, the "keep" mode
where the fetcher remembers UIDLs (a second run fetches nothing, then only a new
message), and deletion on the server when the fetcher does not keep. Every message
arrives with the octets we stored (after the fetcher's own trace headers and LF line
ends are undone)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailagents.agents import MAA
from mailagents.aio import ListenerLimits, SelfSignedCertificate, make_self_signed
from mailagents.store.maildir import MaildirStore
from mailagents.userdb import PasswordFile

from .peers import (
    LoopThread,
    chown_tree,
    mail_tree,
    require_binary,
    require_root,
    running_dovecot_pop3,
)

pytestmark = pytest.mark.interop

USER = "fetch@example.test"
PASSWORD = "fetch secret 1"
HOSTNAME = "localhost"  # the name in the certificate the fetchers check
RUN_TIMEOUT = 30.0

MESSAGES = [
    b"From: a@example.test\r\nSubject: dots\r\n\r\n.\r\n..\r\n.x\r\n...\r\nend\r\n",
    b"From: a@example.test\r\nSubject: 8bit\r\n\r\n\xe9t\xe9 \xff\r\n" + b"x" * 998 + b"\r\n",
    b"From: a@example.test\r\nSubject: big\r\n\r\n"
    + b"".join(b".%06d The quick brown fox jumps over the lazy dog.\r\n" % i
               for i in range(40_000)),
]
NEW = b"From: b@example.test\r\nSubject: arrived later\r\n\r\n.\r\nnew\r\n"

# Header fields a fetcher adds in front of the message (fetchmail: Received;
# getmail6: Return-Path, and Delivered-To/Received unless told not to).
TRACE = re.compile(rb"\A(?:(?:Received|Return-Path|Delivered-To|X-getmail-[\w-]+):"
                   rb"[^\n]*\n(?:[ \t][^\n]*\n)*)+")


def as_sent(delivered: bytes) -> bytes:
    """A delivered file back to the octets our server sent: the fetcher's trace fields
    taken off the top, LF line ends made CRLF again."""
    body = TRACE.sub(b"", delivered, count=1)
    return body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class Server:
    """Our MAA on a loop thread: POP3 with STLS and POP3S on free ports, one user whose
    Maildir is ``maildir``; clear-text passwords only over TLS (the default)."""

    def __init__(self, root: Path, cert: SelfSignedCertificate, *, user: str = USER,
                 password: str = PASSWORD, maildir: Path | None = None) -> None:
        self.root = root
        root.mkdir()
        if maildir is None:
            self.maildir = root / "mail" / user / "Maildir"
            template = str(root / "mail" / "{user}" / "Maildir")
        else:
            self.maildir = maildir
            template = str(maildir).replace("{", "{{").replace("}", "}}")
        self.users = PasswordFile(root / "users", scrypt_n=2**8)
        self.users.set_password(user, password)
        self.maa = MAA(
            "pop.example.test",
            self.users,
            template,
            ssl_context=cert.server_context(),
            fsync=False,
            server_options={"limits": ListenerLimits(
                auth_failure_delay=0.01, max_auth_failure_delay=0.05,
                shutdown_grace=0.5, shutdown_timeout=0.5)},
        )
        self.thread = LoopThread()

    def __enter__(self) -> Server:
        self.thread.__enter__()
        try:
            self.thread.run(self.maa.serve("127.0.0.1", 0, 0, None, None))
        except BaseException:
            self.thread.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.thread.run(self.maa.close())
        finally:
            self.thread.__exit__(None, None, None)
            self.users.close()

    def deliver(self, *messages: bytes) -> None:
        with MaildirStore(self.maildir, fsync=False) as store, store.folder("INBOX") as inbox:
            for data in messages:
                inbox.append_bytes(data)

    def stored(self) -> list[bytes]:
        with MaildirStore(self.maildir, fsync=False) as store, store.folder("INBOX") as inbox:
            inbox.refresh()
            return [inbox.read_message(m.uid) for m in inbox.messages()]


@pytest.fixture(scope="module")
def cert() -> SelfSignedCertificate:
    return make_self_signed((HOSTNAME,))


@pytest.fixture
def server(tmp_path: Path, cert: SelfSignedCertificate) -> Iterator[Server]:
    with Server(tmp_path / "server", cert) as running:
        yield running


def new_files(directory: Path, before: set[Path]) -> list[bytes]:
    """The messages in ``directory`` that were not in ``before``, as sent."""
    return sorted(as_sent(p.read_bytes()) for p in set(directory.rglob("*")) - before
                  if p.is_file())


def short(output: bytes) -> str:
    """A fetcher's transcript for an assertion message: progress marks squeezed, the
    last 4,000 characters."""
    return re.sub(r"[#*.]{10,}", "...", output.decode(errors="replace"))[-4000:]


# ------------------------------------------------------------------------- fetchmail


class Fetchmail:
    """fetchmail with a private HOME, rc file and UIDL file, delivering each message
    through an MDA command that writes it to a file of its own in ``out``."""

    def __init__(self, home: Path, cert: SelfSignedCertificate) -> None:
        self.binary = require_binary("fetchmail")
        self.home = home
        home.mkdir()
        self.out = home / "out"
        self.out.mkdir()
        self.cafile = home / "cert.pem"
        self.cafile.write_bytes(cert.cert_pem)
        self.mda = home / "mda.py"
        self.mda.write_text(
            "import os, sys, uuid\n"
            "with open(os.path.join(sys.argv[1], uuid.uuid4().hex), 'xb') as f:\n"
            "    f.write(sys.stdin.buffer.read())\n"
        )

    def run(self, port: int, *, options: str, server: str = "", user: str = USER,
            password: str = PASSWORD, mda: str | None = None) -> tuple[int, str]:
        """One poll of ``port`` on 127.0.0.1; (exit status, transcript). ``mda`` is
        the delivery command (default: one file per message in :attr:`out`)."""
        if mda is None:
            mda = f"{sys.executable} {self.mda} {self.out}"
        rc = self.home / "fetchmailrc"
        rc.write_text(
            "set no syslog\n"
            f'set idfile "{self.home}/fetchids"\n'
            f"poll 127.0.0.1 with proto POP3 service {port} auth password uidl timeout 10"
            f" {server}\n"
            f'  user "{user}" there with password "{password}" is root here\n'
            f"  {options}\n"
            f'  mda "{mda}"\n'
        )
        rc.chmod(0o600)
        done = subprocess.run(
            [self.binary, "--nodetach", "--verbose", "-f", str(rc)],
            env={**os.environ, "HOME": str(self.home), "FETCHMAILHOME": str(self.home)},
            capture_output=True, timeout=RUN_TIMEOUT, check=False,
        )
        return done.returncode, short(done.stdout + done.stderr)

    def tls(self) -> str:
        """Options for STLS with our certificate verified."""
        return (f"sslproto 'tls1.2+' sslcertck sslcertfile \"{self.cafile}\""
                f" sslcommonname {HOSTNAME}")


@pytest.fixture
def fetchmail(tmp_path: Path, cert: SelfSignedCertificate) -> Fetchmail:
    return Fetchmail(tmp_path / "fetchmail", cert)


# fetchmail's exit statuses (fetchmail(1), "EXIT CODES").
FM_MAIL, FM_NOMAIL, FM_AUTHFAIL = 0, 1, 3


def test_fetchmail_stls_keep_uidl_then_new_mail_then_delete(
    server: Server, fetchmail: Fetchmail
) -> None:
    server.deliver(*MESSAGES)
    tls = fetchmail.tls()

    before = set(fetchmail.out.iterdir())
    status, log = fetchmail.run(server.maa.pop3_port, options=f"keep {tls}")
    assert status == FM_MAIL, log
    assert "upgrade to TLS succeeded" in log, log
    assert new_files(fetchmail.out, before) == sorted(MESSAGES), log

    # The UIDLs are remembered: nothing new.
    before = set(fetchmail.out.iterdir())
    status, log = fetchmail.run(server.maa.pop3_port, options=f"keep {tls}")
    assert status == FM_NOMAIL, log
    assert new_files(fetchmail.out, before) == []

    # One message arrives: only it is fetched.
    server.deliver(NEW)
    before = set(fetchmail.out.iterdir())
    status, log = fetchmail.run(server.maa.pop3_port, options=f"keep {tls}")
    assert status == FM_MAIL, log
    assert new_files(fetchmail.out, before) == [NEW], log
    assert len(server.stored()) == len(MESSAGES) + 1

    # Without "keep" (and with "fetchall"), everything is fetched and deleted.
    before = set(fetchmail.out.iterdir())
    status, log = fetchmail.run(server.maa.pop3_port, options=f"fetchall {tls}")
    assert status == FM_MAIL, log
    assert re.search(r"POP3> DELE \d+", log), log
    assert new_files(fetchmail.out, before) == sorted([*MESSAGES, NEW]), log
    assert server.stored() == []


def test_fetchmail_implicit_tls(server: Server, fetchmail: Fetchmail) -> None:
    server.deliver(MESSAGES[0])
    status, log = fetchmail.run(
        server.maa.pop3s_port,
        options=f"keep ssl sslcertck sslcertfile \"{fetchmail.cafile}\""
                f" sslcommonname {HOSTNAME}",
    )
    assert status == FM_MAIL, log
    assert new_files(fetchmail.out, set()) == [MESSAGES[0]], log
    assert server.stored() == [MESSAGES[0]]


def test_fetchmail_without_tls_gets_no_password_through(
    server: Server, fetchmail: Fetchmail
) -> None:
    """Our MAA refuses USER/PASS in clear text (RFC 2595 §2.2 wants TLS first); the
    fetcher fails to log in and fetches nothing."""
    server.deliver(MESSAGES[0])
    status, log = fetchmail.run(server.maa.pop3_port, options="keep sslproto ''")
    assert status == FM_AUTHFAIL, log
    assert PASSWORD not in log
    assert new_files(fetchmail.out, set()) == []
    assert server.stored() == [MESSAGES[0]]


def test_fetchmail_moving_from_dovecot_to_us_fetches_nothing_again(
    tmp_path: Path, cert: SelfSignedCertificate, fetchmail: Fetchmail
) -> None:
    """The migration promise: a Maildir that Dovecot served moves to our MAA; fetchmail,
    which kept every message and remembers their UIDLs, finds nothing new with us (its
    UIDL memory is per user and host, and the host is 127.0.0.1 for both)."""
    tree = mail_tree()
    try:
        maildir = tree / "Maildir"
        with MaildirStore(maildir) as store, store.folder("INBOX") as inbox:
            for data in MESSAGES:
                inbox.append_bytes(data)
        with running_dovecot_pop3(maildir) as dovecot:
            status, log = fetchmail.run(
                dovecot.pop3_port, options="keep sslproto ''", user=dovecot.user,
                password=dovecot.password)
            assert status == FM_MAIL, log
            user, password = dovecot.user, dovecot.password
        assert new_files(fetchmail.out, set()) == sorted(MESSAGES)
        with Server(tmp_path / "moved", cert, user=user, password=password,
                    maildir=maildir) as server:
            before = set(fetchmail.out.iterdir())
            status, log = fetchmail.run(
                server.maa.pop3_port, options=f"keep {fetchmail.tls()}", user=user,
                password=password)
            assert status == FM_NOMAIL, log
            assert new_files(fetchmail.out, before) == []
    finally:
        shutil.rmtree(tree, ignore_errors=True)


# -------------------------------------------------------------------------- getmail6


class Getmail:
    """getmail6 with a private HOME and getmail directory (its UIDL memory), fetching
    over implicit TLS with our certificate verified into a Maildir owned by ``nobody``
    (as root, getmail6 delivers to a Maildir only as another user)."""

    def __init__(self, home: Path, cert: SelfSignedCertificate) -> None:
        self.binary = require_binary("getmail")
        require_root("getmail6 (delivering as user nobody)")
        self.home = home
        home.mkdir()
        os.chmod(home, 0o755)
        for parent in home.parents:
            if parent == Path("/"):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o711)
        self.out = home / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (self.out / sub).mkdir(parents=True)
        nobody = pwd.getpwnam("nobody")
        chown_tree(self.out, nobody.pw_uid, nobody.pw_gid)
        self.cafile = home / "cert.pem"
        self.cafile.write_bytes(cert.cert_pem)

    def run(self, port: int, *, keep: bool) -> tuple[int, str]:
        """One run; (exit status, output)."""
        rc = self.home / "getmailrc"
        rc.write_text(
            "[retriever]\n"
            "type = SimplePOP3SSLRetriever\n"
            "server = 127.0.0.1\n"
            f"port = {port}\n"
            f"username = {USER}\n"
            f"password = {PASSWORD}\n"
            f"ca_certs = {self.cafile}\n"
            f"ssl_cert_hostname = {HOSTNAME}\n"
            "timeout = 10\n"
            "\n[destination]\n"
            "type = Maildir\n"
            f"path = {self.out}/\n"
            "user = nobody\n"
            "\n[options]\n"
            f"read_all = {'false' if keep else 'true'}\n"
            f"delete = {'false' if keep else 'true'}\n"
            "delivered_to = false\n"
            "received = false\n"
            "verbose = 2\n"
        )
        done = subprocess.run(
            [self.binary, "--getmaildir", str(self.home), "--rcfile", "getmailrc"],
            env={**os.environ, "HOME": str(self.home)},
            capture_output=True, timeout=RUN_TIMEOUT, check=False,
        )
        return done.returncode, short(done.stdout + done.stderr)

    def messages(self) -> set[Path]:
        return {p for sub in ("new", "cur") for p in (self.out / sub).iterdir()}


@pytest.fixture
def getmail(tmp_path: Path, cert: SelfSignedCertificate) -> Iterator[Getmail]:
    runner = Getmail(tmp_path / "getmail", cert)
    yield runner
    shutil.rmtree(runner.home, ignore_errors=True)


def test_getmail6_keep_uidl_then_new_mail_then_delete(
    server: Server, getmail: Getmail
) -> None:
    server.deliver(*MESSAGES)
    port = server.maa.pop3s_port

    before = getmail.messages()
    status, log = getmail.run(port, keep=True)
    assert status == 0, log
    assert f"{len(MESSAGES)} messages" in log, log
    assert new_files(getmail.out, before) == sorted(MESSAGES), log

    before = getmail.messages()
    status, log = getmail.run(port, keep=True)
    assert status == 0, log
    assert "0 messages" in log, log
    assert getmail.messages() == before

    server.deliver(NEW)
    before = getmail.messages()
    status, log = getmail.run(port, keep=True)
    assert status == 0, log
    assert new_files(getmail.out, before) == [NEW], log

    before = getmail.messages()
    status, log = getmail.run(port, keep=False)
    assert status == 0, log
    assert new_files(getmail.out, before) == sorted([*MESSAGES, NEW]), log
    assert server.stored() == []


# ------------------------------------------------- fetchmail through our MDA (deliver -d)


def test_fetchmail_delivers_through_our_mda_and_keeps_what_it_defers(
    server: Server, fetchmail: Fetchmail, tmp_path: Path
) -> None:
    """fetchmail hands each message to ``python -m mailagents deliver -d``: delivered
    ones are deleted on the server; one the MDA defers (exit 75: over quota) stays
    there for the next poll, which delivers it once there is room."""
    mail = tmp_path / "local"
    users = tmp_path / "local-users"
    users.write_text("me@example.test 200000\n")
    package = Path(__file__).resolve().parent.parent.parent
    deliver = (f"env PYTHONPATH={package} {sys.executable} -m mailagents deliver"
               f" -d me@example.test -f %F --users {users} --mail {mail}/{{user}}")
    small = MESSAGES[:2]
    server.deliver(*small, MESSAGES[2])  # the big one (2 MB) is over the quota
    status, log = fetchmail.run(server.maa.pop3_port, options=f"no keep {fetchmail.tls()}",
                                mda=deliver)
    assert status == FM_MAIL, log
    mine = mail / "me@example.test"
    with MaildirStore(mine, fsync=False) as store, store.folder("INBOX") as inbox:
        got = [inbox.read_message(m.uid) for m in inbox.messages()]
    assert len(got) == 2
    for copy, sent in zip(sorted(got, key=len), sorted(small, key=len), strict=True):
        assert copy.startswith(b"Return-Path: <a@example.test>\r\n"
                               b"Delivered-To: me@example.test\r\n")
        assert copy.endswith(sent[sent.index(b"\r\n\r\n"):])  # the body as sent
    assert server.stored() == [MESSAGES[2]]  # deferred: left on the server

    users.write_text("me@example.test 100M\n")
    status, log = fetchmail.run(server.maa.pop3_port, options=f"no keep {fetchmail.tls()}",
                                mda=deliver)
    assert status == FM_MAIL, log
    assert server.stored() == []
    with MaildirStore(mine, fsync=False) as store, store.folder("INBOX") as inbox:
        assert len(inbox.messages()) == 3
