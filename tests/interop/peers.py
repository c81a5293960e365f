"""Real mail programs as test peers, started by the tests themselves on loopback.

Each peer is a Debian package that ``.ci/run`` installs (see ``install_peers`` there).
Outside CI a missing program skips its tests; in CI (``CI=true``) it fails them, so an
interop test can never pass by not running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import dns.message
import dns.query
import dns.rcode
import pytest

T = TypeVar("T")


def require_binary(name: str) -> str:
    """The path of program ``name``; skip (fail under CI) when it is not installed."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    return free_ports(1)[0]


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` different TCP ports on ``host`` that nothing listens on now (each socket
    is held until all are chosen, so that no two are the same)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            sock = stack.enter_context(socket.socket())
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def shared_port(hosts: tuple[str, ...], attempts: int = 50) -> int:
    """One TCP port free on every address of ``hosts`` (and on 0.0.0.0, so that no
    wildcard listener holds it): for peers on several loopback addresses that an
    MTA reaches on its one outbound port."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind(("0.0.0.0", 0))
            port = int(probe.getsockname()[1])
        with contextlib.ExitStack() as stack:
            try:
                for host in hosts:
                    sock = stack.enter_context(socket.socket())
                    sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no port free on all of {hosts}")


class PeerExited(RuntimeError):
    """A peer's process ended before it listened on its ports."""


def wait_port(
    port: int,
    timeout: float = 30.0,
    process: subprocess.Popen[bytes] | None = None,
    host: str = "127.0.0.1",
) -> None:
    """Wait until something accepts connections on ``host``:``port``; with
    ``process``, fail at once (:class:`PeerExited`) if it ends first."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        if process is not None and process.poll() is not None:
            raise PeerExited(f"exited ({process.returncode}) before listening on port {port}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {host}:{port}")
        time.sleep(0.05)


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """Give a tree to the mail user the peer runs as."""
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


class _Daemon:
    """A peer daemon in a private folder (``base``): stopping it, and its log."""

    base: Path
    process: subprocess.Popen[bytes] | None = None
    log_name = ""

    def _kill(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL) and wait for it."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def stop(self) -> None:
        """Stop the daemon, wait for it and remove its folder."""
        self._kill()
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        """What the daemon logged (for failure messages)."""
        path = self.base / self.log_name
        return path.read_text(errors="replace") if path.exists() else ""


class Dovecot(_Daemon):
    """A private Dovecot 2.3 serving one user's Maildir over IMAP and POP3.

    The Maildir is ``maildir`` (a path we choose); the user is ``test`` / ``pass``; the
    mail processes run as ``nobody``. Everything else lives in a private folder."""

    user = "test"
    password = "pass"
    log_name = "dovecot.log"

    def __init__(self, maildir: Path) -> None:
        self.binary = require_binary("dovecot")
        self.maildir = maildir
        self.base = Path(tempfile.mkdtemp(prefix="mailagents-dovecot-"))
        os.chmod(self.base, 0o755)
        nobody = pwd.getpwnam("nobody")
        self.uid, self.gid = nobody.pw_uid, nobody.pw_gid
        self.imap_port = self.pop3_port = 0
        self._new_ports()
        self.process: subprocess.Popen[bytes] | None = None

    def _new_ports(self) -> None:
        self.imap_port, self.pop3_port = free_ports(2)

    def _ports(self) -> list[int]:
        """The ports the daemon listens on once it is up."""
        return [self.imap_port, self.pop3_port]

    def _config(self) -> Path:
        base = self.base
        (base / "run").mkdir(exist_ok=True)
        (base / "state").mkdir(exist_ok=True)
        home = self.maildir.parent
        (base / "passwd").write_text(
            f"{self.user}:{{PLAIN}}{self.password}:{self.uid}:{self.gid}::{home}::\n"
        )
        conf = base / "dovecot.conf"
        conf.write_text(f"""
instance_name = mailagents-{base.name}
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{self.maildir}
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {base}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {base}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
""")
        return conf

    def start(self, attempts: int = 3, timeout: float = 20.0) -> None:
        """Hand the Maildir to the mail user and start the daemon. A daemon that exits
        before it listens (one of its ports was taken meanwhile by another program), or
        does not listen within ``timeout`` seconds, is stopped and started again on new
        ports, up to ``attempts`` times in all; each failed attempt is reported as a
        warning with Dovecot's log, so that a retry is seen in the test summary."""
        for parent in (self.maildir.parent, *self.maildir.parent.parents):
            if parent == Path("/"):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o711)
        chown_tree(self.maildir.parent, self.uid, self.gid)
        for attempt in range(1, attempts + 1):
            conf = self._config()
            with open(self.base / "stdout.log", "wb") as log:
                process = self.process = subprocess.Popen(
                    [self.binary, "-F", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
                )
            try:
                for port in self._ports():
                    wait_port(port, timeout, process=process)
                return
            except (PeerExited, TimeoutError) as exc:
                output = self.log() + (self.base / "stdout.log").read_text(errors="replace")
                self._kill()
                failure = f"Dovecot start {attempt} of {attempts}: {exc}; its log:\n{output}"
                if attempt == attempts:
                    raise PeerExited(failure) from None
                warnings.warn(failure, stacklevel=2)
                self._new_ports()



@contextlib.contextmanager
def running_dovecot(maildir: Path) -> Iterator[Dovecot]:
    """Start Dovecot on ``maildir`` for the duration of the block."""
    server = Dovecot(maildir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def mail_tree() -> Path:
    """A fresh folder the mail user can reach (tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="mailagents-mail-"))
    os.chmod(path, 0o755)
    return path


def require_root(peer: str) -> None:
    """Skip (fail under CI) when not root: ``peer`` must start as root to drop privileges."""
    if os.geteuid() != 0:
        message = f"{peer} must be started as root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


# Postfix's services with chroot off (the packaged master.cf chroots most of them into
# the queue directory, which a private queue in /tmp does not furnish). The SMTP
# listeners come first, in Postfix._config.
_POSTFIX_SERVICES = """\
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
proxywrite unix  - - n -     1 proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
local      unix  - n n -     - local
virtual    unix  - n n -     - virtual
lmtp       unix  - - n -     - lmtp
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
"""


class Postfix:
    """A private Postfix (3.4 or newer) receiving mail for ``example.test`` on ``host``
    (127.0.0.1 unless told; another loopback address such as 127.0.0.3 for an MTA that
    reaches several peers on one port), at ``port`` (a free one unless told).

    Two SMTP listeners: ``port`` offers every extension Postfix has (PIPELINING,
    CHUNKING, STARTTLS when a certificate is given, ...), ``data_port`` the same without
    CHUNKING, so that a client must use DATA. The users in ``users`` exist (anyone else
    gets 550 5.1.1 at RCPT); each one's mail is delivered by virtual(8) into
    ``mail/<user>/Maildir/`` as ``nobody``. Nothing leaves the machine: every other
    domain goes to the error transport. Configuration, queue, data and log live in a
    private folder; the daemons run as the ``postfix`` user that the package creates.

    ``recipient_access``, when given, is the text of a ``check_recipient_access``
    table (``texthash``: ``carol@example.test 451 4.7.1 Not now`` lines), consulted at
    RCPT before the user check; :meth:`set_recipient_access` changes it while Postfix
    runs (and reloads it).

    ``transport_map``, when given, is the text of a ``transport_maps`` table
    (``texthash``: ``b.test smtp:[127.0.0.2]:2525`` lines): mail Postfix takes for
    those domains from ``mynetworks`` is relayed there by smtp(8), with no DNS (it
    cannot ask a name server on a test port); every other domain still goes to the
    error transport.
    """

    domain = "example.test"
    users = ("alice", "bob", "carol", "dave", "erin")

    def __init__(
        self,
        *,
        cert_pem: bytes | None = None,
        key_pem: bytes | None = None,
        transport: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        recipient_access: str | None = None,
        transport_map: str | None = None,
    ) -> None:
        self.binary = require_binary("postfix")
        self.transport_map = transport_map
        self.host = host
        """The address both listeners are on."""
        self.recipient_access = recipient_access
        self.transport = transport
        """Where mail for the users goes instead of virtual(8): a Postfix transport
        such as ``lmtp:inet:127.0.0.1:2424`` or ``lmtp:unix:/path/to/socket``."""
        require_root("Postfix")
        if (cert_pem is None) != (key_pem is None):
            raise ValueError("give both cert_pem and key_pem, or neither")
        self.cert_pem, self.key_pem = cert_pem, key_pem
        self.base = Path(tempfile.mkdtemp(prefix="mailagents-postfix-"))
        os.chmod(self.base, 0o755)
        self.etc = self.base / "etc"
        self.mail = self.base / "mail"
        self.maillog = self.base / "maillog"
        nobody = pwd.getpwnam("nobody")
        self.uid, self.gid = nobody.pw_uid, nobody.pw_gid
        self.port, self.data_port = free_ports(2, host)
        if port is not None:
            self.port = port
            while self.data_port == port:
                self.data_port = free_ports(1, host)[0]
        self.started = False

    def _config(self) -> None:
        base, etc = self.base, self.etc
        etc.mkdir()
        (base / "queue").mkdir()
        data = base / "data"
        data.mkdir()
        postfix = pwd.getpwnam("postfix")
        os.chown(data, postfix.pw_uid, postfix.pw_gid)
        self.mail.mkdir()
        os.chown(self.mail, self.uid, self.gid)
        tls = ""
        if self.cert_pem is not None and self.key_pem is not None:
            (etc / "cert.pem").write_bytes(self.cert_pem)
            key = etc / "key.pem"
            key.touch(mode=0o600)
            key.write_bytes(self.key_pem)
            tls = f"""
smtpd_tls_cert_file = {etc}/cert.pem
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
"""
        extra = ""
        if self.recipient_access is not None:
            (etc / "access").write_text(self.recipient_access)
            extra = (
                f"smtpd_recipient_restrictions = check_recipient_access texthash:{etc}/access"
            )
        if self.transport_map is not None:
            (etc / "transport").write_text(self.transport_map)
            extra += f"\ntransport_maps = texthash:{etc}/transport"
        (etc / "vmailbox").write_text(
            "".join(f"{user}@{self.domain} {user}/Maildir/\n" for user in self.users)
        )
        (etc / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
syslog_name = mailagents-postfix
maillog_file = {self.maillog}
maillog_file_prefixes = {base}
myhostname = mx.{self.domain}
mydomain = {self.domain}
myorigin = $myhostname
# Postfix refuses an inet_interfaces address that no interface has (127.0.0.3 is
# reached through lo's 127.0.0.0/8 but is not its address); the listeners in master.cf
# name their address themselves, so this one only says "loopback".
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
smtpd_client_port_logging = yes
smtputf8_enable = yes
message_size_limit = 52428800
# Deliver the message as the client sent it: no header rewriting or added headers
# other than the delivery's own (Return-Path, Delivered-To, Received).
local_header_rewrite_clients =
# Nothing leaves the machine.
default_transport = error:outbound mail disabled in tests
relay_transport = error:outbound mail disabled in tests
smtp_dns_support_level = disabled
alias_maps =
alias_database =
virtual_mailbox_domains = {self.domain}
virtual_transport = {self.transport or "virtual"}
# A deferred recipient is retried soon (tests wait for it).
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = texthash:{etc}/vmailbox
virtual_uid_maps = static:{self.uid}
virtual_gid_maps = static:{self.gid}
virtual_minimum_uid = 1
virtual_mailbox_limit = 0
{extra}
{tls}""")
        (etc / "master.cf").write_text(
            f"{self.host}:{self.port} inet n - n - - smtpd\n"
            f"{self.host}:{self.data_port} inet n - n - - smtpd\n"
            "  -o smtpd_discard_ehlo_keywords=silent-discard,chunking\n"
            + _POSTFIX_SERVICES
        )

    def _postfix(self, *args: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, "-c", str(self.etc), *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )

    def start(self, timeout: float = 15.0) -> None:
        """Write the configuration, start the master and wait for both listeners."""
        self._config()
        done = self._postfix("start", timeout=timeout)
        self.started = True
        if done.returncode != 0:
            raise RuntimeError(
                f"postfix start failed ({done.returncode}): {done.stdout}{done.stderr}"
                f"\n{self.log()}"
            )
        wait_port(self.port, timeout, host=self.host)
        wait_port(self.data_port, timeout, host=self.host)

    def set_recipient_access(self, text: str, timeout: float = 15.0) -> None:
        """Replace the ``recipient_access`` table and reload Postfix: SMTP sessions
        that start after the reload see the new table (a texthash table is read when
        an smtpd process starts; the reload makes the master start new ones)."""
        if self.recipient_access is None:
            raise RuntimeError("Postfix was started without a recipient_access table")
        self.recipient_access = text
        (self.etc / "access").write_text(text)
        done = self._postfix("reload", timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"postfix reload failed: {done.stdout}{done.stderr}")

    def master_pid(self) -> int | None:
        """The pid of the running master process, if any."""
        try:
            return int((self.base / "queue" / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the master (and with it every daemon) and remove the private folder."""
        if self.started:
            pid = self.master_pid()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._postfix("stop", timeout=timeout)
            deadline = time.monotonic() + timeout
            while pid is not None and time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            self.started = False
        shutil.rmtree(self.base, ignore_errors=True)

    def maildir(self, user: str) -> Path:
        """The Maildir of ``user`` (it exists once something was delivered)."""
        return self.mail / user / "Maildir"

    def delivered(self, user: str) -> list[bytes]:
        """The messages in ``user``'s ``new/`` now, oldest first (by name)."""
        new = self.maildir(user) / "new"
        if not new.is_dir():
            return []
        return [path.read_bytes() for path in sorted(new.iterdir())]

    def wait_delivered(self, user: str, token: bytes, timeout: float = 10.0) -> bytes:
        """The message holding ``token`` in ``user``'s ``new/``, once delivered."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.delivered(user):
                if token in message:
                    return message
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no message with {token!r} for {user} after {timeout:g} s\n{self.log()}"
                )
            time.sleep(0.05)

    def log(self) -> str:
        """What Postfix logged (for checks and failure messages)."""
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def wait_log(self, needle: str, timeout: float = 10.0) -> str:
        """The first log line holding ``needle``, once Postfix has logged it."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log().splitlines():
                if needle in line:
                    return line
            if time.monotonic() > deadline:
                raise TimeoutError(f"Postfix never logged {needle!r}\n{self.log()}")
            time.sleep(0.05)


@contextlib.contextmanager
def running_postfix(
    *,
    cert_pem: bytes | None = None,
    key_pem: bytes | None = None,
    transport: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    recipient_access: str | None = None,
    transport_map: str | None = None,
) -> Iterator[Postfix]:
    """Start a private Postfix for the duration of the block."""
    server = Postfix(cert_pem=cert_pem, key_pem=key_pem, transport=transport, host=host,
                     port=port, recipient_access=recipient_access,
                     transport_map=transport_map)
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --- POP3 helpers (tests/interop/test_pop3_*.py) -----------------------------------------


class DovecotPOP3(Dovecot):
    """:class:`Dovecot` with POP3 extras: APOP and CRAM-MD5 besides PLAIN and LOGIN,
    ``pop3_no_flag_updates`` as chosen, and, when a certificate is given, STLS on
    ``pop3_port`` (clear text still allowed) and implicit TLS on ``pop3s_port``."""

    def __init__(
        self,
        maildir: Path,
        *,
        cert_pem: bytes | None = None,
        key_pem: bytes | None = None,
        no_flag_updates: bool = False,
    ) -> None:
        if (cert_pem is None) != (key_pem is None):
            raise ValueError("give both cert_pem and key_pem, or neither")
        # Chosen with the others by _new_ports (called by Dovecot.__init__).
        self.pop3s_port: int | None = 0 if cert_pem is not None else None
        super().__init__(maildir)
        self.cert_pem, self.key_pem = cert_pem, key_pem
        self.no_flag_updates = no_flag_updates

    def _new_ports(self) -> None:
        if self.pop3s_port is None:
            super()._new_ports()
        else:
            self.imap_port, self.pop3_port, self.pop3s_port = free_ports(3)

    def _ports(self) -> list[int]:
        extra = [] if self.pop3s_port is None else [self.pop3s_port]
        return [*super()._ports(), *extra]

    def _config(self) -> Path:
        conf = super()._config()
        text = conf.read_text().replace(
            "auth_mechanisms = plain login", "auth_mechanisms = plain login apop cram-md5"
        )
        extra = f"pop3_no_flag_updates = {'yes' if self.no_flag_updates else 'no'}\n"
        if self.cert_pem is not None and self.key_pem is not None:
            cert, key = self.base / "cert.pem", self.base / "key.pem"
            cert.write_bytes(self.cert_pem)
            key.touch(mode=0o600)
            key.write_bytes(self.key_pem)
            text = text.replace("ssl = no", f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}")
            text = text.replace(
                "  inet_listener pop3s {\n    port = 0\n  }",
                f"  inet_listener pop3s {{\n    address = 127.0.0.1\n"
                f"    port = {self.pop3s_port}\n    ssl = yes\n  }}",
            )
            assert f"port = {self.pop3s_port}" in text, "Dovecot template changed"
        conf.write_text(text + extra)
        return conf


@contextlib.contextmanager
def running_dovecot_pop3(
    maildir: Path,
    *,
    cert_pem: bytes | None = None,
    key_pem: bytes | None = None,
    no_flag_updates: bool = False,
) -> Iterator[DovecotPOP3]:
    """Start :class:`DovecotPOP3` on ``maildir`` for the duration of the block."""
    server = DovecotPOP3(
        maildir, cert_pem=cert_pem, key_pem=key_pem, no_flag_updates=no_flag_updates
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclasses.dataclass(frozen=True)
class POP3View:
    """A mailbox as a POP3 server serves it, read with poplib (the reference client)."""

    count: int
    size: int
    sizes: dict[int, int]
    uids: dict[int, str]
    messages: dict[int, bytes]


def pop3_view(port: int, user: str, password: str, *, timeout: float = 5.0) -> POP3View:
    """STAT, LIST, UIDL and every message (un-stuffed, CRLF line ends) via poplib."""
    import poplib

    client = poplib.POP3("127.0.0.1", port, timeout=timeout)
    try:
        client.user(user)
        client.pass_(password)
        count, size = client.stat()
        sizes = {int(n): int(s) for n, s in (x.split() for x in client.list()[1])}
        uids = {int(n): u.decode() for n, u in (x.split() for x in client.uidl()[1])}
        messages = {n: b"".join(line + b"\r\n" for line in client.retr(n)[1]) for n in sizes}
    finally:
        with contextlib.suppress(Exception):
            client.quit()
        client.close()
    return POP3View(count, size, sizes, uids, messages)


class Knot(_Daemon):
    """A private Knot DNS (``knotd``, authoritative only) serving ``zones`` on
    127.0.0.1:``port``, UDP and TCP: ``{"example.test": "<zone file text>"}``. A zone
    whose text does not parse is not loaded and answers SERVFAIL, as a broken authority
    does. Everything lives in a private folder; the daemon runs as root (no user)."""

    log_name = "knotd.log"

    def __init__(self, zones: dict[str, str]) -> None:
        self.binary = require_binary("knotd")
        self.zones = zones
        self.base = Path(tempfile.mkdtemp(prefix="mailagents-knot-"))
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def _config(self) -> Path:
        base = self.base
        for name in ("run", "db"):
            (base / name).mkdir(exist_ok=True)
        for zone, text in self.zones.items():
            (base / f"{zone}.zone").write_text(text)
        zones = "".join(f"  - domain: {zone}\n" for zone in self.zones)
        conf = base / "knot.conf"
        conf.write_text(f"""server:
    rundir: "{base}/run"
    listen: [ 127.0.0.1@{self.port} ]
log:
  - target: "{base}/knotd.log"
    any: info
database:
    storage: "{base}/db"
template:
  - id: default
    storage: "{base}"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: none
zone:
{zones}""")
        return conf

    def start(self, attempts: int = 3, timeout: float = 20.0) -> None:
        """Start the daemon and wait until it answers for its first zone. A daemon that
        exits or does not answer within ``timeout`` seconds is stopped and started again
        on a new port, up to ``attempts`` times; each failed attempt is a warning that
        carries Knot's log."""
        for attempt in range(1, attempts + 1):
            self.port = free_port()
            conf = self._config()
            with open(self.base / "stdout.log", "wb") as log:
                process = self.process = subprocess.Popen(
                    [self.binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
                )
            try:
                wait_port(self.port, timeout, process=process)
                self._wait_answering(timeout, process)
                return
            except (PeerExited, TimeoutError) as exc:
                output = self.log() + (self.base / "stdout.log").read_text(errors="replace")
                self._kill()
                failure = f"Knot start {attempt} of {attempts}: {exc}; its log:\n{output}"
                if attempt == attempts:
                    raise PeerExited(failure) from None
                warnings.warn(failure, stacklevel=2)

    def _wait_answering(self, timeout: float, process: subprocess.Popen[bytes]) -> None:
        zone = next(iter(self.zones))
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                query = dns.message.make_query(zone, "SOA")
                response = dns.query.udp(query, "127.0.0.1", timeout=0.5, port=self.port)
                if response.rcode() == dns.rcode.NOERROR and response.answer:
                    return
            if process.poll() is not None:
                raise PeerExited(f"exited ({process.returncode}) before answering")
            if time.monotonic() > deadline:
                raise TimeoutError(f"Knot does not answer for {zone} on port {self.port}")
            time.sleep(0.05)



@contextlib.contextmanager
def running_knot(zones: dict[str, str]) -> Iterator[Knot]:
    """Start Knot DNS serving ``zones`` for the duration of the block."""
    server = Knot(zones)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class LoopThread:
    """An asyncio event loop on a thread of its own, for serving while a blocking peer
    (a child process, poplib) talks to us: ``run(coro)`` waits for a bounded time."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="interop-loop")

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the loop and return its result (at most ``timeout`` s)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> LoopThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
