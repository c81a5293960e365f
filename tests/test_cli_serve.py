"""``python -m mailagents serve --config FILE`` and ``check-config FILE``: the
configuration's errors by key (table-driven), and a whole run as a subprocess: swaks or
smtplib into the MTA and the MSA, read back over IMAP and POP3, SIGHUP reloads the
aliases, SIGTERM stops it cleanly."""

from __future__ import annotations

import imaplib
import os
import poplib
import re
import signal
import smtplib
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mailagents._serve_config import ConfigError, parse_serve_config
from mailagents.aio import make_self_signed
from mailagents.userdb import PasswordFile

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder with a certificate, a password file and an aliases file."""
    make_self_signed(["localhost"]).write(tmp_path / "tls")
    users = PasswordFile(tmp_path / "users", scrypt_n=2**8)
    users.set_password("alice@example.test", "secret1")
    users.close()
    (tmp_path / "aliases").write_text("postmaster: alice@example.test\n")
    (tmp_path / "userlist").write_text("alice@example.test\npostmaster@example.test\n")
    return tmp_path


def base(**sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "hostname": "mail.example.test",
        "tls": {"cert": "tls/cert.pem", "key": "tls/key.pem"},
        "users": {"passwords": "users"},
        "local": {"domains": ["example.test"], "aliases": "aliases"},
        "maa": {"imap": 0},
    }
    for name, value in sections.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def test_a_valid_configuration(site: Path) -> None:
    config = parse_serve_config(
        base(msa={"submission": 0, "submissions": 0}, mta={"port": 0, "relay_networks":
             ["127.0.0.0/8"], "nameservers": ["127.0.0.1"], "dns_port": 5353},
             lmtp={"socket": "lmtp.sock"}), base=str(site))
    assert config.hostname == "mail.example.test"
    assert config.local is not None and config.local.mailboxes == str(site / "mail/{user}/Maildir")
    assert config.queue == str(site / "spool/queue")
    assert config.msa is not None and config.msa.relay  # with an MTA, the MSA relays
    assert config.mta is not None and config.mta.nameservers == ("127.0.0.1",)
    assert config.lmtp is not None and config.lmtp.socket == str(site / "lmtp.sock")
    assert config.ssl_context() is not None


@pytest.mark.parametrize(
    ("change", "key", "text"),
    [
        ({"hostname": None}, "hostname", "required"),
        ({"extra": 1}, "extra", "unknown key"),
        ({"log_level": "loud"}, "log_level", "one of"),
        ({"maa": {"imap": 70000}}, "maa.imap", "from 0 to 65535"),
        ({"maa": {"imap": "143"}}, "maa.imap", "a port number"),
        ({"maa": {"imap": True}}, "maa.imap", "a port number"),
        ({"maa": {}}, "maa", "at least one of"),
        ({"maa": {"imap": 0, "host": "mail.example.test"}}, "maa.host", "not an IP address"),
        ({"maa": {"imap": 0, "colour": 1}}, "maa.colour", "unknown key"),
        ({"tls": None}, "maa", "needs [tls]"),
        ({"tls": {"cert": "nope.pem", "key": "tls/key.pem"}}, "tls", "cannot load"),
        ({"users": None, "local": {"domains": ["example.test"], "users": "userlist"}},
         "maa", "needs [users]"),
        ({"local": None}, "maa", "needs [local]"),
        ({"local": {"domains": []}}, "local.domains", "a list of domain names"),
        ({"local": {"domains": ["example.test"], "format": "mh"}}, "local.format",
         "'maildir' or 'mbox'"),
        ({"local": {"domains": ["example.test"], "aliases": "missing"}}, "local",
         "No such file"),
        ({"msa": {"submission": 0, "relay": True}}, "msa.relay", "needs [mta]"),
        ({"msa": {}}, "msa", "submission and/or submissions"),
        ({"mta": {"port": 0, "relay_networks": ["not a net"]}}, "mta.relay_networks",
         "no network"),
        ({"mta": {"port": 0, "auth": True}, "users": None,
          "local": {"domains": ["example.test"], "users": "userlist"}, "maa": None},
         "mta.auth", "needs [users]"),
        ({"lmtp": {}}, "lmtp", "port (and host) or socket"),
        ({"lmtp": {"socket": "s", "port": 1}}, "lmtp", "not both"),
        ({"maa": None}, "", "no agent"),
        ({"queue": {"directory": ""}}, "queue.directory", "a path"),
    ],
)
def test_errors_name_their_key(site: Path, change: dict[str, Any], key: str, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_serve_config(base(**change) | {k: v for k, v in change.items()
                                            if k not in base() and v is not None},
                           base=str(site))
    assert caught.value.key == key, caught.value
    assert text in str(caught.value)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailagents", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_check_config(site: Path) -> None:
    good = site / "serve.toml"
    good.write_text(CONFIG)
    result = run_cli("check-config", str(good), cwd=site)
    assert result.returncode == 0, result.stderr
    assert "valid (msa, mta, lmtp, maa)" in result.stdout
    bad = site / "bad.toml"
    bad.write_text(CONFIG.replace("imap = 0", "imap = 99999"))
    result = run_cli("check-config", str(bad), cwd=site)
    assert result.returncode == 78
    assert "maa.imap: from 0 to 65535" in result.stderr
    broken = site / "broken.toml"
    broken.write_text("hostname = \n")
    result = run_cli("check-config", str(broken), cwd=site)
    assert result.returncode == 78 and "TOML syntax" in result.stderr and "line 1" in result.stderr
    result = run_cli("serve", "--config", str(bad), cwd=site)
    assert result.returncode == 78 and "maa.imap" in result.stderr


CONFIG = """\
hostname = "mail.example.test"
log_level = "info"
[tls]
cert = "tls/cert.pem"
key = "tls/key.pem"
[users]
passwords = "users"
[local]
domains = ["example.test"]
aliases = "aliases"
[msa]
submission = 0
[mta]
port = 0
[lmtp]
port = 0
[maa]
imap = 0
pop3s = 0
"""


def unverified() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def test_serve_the_whole_set(site: Path) -> None:
    (site / "serve.toml").write_text(CONFIG)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailagents", "serve", "--config", "serve.toml"],
        cwd=site, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        ports: dict[str, int] = {}
        deadline = time.monotonic() + 60
        while len(ports) < 5 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            found = re.match(r"listening: (\w+ ?\w*) 127\.0\.0\.1:(\d+)$", line.strip())
            if found:
                ports[found.group(1)] = int(found.group(2))
        assert set(ports) == {"mta smtp", "msa submission", "lmtp", "maa imap", "maa pop3s"}, ports

        # Inbound over the MTA (port 25's job), submission over the MSA.
        with smtplib.SMTP("127.0.0.1", ports["mta smtp"], timeout=10) as smtp:
            smtp.sendmail("x@remote.test", ["alice@example.test"],
                          b"Subject: from afar\r\n\r\nHello.\r\n")
        with smtplib.SMTP("127.0.0.1", ports["msa submission"], timeout=10) as smtp:
            smtp.starttls(context=unverified())
            smtp.login("alice@example.test", "secret1")
            smtp.sendmail("alice@example.test", ["postmaster@example.test"],
                          b"From: alice@example.test\r\nSubject: submitted\r\n\r\nHi.\r\n")
        # The new alias after SIGHUP: bob is alice.
        (site / "aliases").write_text("postmaster: alice@example.test\nbob: alice@example.test\n")
        with (
            smtplib.SMTP("127.0.0.1", ports["mta smtp"], timeout=10) as smtp,
            pytest.raises(smtplib.SMTPRecipientsRefused),
        ):
            smtp.sendmail("x@remote.test", ["bob@example.test"], b"Subject: early\r\n\r\n.")
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", ports["mta smtp"], timeout=10) as smtp:
                    smtp.sendmail("x@remote.test", ["bob@example.test"],
                                  b"Subject: to bob\r\n\r\nHi bob.\r\n")
                break
            except smtplib.SMTPRecipientsRefused:
                assert time.monotonic() < deadline, "SIGHUP did not reload the aliases"
                time.sleep(0.2)

        subjects: set[bytes] = set()
        deadline = time.monotonic() + 30
        while len(subjects) < 3 and time.monotonic() < deadline:
            imap = imaplib.IMAP4("127.0.0.1", ports["maa imap"], timeout=10)
            imap.starttls(unverified())
            imap.login("alice@example.test", "secret1")
            imap.select("INBOX", readonly=True)
            numbers = imap.search(None, "ALL")[1][0].split()
            subjects = {
                imap.fetch(n, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1][0][1].strip()  # type: ignore[index]
                for n in numbers
            }
            imap.logout()
            time.sleep(0.2)
        assert subjects == {b"Subject: from afar", b"Subject: submitted", b"Subject: to bob"}
        pop = poplib.POP3_SSL("127.0.0.1", ports["maa pop3s"], timeout=10, context=unverified())
        pop.user("alice@example.test")
        pop.pass_("secret1")
        assert pop.stat()[0] == 3
        pop.quit()

        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert out.strip().endswith("stopped")
        # The log lines have the documented format.
        assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO mailagents\.serve: "
                         r"users and aliases reloaded$", err, re.MULTILINE), err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def test_demo_is_an_alias_and_every_command_has_help(site: Path) -> None:
    demo = run_cli("demo", "--help", cwd=site)
    assert demo.returncode == 0 and "--mta-port" in demo.stdout
    for command in ("serve", "check-config", "fetch", "sendmail", "queue", "deliver",
                    "lmtp", "passwd"):
        result = run_cli(command, "--help", cwd=site)
        assert result.returncode == 0, (command, result.stderr)
        assert f"python -m mailagents {command}" in result.stdout, command


def test_a_user_added_to_the_password_file_is_local_at_once(site: Path) -> None:
    """Without a users file, the MDA's users are the password file's, read live: a user
    that ``passwd`` adds while serving is delivered to without a restart (regression:
    the users were a copy taken at start, which SIGHUP did not renew either)."""
    from mailagents._cli_serve import Agents
    from mailagents.smtp import parse_mailbox

    config = parse_serve_config(base(), base=str(site))
    agents = Agents(config)
    try:
        assert agents.mda is not None
        carol = parse_mailbox("carol@example.test")
        assert agents.mda.recipients.resolve(carol) is None
        users = PasswordFile(site / "users", scrypt_n=2**8)
        users.set_password("carol@example.test", "secret3")
        users.close()
        targets = agents.mda.recipients.resolve(carol)
        assert targets is not None and targets[0].identity == "carol@example.test"
    finally:
        agents._close_sync()
