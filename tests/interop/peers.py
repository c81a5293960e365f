"""Real mail programs as test peers, started by the tests themselves on loopback.

Each peer is a Debian package that ``.ci/run`` installs (see ``install_peers`` there).
Outside CI a missing program skips its tests; in CI (``CI=true``) it fails them, so an
interop test can never pass by not running.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


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
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")
        time.sleep(0.05)


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """Give a tree to the mail user the peer runs as."""
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


class Dovecot:
    """A private Dovecot 2.3 serving one user's Maildir over IMAP and POP3.

    The Maildir is ``maildir`` (a path we choose); the user is ``test`` / ``pass``; the
    mail processes run as ``nobody``. Everything else lives in a private folder."""

    user = "test"
    password = "pass"

    def __init__(self, maildir: Path) -> None:
        self.binary = require_binary("dovecot")
        self.maildir = maildir
        self.base = Path(tempfile.mkdtemp(prefix="mailagents-dovecot-"))
        os.chmod(self.base, 0o755)
        nobody = pwd.getpwnam("nobody")
        self.uid, self.gid = nobody.pw_uid, nobody.pw_gid
        self.imap_port = free_port()
        self.pop3_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

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

    def start(self) -> None:
        """Hand the Maildir to the mail user and start the daemon."""
        conf = self._config()
        for parent in (self.maildir.parent, *self.maildir.parent.parents):
            if parent == Path("/"):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o711)
        chown_tree(self.maildir.parent, self.uid, self.gid)
        log = open(self.base / "stdout.log", "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [self.binary, "-F", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        wait_port(self.imap_port)
        wait_port(self.pop3_port)

    def stop(self) -> None:
        """Stop the daemon and wait for it."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        """What Dovecot logged (for failure messages)."""
        path = self.base / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""


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
