"""The users and aliases of an MDA (mailagents/agents/_recipients.py): the file formats,
the resolution of a recipient to its users, and the checks made when they are loaded."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.agents import LocalRecipients, LocalTarget
from mailagents.agents._recipients import parse_aliases, parse_size, parse_users
from mailagents.smtp import AddressError, Mailbox
from mailagents.userdb import PasswordFile

DOMAINS = {"example.test", "other.test"}
USERS = {"alice@example.test": None, "bob": 100, "carol@other.test": 5 << 20, "dan": None}
ALIASES = {
    "postmaster": ["alice@example.test"],
    "team@example.test": ["alice", "bob", "alice@example.test", "bob@other.test"],
    "all@example.test": ["team", "carol@other.test"],
    "alice@example.test": ["alice", "bob"],  # naming itself: alice's INBOX too
    "@other.test": ["carol"],  # the catch-all of other.test
    "alice+x@example.test": ["dan"],  # a whole alias, not alice's folder x
    "sales": ["dan"],  # bare: in every local domain
    "help": ["helpdesk"],  # nested, bare target in the alias's own domain
    "helpdesk@example.test": ["dan"],
    "helpdesk@other.test": ["carol"],
}
A, B, C, D = "alice@example.test", "bob", "carol@other.test", "dan"


def table(users: object = USERS, aliases: object = ALIASES, **options: object) -> LocalRecipients:
    options.setdefault("local_domains", DOMAINS)
    return LocalRecipients(users, aliases, **options)  # type: ignore[arg-type]


def resolve(recipients: LocalRecipients, address: str) -> list[tuple[str, str | None]] | None:
    local, _, domain = address.rpartition("@")
    found = recipients.resolve(Mailbox(local, domain))
    return None if found is None else [(t.identity, t.folder) for t in found]


TABLE = table()

# ------------------------------------------------------------------------ the users file


@pytest.mark.parametrize(("text", "size"), [
    ("100", 100), ("0", 0), ("1K", 1024), ("2k", 2048), ("50M", 50 << 20), ("50m", 50 << 20),
    ("1G", 1 << 30), ("3g", 3 << 30), (" 7 ", 7),
])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1T", "-5", "1.5M", "M", "1 M", "1MB", "+3", "0x10"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize(("text", "users"), [
    ("alice@example.test\n", {"alice@example.test": None}),
    ("Alice@Example.TEST 1M\n", {"alice@example.test": 1 << 20}),
    ("bob 10\ncarol 2K\ndan 3G\n", {"bob": 10, "carol": 2048, "dan": 3 << 30}),
    ("# users\n\n   \nbob   # no quota\n\tcarol\t5  # five\n", {"bob": None, "carol": 5}),
    ("", {}),
    ("# only a comment\n", {}),
])
def test_users_file(text: str, users: dict[str, int | None]) -> None:
    assert parse_users(text) == users


@pytest.mark.parametrize(("text", "where"), [
    ("a\nb 1 2\n", "users:2"),  # three fields
    ("# c\n\na lots\n", "users:3"),  # a bad size, counted with comments and blanks
    ("a 1T\n", "users:1"),
])
def test_bad_users_files(text: str, where: str) -> None:
    with pytest.raises(ValueError, match=f"^{where}: "):
        parse_users(text)
    with pytest.raises(ValueError, match=f"^/etc/mail/{where}: "):
        parse_users(text, "/etc/mail/users")


# ---------------------------------------------------------------------- the aliases file


@pytest.mark.parametrize(("text", "aliases"), [
    ("Postmaster: Alice\n", {"postmaster": ("alice",)}),
    ("team: alice, Bob@Example.TEST ,carol\n",
     {"team": ("alice", "bob@example.test", "carol")}),
    ("team: alice,\n  bob,\n\tcarol\n", {"team": ("alice", "bob", "carol")}),
    ("team: alice,\n# a comment between\n  bob # and one after\nx: y\n",
     {"team": ("alice", "bob"), "x": ("y",)}),
    ("@Other.TEST: carol@other.test\n", {"@other.test": ("carol@other.test",)}),
    ("a@example.test:b,,c,\n", {"a@example.test": ("b", "c")}),
    ("# aliases\n\n", {}),
])
def test_aliases_file(text: str, aliases: dict[str, tuple[str, ...]]) -> None:
    assert parse_aliases(text) == aliases


@pytest.mark.parametrize(("text", "line", "why"), [
    ("a: |/usr/bin/prog\n", 1, "no commands"),
    ('a: "|/usr/bin/prog"\n', 1, "no commands"),
    ("x: y\na: b, /var/mail/a\n", 2, "no commands"),
    ("a: :include:/etc/list\n", 1, "no commands"),
    ("a: @example.test\n", 1, "no commands"),
    ("x: y\na: b\nA: c\n", 3, "defined twice"),
    ("x: y\n\nno colon here\n", 3, "expected 'name: target"),
    ("a:\n", 1, "expected 'name: target"),
    ("a: ,  ,\n", 1, "expected 'name: target"),
    (": b\n", 1, "expected 'name: target"),
    ("# c\n  b\n", 2, "continuation line with no alias"),
])
def test_bad_aliases_files(text: str, line: int, why: str) -> None:
    with pytest.raises(ValueError, match=f"^aliases:{line}: .*{why}"):
        parse_aliases(text)
    with pytest.raises(ValueError, match=f"^/etc/aliases:{line}: "):
        parse_aliases(text, "/etc/aliases")


# ------------------------------------------------------------------------- resolving


@pytest.mark.parametrize(("address", "expected"), [
    ("alice@example.test", [(A, None), (B, None)]),  # the alias naming itself
    ("ALICE@Example.TEST", [(A, None), (B, None)]),
    ("bob@example.test", [(B, None)]),
    ("BoB@other.test", [(B, None)]),  # a bare user is in every local domain
    ("carol@other.test", [(C, None)]),
    # Sorted, deduplicated by (identity, address): bob as bob@example.test and as
    # bob@other.test are two targets (the MDA writes one copy, keyed by user and folder).
    ("team@example.test", [(A, None), (B, None), (B, None)]),
    ("all@example.test", [(A, None), (B, None), (B, None), (C, None)]),  # nested
    ("sales@example.test", [(D, None)]),
    ("sales@other.test", [(D, None)]),
    ("help@example.test", [(D, None)]),  # a bare target in the alias's own domain
    ("help@other.test", [(C, None)]),
    ("postmaster@example.test", [(A, None), (B, None)]),
    ("PostMaster@other.test", [(A, None), (B, None)]),
    ("postmaster@", [(A, None), (B, None)]),  # <postmaster>
    ("nobody@other.test", [(C, None)]),  # the catch-all, for unknown local parts
    ("dan@other.test", [(D, None)]),  # a known user is not caught
    ("sales+x@other.test", [(D, "x")]),
    ("nobody+x@other.test", [(C, None)]),  # the catch-all keeps no folder
    ("nobody@example.test", None),  # no catch-all there
    ("alice@remote.test", None),
    ("alice@[192.0.2.1]", None),
    ("carol@example.test", None),  # carol is a user of other.test only
    ("bob+Lists@example.test", [(B, "Lists")]),  # the tag's case is kept
    ("BOB+Lists@example.test", [(B, "Lists")]),
    ("bob+a+b@example.test", [(B, "a+b")]),  # split at the first delimiter
    ("bob++x@example.test", [(B, "+x")]),
    ("alice+News@example.test", [(A, "News"), (B, "News")]),  # through the alias
    ("alice+x@example.test", [(D, None)]),  # a whole alias wins over the extension
    ("ALICE+X@example.test", [(D, None)]),
    ("bob+@example.test", [(B, None)]),  # an empty extension: INBOX
    ("+bob@example.test", None),  # a leading delimiter is no extension
    ("+bob@other.test", [(C, None)]),  # ... so the catch-all takes it
    ("+@example.test", None),
    ("++@example.test", None),
    ("nobody+bob@example.test", None),
])
def test_resolve(address: str, expected: list[tuple[str, str | None]] | None) -> None:
    assert resolve(TABLE, address) == expected


def test_targets_carry_the_address_in_the_recipients_domain() -> None:
    assert TABLE.resolve(Mailbox("BOB+Tag", "Other.Test")) == [
        LocalTarget(identity="bob", address="bob@other.test", folder="Tag")
    ]
    assert TABLE.resolve(Mailbox("all", "example.test")) == [
        LocalTarget(A, A), LocalTarget(B, "bob@example.test"), LocalTarget(B, "bob@other.test"),
        LocalTarget(C, C),
    ]


def test_delimiter() -> None:
    off = table(delimiter="")
    assert resolve(off, "bob+lists@example.test") is None
    assert resolve(off, "alice+x@example.test") == [(D, None)]  # whole names still work
    dash = table(delimiter="-")
    assert resolve(dash, "bob-lists@example.test") == [(B, "lists")]
    assert resolve(dash, "bob+lists@example.test") is None


def test_local_domains_are_folded() -> None:
    recipients = table(local_domains={"Example.TEST.", "other.test."})
    assert recipients.local_domains == frozenset(DOMAINS)
    assert resolve(recipients, "alice@example.test") == [(A, None), (B, None)]


def test_bare_postmaster_goes_to_the_first_domain() -> None:
    aliases = {"postmaster@b.test": ["bob"], "postmaster@a.test": ["alice@a.test"]}
    recipients = table({"alice@a.test", "bob"}, aliases, local_domains={"b.test", "a.test"})
    assert resolve(recipients, "postmaster@") == [("alice@a.test", None)]
    assert resolve(recipients, "postmaster@b.test") == [(B, None)]


def test_postmaster_may_be_a_user() -> None:
    recipients = table({"postmaster", "x@example.test"}, None)
    assert resolve(recipients, "postmaster@other.test") == [("postmaster", None)]


def test_alias_loops() -> None:
    # Each user is reached through the other's alias, and the chain stops at the user.
    recipients = table({"a", "b", "postmaster"}, {"a": ["b"], "b": ["a"]})
    assert resolve(recipients, "a@example.test") == [("a", None)]
    assert resolve(recipients, "b@other.test") == [("b", None)]
    # A loop with no user at its end is refused when loaded.
    for aliases in ({"a": ["b"], "b": ["a"]}, {"a": ["a"]}, {"a": ["b"], "b": ["c"], "c": ["a"]}):
        with pytest.raises(ValueError, match="neither a user nor an alias"):
            table({"postmaster"}, aliases)


def chain(n: int) -> dict[str, list[str]]:
    """``l0 -> l1 -> ... -> l(n-1) -> bob``: n levels of aliases."""
    return {"postmaster": ["bob"], **{f"l{i}": [f"l{i + 1}"] for i in range(n - 1)},
            f"l{n - 1}": ["bob"]}


def test_ten_levels_of_aliases_and_no_more() -> None:
    assert resolve(table(aliases=chain(10)), "l0@example.test") == [(B, None)]
    with pytest.raises(ValueError, match="more than 10 levels"):
        table(aliases=chain(11))


@pytest.mark.parametrize(("aliases", "error"), [
    ({}, r"postmaster@example.test reaches nobody.*RFC 5321"),  # no postmaster
    ({"postmaster@example.test": ["bob"]}, r"postmaster@other.test reaches nobody.*RFC 5321"),
    ({"postmaster": ["nobody"]}, "'nobody' is neither a user nor an alias"),
    ({"postmaster": ["alice@remote.test"]}, "'alice@remote.test' is not a local address"),
    ({"postmaster": ["bob"], "x@remote.test": ["bob"]}, "'remote.test' is not a local domain"),
    ({"postmaster": ["bob"], "@remote.test": ["bob"]}, "'remote.test' is not a local domain"),
    ({"postmaster": ["bob"], "@example.test": ["ghost"]}, "'ghost' is neither"),
    ({"postmaster": ["bob"], "x": ["carol"]}, "'carol' is neither"),  # not in example.test
    ({"postmaster": ["bob"], "x": ["|/bin/sh"]}, "neither a user nor an alias"),
    ({"postmaster": ["bob"], "big": [f"u{i}" for i in range(1001)]}, "more than 1000 targets"),
])
def test_broken_tables_are_refused_at_load(aliases: dict[str, list[str]], error: str) -> None:
    users = {*USERS, *(f"u{i}" for i in range(1001))}
    with pytest.raises(ValueError, match=error):
        table(users, aliases)


@pytest.mark.parametrize(("options", "error"), [
    ({"local_domains": "example.test"}, TypeError),
    ({"local_domains": ()}, ValueError),
    ({"local_domains": DOMAINS, "delimiter": "++"}, ValueError),
])
def test_constructor_checks(options: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        table(**options)


# ------------------------------------------------------------------- the users' sources


@pytest.mark.parametrize("users", [
    {"Alice@Example.test", "bob"},
    ["alice@example.test", "BOB"],
    frozenset({"alice@example.test", "bob"}),
    {"alice@example.test": None, "Bob": 7},
])
def test_users_as_collections_and_mappings(users: object) -> None:
    recipients = table(users, {"postmaster": ["alice@example.test"]})
    assert recipients.is_user("alice@example.test") and recipients.is_user("ALICE@example.test")
    assert recipients.is_user("bob") and not recipients.is_user("bob@example.test")
    assert not recipients.is_user("carol")
    assert resolve(recipients, "bob@other.test") == [(B, None)]
    assert recipients.quota("alice@example.test") is None
    assert recipients.quota("BOB") == (7 if isinstance(users, dict) else None)


def test_quota() -> None:
    assert TABLE.quota("bob") == 100
    assert TABLE.quota("carol@other.test") == 5 << 20
    assert TABLE.quota("alice@example.test") is None
    assert TABLE.quota("nobody") is None


@pytest.mark.parametrize("as_str", [False, True])
def test_files_and_reload(tmp_path: Path, as_str: bool) -> None:
    users, aliases = tmp_path / "users", tmp_path / "aliases"
    users.write_text("alice@example.test\n")
    aliases.write_text("postmaster: alice\n")
    paths = (str(users), str(aliases)) if as_str else (users, aliases)
    recipients = table(*paths, local_domains={"example.test"})
    assert resolve(recipients, "bob@example.test") is None
    users.write_text("alice@example.test\nbob@example.test 5K\n")
    aliases.write_text("postmaster: alice\nteam: alice,\n bob\n")
    recipients.reload()
    assert resolve(recipients, "bob@example.test") == [("bob@example.test", None)]
    assert resolve(recipients, "team@example.test") == [(A, None), ("bob@example.test", None)]
    assert recipients.quota("bob@example.test") == 5 << 10
    # A reload that would break is refused, and the tables in use stay.
    for broken_users, broken_aliases, error in [
        ("alice@example.test\nbob@example.test\n", "postmaster: ghost\n", "'ghost' is neither"),
        ("alice@example.test\n", "postmaster: alice\nteam: alice, bob\n", "'bob' is neither"),
        ("alice@example.test\nbob 1 2\n", "postmaster: alice\n", f"{users}:2: "),
        ("alice@example.test\n", "postmaster: alice\nx: |cat\n", f"{aliases}:2: "),
    ]:
        users.write_text(broken_users)
        aliases.write_text(broken_aliases)
        with pytest.raises(ValueError, match=error):
            recipients.reload()
        assert resolve(recipients, "team@example.test") == [(A, None), ("bob@example.test", None)]
        assert recipients.quota("bob@example.test") == 5 << 10


def test_a_bad_file_is_refused_at_construction(tmp_path: Path) -> None:
    users, aliases = tmp_path / "users", tmp_path / "aliases"
    users.write_text("alice\n")
    aliases.write_text("postmaster: alice\n\nteam alice\n")
    with pytest.raises(ValueError, match=f"^{aliases}:3: "):
        table(users, aliases)


def test_users_from_a_password_file(tmp_path: Path) -> None:
    with PasswordFile(tmp_path / "passwd", scrypt_n=2**8) as store:
        store.set_password("alice@example.test", "pw")
        store.set_password("carol", "pw")
        recipients = table(store, {"postmaster": ["alice@example.test"], "team": ["carol"]},
                           local_domains={"example.test"})
        assert recipients.is_user("alice@example.test") and recipients.is_user("carol")
        assert not recipients.is_user("bob@example.test")
        assert resolve(recipients, "ALICE@example.test") == [(A, None)]
        assert resolve(recipients, "carol+x@example.test") == [("carol", "x")]
        assert resolve(recipients, "team@example.test") == [("carol", None)]
        assert resolve(recipients, "bob@example.test") is None
        assert recipients.quota("alice@example.test") is None
        # The store is looked up at each resolve: a new user needs no reload.
        store.set_password("bob@example.test", "pw")
        assert resolve(recipients, "bob@example.test") == [("bob@example.test", None)]
        with pytest.raises(ValueError, match=r"postmaster@example\.test reaches nobody"):
            table(store, {}, local_domains={"example.test"})


# ----------------------------------------------------------------------------- property

LOCAL_PARTS = st.text(alphabet=string.ascii_letters + string.digits + ".+-_",
                      min_size=1, max_size=30)


@given(LOCAL_PARTS, st.sampled_from(["example.test", "Other.Test", "remote.test"]))
def test_resolve_never_raises(local: str, domain: str) -> None:
    try:
        mailbox = Mailbox(local, domain)
    except AddressError:
        return  # not a local part that can be written
    found = TABLE.resolve(mailbox)
    assert found is None or found
    if found:
        assert found == sorted(set(found))
        assert all(TABLE.is_user(t.identity) for t in found)
        # Case changes nothing but the folder's name, which is kept as written.
        lower = TABLE.resolve(Mailbox(local.lower(), domain))
        assert lower is not None
        assert [(t.identity, t.address, t.folder and t.folder.lower()) for t in found] == [
            (t.identity, t.address, t.folder) for t in lower
        ]
