"""Helpers of tests/interop/test_mra_compare.py: our MAA serving several users (each a
copy of the same mailbox) over POP3 and IMAP with TLS, and three fetchers run the same
way on it: fetchmail, getmail6 and our MRA. Each fetcher's :meth:`delivered` gives
what it delivered so far, as the server sent it (the trace fields a fetcher adds taken
off the top, LF line ends made CRLF again)."""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mailagents.agents import MAA, MRA, Account, MaildirDelivery
from mailagents.aio import ListenerLimits, SelfSignedCertificate
from mailagents.store.maildir import MaildirStore
from mailagents.userdb import PasswordFile

from .peers import LoopThread, chown_tree, require_binary, require_root

HOSTNAME = "localhost"  # the name in the certificate the fetchers check
PASSWORD = "compare secret 1"
RUN_TIMEOUT = 60.0

# Header fields a fetcher adds in front of the message (fetchmail: Received;
# getmail6: Return-Path, and Delivered-To, Received, X-getmail-* unless told not to).
TRACE = re.compile(rb"\A(?:(?:Received|Return-Path|Delivered-To|X-getmail-[\w-]+):"
                   rb"[^\n]*\n(?:[ \t][^\n]*\n)*)+")


def as_sent(delivered: bytes) -> bytes:
    """A delivered file back to the octets the server sent."""
    body = TRACE.sub(b"", delivered, count=1)
    return body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def short(output: bytes) -> str:
    """A transcript for an assertion message: its last 4,000 characters."""
    return re.sub(r"[#*.]{10,}", "...", output.decode(errors="replace"))[-4000:]


def run_peer(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run a fetcher to its end; (exit status, transcript)."""
    try:
        done = subprocess.run(argv, env=env, capture_output=True, timeout=RUN_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired as expired:
        out = (expired.stdout or b"") + b"\n--- stderr:\n" + (expired.stderr or b"")
        pytest.fail(f"{argv[0]} timed out; its output:\n{short(out)}")
    return done.returncode, short(done.stdout + done.stderr)


class Remote:
    """Our MAA on a loop thread: POP3 (STLS), POP3S, IMAP (STARTTLS) and IMAPS on free
    ports; each of ``users`` has the password :data:`PASSWORD` and a Maildir of its
    own under ``root``."""

    def __init__(self, root: Path, cert: SelfSignedCertificate, users: list[str]) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.passwords = PasswordFile(root / "users", scrypt_n=2**8)
        for user in users:
            self.passwords.set_password(user, PASSWORD)
        self.maa = MAA(
            "remote.example.test",
            self.passwords,
            str(root / "mail" / "{user}" / "Maildir"),
            ssl_context=cert.server_context(),
            fsync=False,
            server_options={"limits": ListenerLimits(
                auth_failure_delay=0.01, max_auth_failure_delay=0.05,
                shutdown_grace=0.5, shutdown_timeout=0.5)},
        )
        self.thread = LoopThread()

    def __enter__(self) -> Remote:
        self.thread.__enter__()
        try:
            self.thread.run(self.maa.serve("127.0.0.1", 0, 0, 0, 0))
        except BaseException:
            self.thread.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.thread.run(self.maa.close())
        finally:
            self.thread.__exit__(None, None, None)
            self.passwords.close()

    def maildir(self, user: str) -> Path:
        return self.root / "mail" / user / "Maildir"

    def deliver(self, user: str, *messages: bytes) -> None:
        with MaildirStore(self.maildir(user), fsync=False) as store, \
                store.folder("INBOX") as inbox:
            for data in messages:
                inbox.append_bytes(data)

    def stored(self, user: str) -> list[bytes]:
        """What ``user``'s INBOX holds now, sorted."""
        with MaildirStore(self.maildir(user), fsync=False) as store, \
                store.folder("INBOX") as inbox:
            inbox.refresh()
            return sorted(inbox.read_message(m.uid) for m in inbox.messages())

    def port(self, protocol: str, implicit_tls: bool) -> int:
        if protocol == "pop3":
            return self.maa.pop3s_port if implicit_tls else self.maa.pop3_port
        return self.maa.imaps_port if implicit_tls else self.maa.imap_port


class Fetcher:
    """What every fetcher here offers."""

    name = ""

    def run(self, remote: Remote, protocol: str, user: str, *, keep: bool) -> tuple[int, str]:
        """One run over ``user``'s account; (status, transcript). ``keep``: leave the
        messages on the server and fetch only new ones; else fetch all and delete."""
        raise NotImplementedError

    def nothing_new(self, status: int) -> bool:
        """Whether ``status`` says the run found nothing to fetch."""
        raise NotImplementedError

    def fetched(self, status: int) -> bool:
        """Whether ``status`` says the run fetched something."""
        raise NotImplementedError

    def delivered(self) -> list[bytes]:
        """Everything delivered so far, as sent, sorted."""
        raise NotImplementedError


# fetchmail's exit statuses (fetchmail(1), "EXIT CODES").
FM_MAIL, FM_NOMAIL = 0, 1


class Fetchmail(Fetcher):
    """fetchmail (STARTTLS / STLS, the certificate checked) with a private HOME and
    UIDL file, delivering each message through an MDA command that writes it to a file
    of its own in :attr:`out`."""

    name = "fetchmail"

    def __init__(self, home: Path, cert: SelfSignedCertificate) -> None:
        self.binary = require_binary("fetchmail")
        self.home = home
        home.mkdir(parents=True)
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

    def run(self, remote: Remote, protocol: str, user: str, *, keep: bool) -> tuple[int, str]:
        port = remote.port(protocol, implicit_tls=False)
        # POP3 remembers UIDLs (its "keep" needs them); IMAP goes by \Seen.
        proto = "POP3" if protocol == "pop3" else "IMAP"
        uidl = " uidl" if protocol == "pop3" else ""
        mode = "keep" if keep else "no keep fetchall"
        rc = self.home / "fetchmailrc"
        rc.write_text(
            "set no syslog\n"
            f'set idfile "{self.home}/fetchids"\n'
            f"poll 127.0.0.1 with proto {proto} service {port} auth password{uidl}"
            " timeout 30\n"
            f'  user "{user}" there with password "{PASSWORD}" is root here\n'
            f"  {mode} sslproto 'tls1.2+' sslcertck sslcertfile \"{self.cafile}\""
            f" sslcommonname {HOSTNAME}\n"
            f'  mda "{sys.executable} {self.mda} {self.out}"\n'
        )
        rc.chmod(0o600)
        return run_peer(
            [self.binary, "--nodetach", "--verbose", "-f", str(rc)],
            {**os.environ, "HOME": str(self.home), "FETCHMAILHOME": str(self.home)},
        )

    def nothing_new(self, status: int) -> bool:
        return status == FM_NOMAIL

    def fetched(self, status: int) -> bool:
        return status == FM_MAIL

    def delivered(self) -> list[bytes]:
        return sorted(as_sent(p.read_bytes()) for p in self.out.iterdir())


class Getmail(Fetcher):
    """getmail6 (implicit TLS, the certificate checked) with a private HOME and getmail
    directory, into a Maildir owned by ``nobody`` (as root, getmail6 delivers only as
    another user). ``home`` must be reachable by ``nobody`` (not under tmp_path)."""

    name = "getmail6"

    def __init__(self, home: Path, cert: SelfSignedCertificate) -> None:
        self.binary = require_binary("getmail")
        require_root("getmail6 (delivering as user nobody)")
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.out = home / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (self.out / sub).mkdir(parents=True)
        nobody = pwd.getpwnam("nobody")
        chown_tree(self.out, nobody.pw_uid, nobody.pw_gid)
        self.cafile = home / "cert.pem"
        self.cafile.write_bytes(cert.cert_pem)
        self.runs = 0

    def run(self, remote: Remote, protocol: str, user: str, *, keep: bool) -> tuple[int, str]:
        port = remote.port(protocol, implicit_tls=True)
        kind = "SimplePOP3SSLRetriever" if protocol == "pop3" else "SimpleIMAPSSLRetriever"
        mailboxes = "mailboxes = ('INBOX',)\nrecord_mailbox = false\n" if protocol == "imap" \
            else ""
        self.runs += 1
        rc = self.home / "getmailrc"
        rc.write_text(
            "[retriever]\n"
            f"type = {kind}\n"
            "server = 127.0.0.1\n"
            f"port = {port}\n"
            f"username = {user}\n"
            f"password = {PASSWORD}\n"
            f"ca_certs = {self.cafile}\n"
            f"ssl_cert_hostname = {HOSTNAME}\n"
            f"{mailboxes}"
            "timeout = 60\n"
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
        return run_peer(
            [self.binary, "--getmaildir", str(self.home), "--rcfile", "getmailrc"],
            {**os.environ, "HOME": str(self.home), "PYTHONUNBUFFERED": "1"},
        )

    def nothing_new(self, status: int) -> bool:
        return status == 0

    def fetched(self, status: int) -> bool:
        return status == 0

    def delivered(self) -> list[bytes]:
        files = [p for sub in ("new", "cur") for p in (self.out / sub).iterdir()]
        return sorted(_empty_fields(as_sent(p.read_bytes())) for p in files)


def _empty_fields(message: bytes) -> bytes:
    """getmail6 writes the header through Python's email package, which puts a space
    after the colon of an empty field (``X-Empty:`` becomes ``X-Empty: ``): undone."""
    header, sep, body = message.partition(b"\r\n\r\n")
    return re.sub(rb"(?m)^([!-9;-~]+): (?=\r?$)", rb"\1:", header) + sep + body


class OurMRA(Fetcher):
    """mailagents.agents.MRA (POP3 with STLS, IMAP over implicit TLS, the certificate
    checked) into a MaildirDelivery, a state folder per account."""

    name = "mailagents MRA"

    def __init__(self, home: Path, cert: SelfSignedCertificate) -> None:
        self.home = home
        home.mkdir(parents=True)
        self.cafile = home / "cert.pem"
        self.cafile.write_bytes(cert.cert_pem)
        self.recipient = "me@local.test"

    def run(self, remote: Remote, protocol: str, user: str, *, keep: bool) -> tuple[int, str]:
        implicit = protocol == "imap"
        account = Account(
            name=f"{protocol}-{user}", protocol=protocol, host="127.0.0.1",  # type: ignore[arg-type]
            port=remote.port(protocol, implicit_tls=implicit), user=user, password=PASSWORD,
            recipients=(self.recipient,), tls="implicit" if implicit else "starttls",
            ca_file=str(self.cafile), after="keep" if keep else "delete", idle=False,
            timeout=20.0,
        )

        async def main() -> tuple[int, str]:
            delivery = MaildirDelivery(str(self.home / "local" / "{user}" / "Maildir"),
                                       fsync=False)
            try:
                mra = MRA([account], delivery, state_dir=self.home / "state", fsync=False)
                report, = await mra.run_once()
            finally:
                delivery.close()
            status = 1 if report.error else (0 if report.fetched else 2)
            return status, repr(report)

        return asyncio.run(asyncio.wait_for(main(), RUN_TIMEOUT))

    def nothing_new(self, status: int) -> bool:
        return status == 2

    def fetched(self, status: int) -> bool:
        return status == 0

    def delivered(self) -> list[bytes]:
        """Exactly what the server sent: the MRA adds no field (no as_sent here)."""
        path = self.home / "local" / self.recipient / "Maildir"
        if not path.exists():
            return []
        with MaildirStore(path, fsync=False) as store, store.folder("INBOX") as inbox:
            inbox.refresh()
            return sorted(inbox.read_message(m.uid) for m in inbox.messages())
