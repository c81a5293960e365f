"""StoreResolver (mailagents/store/_resolver.py): one rule from an identity to its
store for every agent, a bounded set of open stores, one executor they share."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from mailagents.store import MaildirStore, MboxStore, Store, StoreResolver


def test_the_template_gives_each_identity_its_confined_path(tmp_path: Path) -> None:
    resolver = StoreResolver(str(tmp_path / "{domain}" / "{local}" / "Maildir"))
    assert resolver.path("Alice@Example.TEST") == str(tmp_path / "example.test/alice/Maildir")
    users = StoreResolver(str(tmp_path / "{user}"))
    assert users.path("bob") == str(tmp_path / "bob")
    assert users.path("../../etc@x") == str(tmp_path / "%2E.%2F..%2Fetc@x")  # one component
    assert users.path("a/b@c") == str(tmp_path / "a%2Fb@c")
    assert StoreResolver(str(tmp_path / "{domain}!")).path("bob") == str(tmp_path / "!")


def test_one_store_per_path_sharing_one_executor(tmp_path: Path) -> None:
    resolver = StoreResolver(str(tmp_path / "{local}"), fsync=False)
    try:
        alice = resolver.open("alice@example.test")
        assert isinstance(alice, MaildirStore) and alice.root == str(tmp_path / "alice")
        assert resolver.open("ALICE@example.test") is alice
        bob = resolver.open("bob@example.test")
        assert bob.executor is alice.executor
        bob.close()  # a shared executor outlives one store's close
        assert asyncio.run(alice.run(lambda: 42)) == 42
        assert asyncio.run(resolver.store_for("alice@example.test")) is alice
    finally:
        resolver.close()
    with pytest.raises(RuntimeError):  # stopped with the resolver
        alice.executor.submit(lambda: None)


def test_the_open_stores_are_bounded_but_one_in_use_is_never_doubled(tmp_path: Path) -> None:
    resolver = StoreResolver(str(tmp_path / "{local}"), fsync=False, max_stores=2)
    try:
        kept = resolver.open("kept@x")
        for n in range(10):
            resolver.open(f"user{n}@x")
        gc.collect()
        assert resolver.open_stores() <= 3  # the two last used, and the one we hold
        assert resolver.open("kept@x") is kept  # evicted from the recent, still in use
    finally:
        resolver.close()


def test_mbox_format_and_async_open(tmp_path: Path) -> None:
    resolver = StoreResolver(tmp_path / "{local}", format="mbox", fsync=False)
    try:
        store = asyncio.run(resolver.store_for("carol@x"))
        assert isinstance(store, MboxStore) and store.root == str(tmp_path / "carol")
    finally:
        resolver.close()


def test_a_callable_is_asked_and_its_stores_left_alone(tmp_path: Path) -> None:
    mine = MaildirStore(tmp_path / "m", fsync=False)
    asked: list[str] = []

    def mailboxes(identity: str) -> Store:
        asked.append(identity)
        return mine

    resolver = StoreResolver(mailboxes)
    assert not resolver.is_template
    assert resolver.open("a@x") is mine and asyncio.run(resolver.store_for("b@x")) is mine
    assert asked == ["a@x", "b@x"]
    with pytest.raises(TypeError):
        resolver.path("a@x")
    resolver.close()
    assert asyncio.run(mine.run(lambda: 1)) == 1  # not closed by the resolver
    mine.close()


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        StoreResolver(str(tmp_path), format="mh")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        StoreResolver(str(tmp_path), max_stores=0)
