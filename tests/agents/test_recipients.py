"""The users and aliases of an MDA (mailagents/agents/_recipients.py): the file formats,
the resolution of a recipient to its users, and the checks made when they are loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.agents import LocalRecipients, LocalTarget
from mailagents.agents._recipients import parse_aliases, parse_size, parse_users
from mailagents.smtp import Mailbox
from mailagents.userdb import PasswordFile

DOMAINS = {"example.test", "other.test"}
USERS = {"alice@example.test": None, "bob": 100, "carol@other.test": None}
ALIASES = {
    "postmaster": ["alice@example.test"],
    "team@example.test": ["alice", "bob", "alice@example.test"],
    "all@example.test": ["team", "carol@other.test"],
    "alice@example.test": ["alice", "bob"],
    "@other.test": ["carol"],
    "alice+x@example.test": ["bob"],
}


def table(**options: object) -> LocalRecipients:
    return LocalRecipients(USERS, ALIASES, local_domains=DOMAINS, **options)  # type: ignore[arg-type]


def resolve(recipients: LocalRecipients, address: str) -> list[tuple[str, str | None]] | None:
    local, _, domain = address.rpartition("@")
    found = recipients.resolve(Mailbox(local, domain))
    return None if found is None else [(t.identity, t.folder) for t in found]


@pytest.mark.parametrize(("text", "size"), [("100", 100), ("2K", 2048), ("50m", 50 << 20),
                                            ("1G", 1 << 30), (" 7 ", 7)])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1T", "-5", "1.5M", "M"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_users_file() -> None:
    text = "# users\nAlice@Example.TEST 1M\n\nbob   # no quota\ncarol 10\n"
    assert parse_users(text) == {"alice@example.test": 1 << 20, "bob": None, "carol": 10}
    with pytest.raises(ValueError, match="users:2"):
        parse_users("a\nb 1 2\n")
    with pytest.raises(ValueError, match="f:1"):
        parse_users("a lots\n", "f")


def test_aliases_file() -> None:
    text = ("# aliases\nPostmaster: Alice\nteam: alice,\n  bob , carol\n"
            "@Other.test: carol@other.test\n")
    assert parse_aliases(text) == {
        "postmaster": ("alice",),
        "team": ("alice", "bob", "carol"),
        "@other.test": ("carol@other.test",),
    }


@pytest.mark.parametrize(("text", "line"), [
    ("a: |/usr/bin/prog\n", 1),
    ("a: /var/mail/a\n", 1),
    ("a: :include:/etc/list\n", 1),
    ("x: y\na: b\na: c\n", 3),
    ("no colon here\n", 1),
    ("a:\n", 1),
    ("  b\n", 1),
])
def test_bad_aliases(text: str, line: int) -> None:
    with pytest.raises(ValueError, match=f"aliases:{line}"):
        parse_aliases(text)


@pytest.mark.parametrize(("address", "expected"), [
    ("alice@example.test", [("alice@example.test", None), ("bob", None)]),  # self-alias
    ("ALICE@Example.Test", [("alice@example.test", None), ("bob", None)]),
    ("bob@example.test", [("bob", None)]),
    ("bob@other.test", [("bob", None)]),  # a bare user is in every local domain
    ("team@example.test", [("alice@example.test", None), ("bob", None)]),  # deduplicated
    ("all@example.test", [("alice@example.test", None), ("bob", None),
                          ("carol@other.test", None)]),
    ("postmaster@other.test", [("alice@example.test", None), ("bob", None)]),
    ("postmaster@", [("alice@example.test", None), ("bob", None)]),  # <postmaster>
    ("nobody@other.test", [("carol@other.test", None)]),  # the catch-all
    ("carol@other.test", [("carol@other.test", None)]),
    ("nobody@example.test", None),
    ("alice@remote.test", None),
    ("bob+Lists@example.test", [("bob", "Lists")]),  # the tag's case is kept
    ("alice+x@example.test", [("bob", None)]),  # a whole alias wins over the extension
    ("bob+@example.test", [("bob", None)]),  # an empty extension: INBOX
    ("+bob@example.test", None),
])
def test_resolve(address: str, expected: list[tuple[str, str | None]] | None) -> None:
    assert resolve(table(), address) == expected


def test_targets_carry_the_address_in_the_recipients_domain() -> None:
    [target] = table().resolve(Mailbox("bob", "other.test")) or []
    assert target == LocalTarget(identity="bob", address="bob@other.test")


def test_no_delimiter_turns_extensions_off() -> None:
    assert resolve(table(delimiter=""), "bob+lists@example.test") is None
    assert resolve(table(delimiter="-"), "bob-lists@example.test") == [("bob", "lists")]


@pytest.mark.parametrize(("aliases", "error"), [
    ({}, "RFC 5321"),  # no postmaster
    ({"postmaster": ["nobody"]}, "neither a user nor an alias"),
    ({"postmaster": ["alice@remote.test"]}, "not a local address"),
    ({"postmaster": ["alice@example.test"], "a": ["b"], "b": ["a"]}, "neither"),
    ({"postmaster": ["alice@example.test"], "x@remote.test": ["bob"]}, "not a local domain"),
    ({"postmaster": ["alice@example.test"], "@example.test": ["ghost"]}, "neither"),
    ({"postmaster": ["alice@example.test"],
      **{f"l{i}": [f"l{i + 1}"] for i in range(11)}, "l11": ["bob"]}, "levels"),
])
def test_broken_tables_are_refused_at_load(aliases: dict[str, list[str]], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        LocalRecipients(USERS, aliases, local_domains=DOMAINS)


def test_constructor_checks() -> None:
    with pytest.raises(TypeError):
        LocalRecipients(USERS, ALIASES, local_domains="example.test")
    with pytest.raises(ValueError):
        LocalRecipients(USERS, ALIASES, local_domains=())
    with pytest.raises(ValueError):
        LocalRecipients(USERS, ALIASES, local_domains=DOMAINS, delimiter="++")


def test_users_as_a_set_quotas_and_is_user() -> None:
    recipients = LocalRecipients({"a@example.test"}, {"postmaster": ["a"]},
                                 local_domains={"example.test"})
    assert recipients.is_user("A@example.test") and not recipients.is_user("b")
    assert recipients.quota("a@example.test") is None
    assert table().quota("bob") == 100


def test_files_and_reload(tmp_path: Path) -> None:
    users, aliases = tmp_path / "users", tmp_path / "aliases"
    users.write_text("alice@example.test\n")
    aliases.write_text("postmaster: alice\n")
    recipients = LocalRecipients(users, aliases, local_domains={"example.test"})
    assert resolve(recipients, "bob@example.test") is None
    users.write_text("alice@example.test\nbob@example.test 5K\n")
    recipients.reload()
    assert resolve(recipients, "bob@example.test") == [("bob@example.test", None)]
    assert recipients.quota("bob@example.test") == 5 << 10
    # A broken reload is refused and the tables in use stay.
    aliases.write_text("postmaster: ghost\n")
    with pytest.raises(ValueError, match="ghost"):
        recipients.reload()
    assert resolve(recipients, "postmaster@example.test") == [("alice@example.test", None)]


def test_users_from_a_password_file(tmp_path: Path) -> None:
    store = PasswordFile(tmp_path / "passwd", scrypt_n=2**8)
    try:
        store.set_password("alice@example.test", "pw")
        recipients = LocalRecipients(store, {"postmaster": ["alice"]},
                                     local_domains={"example.test"})
        assert recipients.is_user("alice@example.test")
        assert resolve(recipients, "alice@example.test") == [("alice@example.test", None)]
        assert resolve(recipients, "bob@example.test") is None
    finally:
        store.close()


@given(st.text(alphabet="abcdefgxyz0123456789.+-_", min_size=1, max_size=20),
       st.sampled_from(["example.test", "other.test", "remote.test"]))
def test_resolve_never_raises(local: str, domain: str) -> None:
    try:
        mailbox = Mailbox(local, domain)
    except ValueError:
        return  # not a valid local part (a leading dot, say)
    found = table().resolve(mailbox)
    assert found is None or found
