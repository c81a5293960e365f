"""The MRA's TOML configuration (mailagents/_fetch_config.py): every error names
its key path; the destination kinds (maildir, smtp, lmtp, mda); relative paths from
the file's folder; passwords from the file, a password file or the environment."""

from __future__ import annotations

import os
import textwrap
import tomllib
from pathlib import Path

import pytest

from mailagents._fetch_config import (
    ConfigError,
    FetchConfig,
    load_fetch_config,
    parse_fetch_config,
)
from mailagents.agents import MDA, MaildirDelivery, SMTPForward

ACCOUNT = """
[[account]]
name = "work"
protocol = "imap"
host = "imap.example.org"
user = "alice"
password = "pw"
recipients = ["alice@example.test"]
"""
DESTINATION = '[destination]\nmaildir = "mail/{user}/Maildir"\n'


def parse(text: str, base: str = "/base") -> FetchConfig:
    return parse_fetch_config(tomllib.loads(textwrap.dedent(text)), base=base)


def account_with(extra: str, *, drop: str | None = None) -> str:
    lines = [line for line in ACCOUNT.splitlines()
             if drop is None or not line.startswith(f"{drop} =")]
    return DESTINATION + "\n".join(lines) + "\n" + extra + "\n"


ERRORS = [
    # (the file, the key at fault, a word of the message)
    ("bogus = 1\n" + DESTINATION + ACCOUNT, "bogus", "unknown"),
    (DESTINATION, "account", "at least one"),
    ("account = 3\n" + DESTINATION, "account", "at least one"),
    (account_with('colour = "blue"'), "account[0].colour", "unknown"),
    (account_with("", drop="name"), "account[0].name", "required"),
    (account_with('name = ""', drop="name"), "account[0].name", "required"),
    (account_with("", drop="host"), "account[0].host", "required"),
    (account_with("", drop="user"), "account[0].user", "required"),
    (account_with("", drop="protocol"), "account[0].protocol", "required"),
    (account_with('protocol = "smtp"', drop="protocol"), "account[0].protocol", "pop3"),
    (account_with("port = 0"), "account[0].port", "65535"),
    (account_with("port = 70000"), "account[0].port", "65535"),
    (account_with('port = "993"'), "account[0].port", "port"),
    (account_with("port = true"), "account[0].port", "port"),
    (account_with('tls = "ssl"'), "account[0].tls", "starttls"),
    (account_with("tls = true"), "account[0].tls", ""),
    (account_with("verify = 1"), "account[0].verify", "true or false"),
    (account_with('after = "archive"'), "account[0].after", "move"),
    (account_with('after = "move"'), "account[0].move_to", "move"),
    (account_with('move_to = "Archive"'), "account[0].move_to", "move"),
    (account_with('after = "move"\nmove_to = "INBOX"'), "account[0].move_to", "folders"),
    (account_with('after = "seen"', drop="protocol") + 'protocol = "pop3"\n',
     "account[0].after", "POP3"),
    (account_with("max_size = 0"), "account[0].max_size", "at least 1"),
    (account_with("max_messages = -3"), "account[0].max_messages", "at least 1"),
    (account_with("max_messages = 2.5"), "account[0].max_messages", "number"),
    (account_with("interval = 0"), "account[0].interval", "positive"),
    (account_with('timeout = "long"'), "account[0].timeout", "seconds"),
    (account_with("idle = 1"), "account[0].idle", "true or false"),
    (account_with("recipients = []", drop="recipients"), "account[0].recipients", "list"),
    (account_with('recipients = "a@b.test"', drop="recipients"), "account[0].recipients",
     "list"),
    (account_with('recipients = ["not an address"]', drop="recipients"),
     "account[0].recipients", ""),
    (account_with("folders = []"), "account[0].folders", "list"),
    (account_with('password_env = "X"'), "account[0]", "one of password"),
    (account_with("", drop="password"), "account[0]", "one of password"),
    (account_with('password = ""', drop="password"), "account[0].password", "required"),
    (ACCOUNT, "account[0].destination", "no destination"),
    ('[destination]\nmaildir = "m"\nsmtp = "h:25"\n' + ACCOUNT, "destination", "exactly one"),
    ("[destination]\n" + ACCOUNT, "destination", "exactly one"),
    ('destination = "m"\n' + ACCOUNT, "destination", "table"),
    ('[destination]\nsmtp = "nohost"\n' + ACCOUNT, "destination.smtp", "host:port"),
    ('[destination]\nlmtp = "h:0"\n' + ACCOUNT, "destination.lmtp", "port"),
    ('[destination]\nmaildir = "m"\nstarttls = true\n' + ACCOUNT, "destination.starttls",
     "smtp"),
    ('[destination]\nsmtp = "h:25"\nstarttls = "yes"\n' + ACCOUNT, "destination.starttls",
     "true or false"),
    ('[destination]\nmaildir = "m"\nhost = "x"\n' + ACCOUNT, "destination.host", "unknown"),
    ('[destination.mda]\nusers = "u"\n' + ACCOUNT, "destination.mda.domains", "domain"),
    ('[destination.mda]\nusers = "u"\ndomains = ["x.test"]\nformat = "mh"\n' + ACCOUNT,
     "destination.mda.format", "mbox"),
    ('[destination.mda]\nusers = "u"\ndomains = ["x.test"]\nquota = 1\n' + ACCOUNT,
     "destination.mda.quota", "unknown"),
    (account_with('[account.destination]\nsmtp = "h"'), "account[0].destination.smtp",
     "host:port"),
    (DESTINATION + ACCOUNT + ACCOUNT, "account[1].name", "twice"),
    ("state_dir = 3\n" + DESTINATION + ACCOUNT, "state_dir", ""),
]


@pytest.mark.parametrize(("text", "key", "word"), ERRORS)
def test_errors_name_their_key(tmp_path: Path, text: str, key: str, word: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text, str(tmp_path))
    assert caught.value.key == key, str(caught.value)
    assert str(caught.value).startswith(f"{key}: ")
    assert word in str(caught.value)


def test_password_env_is_read_at_login(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse(account_with('password_env = "MRA_TEST_PW"', drop="password"))
    account, = config.accounts
    monkeypatch.delenv("MRA_TEST_PW", raising=False)
    with pytest.raises(ConfigError) as caught:
        account.secret()
    assert caught.value.key == "account[0].password_env" and "MRA_TEST_PW" in str(caught.value)
    monkeypatch.setenv("MRA_TEST_PW", "from-env")
    assert account.secret() == "from-env"
    config.close()


def test_password_file_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "work.pw").write_text("s3cret\nsecond line\n")
    (tmp_path / "conf" / "ca.pem").write_text("")
    file = tmp_path / "conf" / "fetch.toml"
    file.write_text('state_dir = "st"\n' + account_with(
        'password_file = "work.pw"\nca_file = "ca.pem"', drop="password"))
    config = load_fetch_config(file)
    try:
        account, = config.accounts
        assert account.secret() == "s3cret"
        assert account.ca_file == str(tmp_path / "conf" / "ca.pem")
        assert config.state_dir == str(tmp_path / "conf" / "st")
        assert isinstance(account.deliver, MaildirDelivery)
    finally:
        config.close()


def test_defaults(tmp_path: Path) -> None:
    config = parse(DESTINATION + ACCOUNT, str(tmp_path))
    account, = config.accounts
    assert config.state_dir == str(tmp_path / "fetch-state")
    assert (account.tls, account.verify, account.after, account.folders) == (
        "implicit", True, "keep", ("INBOX",))
    assert account.port is None and account.idle and account.interval == 300.0
    config.close()


def test_destination_kinds(tmp_path: Path) -> None:
    (tmp_path / "users").write_text("alice@example.test\n")
    (tmp_path / "aliases").write_text("postmaster: alice@example.test\n")
    text = DESTINATION + ACCOUNT + textwrap.dedent("""
        [[account]]
        name = "smtp"
        protocol = "pop3"
        host = "h"
        user = "u"
        password = "p"
        recipients = ["alice@example.test"]
        [account.destination]
        smtp = "127.0.0.1:2525"
        starttls = false

        [[account]]
        name = "lmtp"
        protocol = "pop3"
        host = "h"
        user = "u"
        password = "p"
        recipients = ["alice@example.test"]
        destination = { lmtp = "[::1]:24" }

        [[account]]
        name = "mda"
        protocol = "imap"
        host = "h"
        user = "u"
        password = "p"
        recipients = ["alice@example.test"]
        interval = 60
        [account.destination.mda]
        users = "users"
        aliases = "aliases"
        domains = ["example.test"]
        mailboxes = "boxes/{user}"
        """)
    config = parse(text, str(tmp_path))
    try:
        maildir, smtp, lmtp, mda = (a.deliver for a in config.accounts)
        assert isinstance(maildir, MaildirDelivery)
        assert isinstance(smtp, SMTPForward) and not smtp.lmtp
        assert (smtp.host, smtp.port, smtp.starttls) == ("127.0.0.1", 2525, False)
        assert isinstance(lmtp, SMTPForward) and lmtp.lmtp
        assert (lmtp.host, lmtp.port, lmtp.starttls) == ("::1", 24, None)
        assert isinstance(mda, MDA)
        assert config.accounts[3].interval == 60.0
        assert len(config.closers) == 2  # the Maildir and the MDA
    finally:
        config.close()


def test_a_toml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    file = tmp_path / "f.toml"
    file.write_text('state_dir = "x"\n[[account]\n')
    with pytest.raises(ConfigError) as caught:
        load_fetch_config(file)
    assert caught.value.key == "" and "line 2" in str(caught.value)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_fetch_config(tmp_path / "nope.toml")
    assert caught.value.key == "" and "nope.toml" in str(caught.value)


def test_destinations_made_before_an_error_are_closed(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[str] = []
    original = MaildirDelivery.close

    def spy(self: MaildirDelivery) -> None:
        closed.append("maildir")
        original(self)

    monkeypatch.setattr(MaildirDelivery, "close", spy)
    with pytest.raises(ConfigError):
        parse(DESTINATION + ACCOUNT + "[[account]]\nname = 3\n", str(tmp_path))
    assert closed == ["maildir"]
    assert not os.path.exists(tmp_path / "mail")
