"""mailagents.userdb: the password file and its answers to SASL's credential requests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailagents import sasl, userdb
from mailagents.userdb import PasswordFile, ScryptHash, UserEntry, UserStore

SMALL_N = 2**10
PASSWORD = "correct horse battery staple"


def make_store(path: Path, **kwargs: Any) -> PasswordFile:
    return PasswordFile(path, scrypt_n=SMALL_N, **kwargs)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "users"


@pytest.fixture
def store(path: Path) -> Iterator[PasswordFile]:
    with make_store(path) as s:
        yield s


@pytest.fixture
def scrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the calls to hashlib.scrypt (each records its n)."""
    calls: list[int] = []
    real = hashlib.scrypt

    def counting(password: bytes, **kwargs: Any) -> bytes:
        calls.append(kwargs["n"])
        return real(password, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    return calls


def plain_request(user: str, password: str, authzid: str | None = None) -> sasl.NeedCredentials:
    return sasl.NeedCredentials(mechanism="PLAIN", authcid=user, authzid=authzid, password=password)


def scram_request(user: str) -> sasl.NeedCredentials:
    return sasl.NeedCredentials(mechanism="SCRAM-SHA-256", authcid=user, authzid=None)


def run_plain(store: UserStore, user: str, password: str, authzid: str | None = None) -> Any:
    server = sasl.PlainServer()
    client = sasl.PlainClient(user, password, authzid)
    step = server.start(client.initial_response())
    assert isinstance(step, sasl.NeedCredentials)
    return server.provide(store.answer(step))


def run_scram(store: UserStore, user: str, password: str, authzid: str | None = None) -> Any:
    server = sasl.ScramSha256Server()
    client = sasl.ScramSha256Client(user, password, authzid)
    step = server.start(client.initial_response())
    assert isinstance(step, sasl.NeedCredentials)
    assert step.password is None
    step = server.provide(store.answer(step))
    assert isinstance(step, sasl.Challenge)
    step = server.receive(client.respond(step.data))
    if isinstance(step, sasl.Success):
        client.verify_success(step.final_data)
        assert client.done
    return step


# --------------------------------------------------------------------------- round trip


def test_set_verify_delete_round_trip(store: PasswordFile) -> None:
    assert store.lookup("alice") is None
    entry = store.set_password("alice", PASSWORD)
    assert entry.name == "alice" and entry.legacy_secret is None
    assert store.users() == ["alice"]
    assert store.lookup("alice") == entry
    assert store.verify_password("alice", PASSWORD)
    assert not store.verify_password("alice", PASSWORD + "!")
    verdict = store.answer(plain_request("alice", PASSWORD))
    assert verdict == sasl.PasswordVerdict(valid=True, may_act_as=frozenset())
    assert store.delete("alice")
    assert not store.delete("alice")
    assert store.lookup("alice") is None
    assert store.answer(plain_request("alice", PASSWORD)) == sasl.NoSuchUser()


def test_change_password_replaces_the_line(store: PasswordFile, path: Path) -> None:
    store.set_password("alice", "first password")
    store.set_password("bob", "bob's password")
    store.set_password("alice", "second password")
    assert store.users() == ["alice", "bob"]
    assert len(path.read_text().splitlines()) == 2
    assert not store.verify_password("alice", "first password")
    assert store.verify_password("alice", "second password")
    assert store.verify_password("bob", "bob's password")


def test_entry_encodes_and_decodes(store: PasswordFile) -> None:
    entry = store.make_entry("carol", PASSWORD, legacy=True, may_act_as=["a@x", "b@x"])
    assert UserEntry.decode(entry.encode()) == entry
    assert entry.scram.may_act_as == frozenset({"a@x", "b@x"})
    assert entry.scram.iterations >= sasl.MIN_ITERATIONS
    assert ScryptHash.decode(entry.scrypt.encode()) == entry.scrypt
    assert PASSWORD not in repr(entry)


def test_defaults_are_strong(tmp_path: Path) -> None:
    store = PasswordFile(tmp_path / "users")
    assert (store.scrypt_n, store.scrypt_r, store.scrypt_p) == (2**15, 8, 1)
    assert store.scram_iterations >= 4096
    assert store.max_concurrent == 4
    with pytest.raises(ValueError):
        PasswordFile(tmp_path / "users", scram_iterations=1000)
    with pytest.raises(ValueError):
        PasswordFile(tmp_path / "users", max_concurrent=0)


def test_default_parameters_hash_and_verify(tmp_path: Path) -> None:
    # One real-strength hash, to check maxmem is set high enough for n=2**15.
    entry = ScryptHash.create(b"pw")
    assert entry.n == 2**15 and entry.verify(b"pw") and not entry.verify(b"pW")


# --------------------------------------------------------------------------- answers


def test_wrong_password(store: PasswordFile) -> None:
    store.set_password("alice", PASSWORD)
    verdict = store.answer(plain_request("alice", "wrong"))
    assert verdict == sasl.PasswordVerdict(valid=False, may_act_as=frozenset())
    assert isinstance(run_plain(store, "alice", "wrong"), sasl.Failure)


def test_unknown_user_costs_one_scrypt(store: PasswordFile, scrypt_calls: list[int]) -> None:
    store.set_password("alice", PASSWORD)
    scrypt_calls.clear()
    assert store.answer(plain_request("mallory", PASSWORD)) == sasl.NoSuchUser()
    assert scrypt_calls == [SMALL_N]
    scrypt_calls.clear()
    store.answer(plain_request("alice", "wrong"))
    assert scrypt_calls == [SMALL_N]
    scrypt_calls.clear()
    # A name that cannot even be a user, and a password SASLprep refuses: still one.
    assert store.answer(plain_request("a:b", PASSWORD)) == sasl.NoSuchUser()
    assert store.answer(plain_request("alice", "bad\x07")) == sasl.PasswordVerdict(valid=False)
    assert scrypt_calls == [SMALL_N, SMALL_N]
    scrypt_calls.clear()
    # SCRAM never needs scrypt: the mechanism fakes a salt for unknown users itself.
    assert store.answer(scram_request("mallory")) == sasl.NoSuchUser()
    assert scrypt_calls == []


def test_plain_server_end_to_end(store: PasswordFile) -> None:
    store.set_password("alice", PASSWORD)
    step = run_plain(store, "alice", PASSWORD)
    assert step == sasl.Success(identity="alice", authcid="alice")
    assert isinstance(run_plain(store, "bob", PASSWORD), sasl.Failure)


def test_scram_end_to_end(store: PasswordFile) -> None:
    store.set_password("alice", PASSWORD)
    step = run_scram(store, "alice", PASSWORD)
    assert isinstance(step, sasl.Success) and step.identity == "alice"
    assert isinstance(run_scram(store, "alice", "wrong"), sasl.Failure)
    assert isinstance(run_scram(store, "nobody", PASSWORD), sasl.Failure)


def test_plain_and_scram_agree_on_normalisation(store: PasswordFile) -> None:
    # U+00A0 NO-BREAK SPACE maps to SPACE and U+00AD SOFT HYPHEN to nothing (RFC 4013).
    store.set_password("alice", "pass\u00a0word")
    for typed in ("pass word", "pass\u00a0wo\u00adrd"):
        assert isinstance(run_plain(store, "alice", typed), sasl.Success)
        assert isinstance(run_scram(store, "alice", typed), sasl.Success)


def test_user_names_are_saslprepped(store: PasswordFile) -> None:
    store.set_password("Ange\u0301lique", PASSWORD)  # decomposed: stored as NFKC
    assert store.users() == ["Ang\u00e9lique"]
    assert isinstance(run_plain(store, "Ang\u00e9lique", PASSWORD), sasl.Success)
    assert isinstance(run_scram(store, "Ange\u0301lique", PASSWORD), sasl.Success)


def test_may_act_as_honoured(store: PasswordFile) -> None:
    store.set_password("alice", PASSWORD, may_act_as=["postmaster"])
    assert store.answer(plain_request("alice", PASSWORD)) == sasl.PasswordVerdict(
        valid=True, may_act_as=frozenset({"postmaster"})
    )
    assert run_plain(store, "alice", PASSWORD, "postmaster") == sasl.Success(
        identity="postmaster", authcid="alice"
    )
    assert isinstance(run_plain(store, "alice", PASSWORD, "root"), sasl.Failure)
    step = run_scram(store, "alice", PASSWORD, "postmaster")
    assert isinstance(step, sasl.Success) and step.identity == "postmaster"
    assert isinstance(run_scram(store, "alice", PASSWORD, "root"), sasl.Failure)
    # Changing the password keeps the list unless one is given.
    store.set_password("alice", "new password")
    assert store.lookup("alice").may_act_as == frozenset({"postmaster"})  # type: ignore[union-attr]
    store.set_password("alice", "new password", may_act_as=())
    assert store.lookup("alice").may_act_as == frozenset()  # type: ignore[union-attr]


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeLegacySecret:
    secret: str


def test_cram_md5_gets_the_legacy_secret(
    store: PasswordFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sasl, "LegacySecret", FakeLegacySecret, raising=False)
    store.set_password("old", PASSWORD, legacy=True)
    store.set_password("new", PASSWORD)
    cram = sasl.NeedCredentials(mechanism="CRAM-MD5", authcid="old", authzid=None)
    assert store.answer(cram) == FakeLegacySecret(secret=PASSWORD)
    cram_new = sasl.NeedCredentials(mechanism="CRAM-MD5", authcid="new", authzid=None)
    assert store.answer(cram_new) == sasl.NoSuchUser()
    cram_none = sasl.NeedCredentials(mechanism="CRAM-MD5", authcid="none", authzid=None)
    assert store.answer(cram_none) == sasl.NoSuchUser()
    # Legacy users work with the other mechanisms too.
    assert isinstance(run_scram(store, "old", PASSWORD), sasl.Success)
    # Setting the password again without the option drops the secret.
    store.set_password("old", PASSWORD)
    assert store.lookup("old").legacy_secret is None  # type: ignore[union-attr]


def test_cram_md5_without_legacy_answer_type(
    store: PasswordFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(sasl, "LegacySecret", raising=False)
    store.set_password("old", PASSWORD, legacy=True)
    cram = sasl.NeedCredentials(mechanism="CRAM-MD5", authcid="old", authzid=None)
    assert store.answer(cram) == sasl.NoSuchUser()


def test_cram_md5_end_to_end(store: PasswordFile) -> None:
    server_class = getattr(sasl, "CramMd5Server", None)
    client_class = getattr(sasl, "CramMd5Client", None)
    if server_class is None or client_class is None or not hasattr(sasl, "LegacySecret"):
        pytest.skip("mailagents.sasl has no CRAM-MD5 yet")
    store.set_password("old", PASSWORD, legacy=True)
    store.set_password("new", PASSWORD)

    def run(user: str, password: str) -> Any:
        server, client = server_class(), client_class(user, password)
        challenge = server.start(None)
        step = server.receive(client.respond(challenge.data))
        assert isinstance(step, sasl.NeedCredentials)
        return server.provide(store.answer(step))

    assert isinstance(run("old", PASSWORD), sasl.Success)
    assert isinstance(run("old", "wrong"), sasl.Failure)
    assert isinstance(run("new", PASSWORD), sasl.Failure)  # no legacy secret
    assert isinstance(run("nobody", PASSWORD), sasl.Failure)


# --------------------------------------------------------------------------- the file


def test_file_never_holds_the_password(store: PasswordFile, path: Path) -> None:
    secret = "Unmistakable-Secret-42"
    store.set_password("alice", secret, may_act_as=["x"])
    data = path.read_bytes()
    for form in (secret.encode(), secret.encode("utf-16-le"), base64.b64encode(secret.encode())):
        assert form not in data
    # The legacy option does store it (plaintext-equivalent), in that user's line only.
    store.set_password("old", "Legacy-Secret-43", legacy=True)
    data = path.read_bytes()
    assert secret.encode() not in data and base64.b64encode(secret.encode()) not in data
    assert base64.b64encode(b"Legacy-Secret-43") in data


def test_file_mode_is_0600(store: PasswordFile, path: Path) -> None:
    old = os.umask(0)
    try:
        store.set_password("alice", PASSWORD)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    store.delete("alice")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_missing_file_is_empty(tmp_path: Path) -> None:
    store = make_store(tmp_path / "absent")
    assert store.users() == [] and store.lookup("alice") is None


def test_reload_after_external_change(store: PasswordFile, path: Path) -> None:
    store.set_password("alice", PASSWORD)
    assert store.lookup("alice") is not None
    # Another process (another PasswordFile) adds bob and removes alice.
    other = make_store(path)
    other.set_password("bob", PASSWORD)
    other.delete("alice")
    assert store.lookup("alice") is None
    assert store.verify_password("bob", PASSWORD)
    # An editor rewriting the file in place.
    line = path.read_text()
    path.write_text("# edited by hand\n" + line.replace("bob:", "carol:"))
    assert store.users() == ["carol"]
    path.unlink()
    assert store.users() == []


def test_malformed_lines_are_skipped_with_a_warning(
    store: PasswordFile, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store.set_password("alice", PASSWORD)
    good = path.read_text().strip()
    scrypt_field = good.split(":")[1]
    scram_field = good.split(":")[2]
    bad_lines = [
        "garbage",
        "bob:only:three",
        "bob:scrypt$ln=15,r=8,p=1$!!!$AAAA:" + scram_field + "::",
        "bob:scrypt$ln=40,r=8,p=1$AAAA$" + "A" * 44 + ":" + scram_field + "::",
        "bob:" + scrypt_field + ":SCRAM-SHA-256$i=10$AAAA$AAAA$AAAA::",
        "bob:" + scrypt_field + ":" + scram_field + ":weird$x:",
        "bob:" + scrypt_field + ":" + scram_field + "::bad\x01name",
        "\x07bell:" + scrypt_field + ":" + scram_field + "::",
        good,  # a duplicate of alice: the first one wins
    ]
    with path.open("ab") as f:
        f.write(("\n".join(bad_lines) + "\n").encode())
        f.write(b"\xff\xfe not utf-8\n\n   \n")
    caplog.set_level(logging.WARNING, logger="mailagents.userdb")
    assert store.users() == ["alice"]
    assert store.verify_password("alice", PASSWORD)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(bad_lines) + 1
    assert all(str(path) in r.getMessage() for r in warnings)
    # Writers keep the lines they do not understand.
    store.set_password("dave", PASSWORD)
    text = path.read_bytes()
    assert b"garbage\n" in text and b"\xff\xfe not utf-8\n" in text


def test_invalid_names_and_passwords_are_refused(store: PasswordFile) -> None:
    for name in ("", "a:b", "tab\tname", "x" * 256, "#comment", "\u00e9" * 128):
        with pytest.raises(ValueError):
            store.set_password(name, PASSWORD)
    for password in ("", "\u00ad", "bell\x07"):
        with pytest.raises(ValueError):
            store.set_password("alice", password)
    for act_as in ("", "a,b", "a:b"):
        with pytest.raises(ValueError):
            store.set_password("alice", PASSWORD, may_act_as=[act_as])
    assert store.users() == []
    store.set_password("x" * 255, PASSWORD)  # exactly 255 octets is fine


def test_failed_write_leaves_the_old_file(
    store: PasswordFile, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.set_password("alice", PASSWORD)
    before = path.read_bytes()

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk on fire"):
        store.set_password("bob", PASSWORD)
    with pytest.raises(OSError, match="disk on fire"):
        store.delete("alice")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["users", "users.lock"]

    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        real_fsync(fd)
        raise OSError("fsync failed")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        store.set_password("bob", PASSWORD)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["users", "users.lock"]
    assert store.users() == ["alice"]


def test_concurrent_writers_lose_nothing(path: Path) -> None:
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            make_store(path).set_password(f"user{i}", PASSWORD)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(make_store(path).users()) == sorted(f"user{i}" for i in range(8))


# --------------------------------------------------------------------------- async


def slow_scrypt(
    monkeypatch: pytest.MonkeyPatch, delay: float = 0.05
) -> tuple[list[int], Callable[[], int]]:
    """Replace hashlib.scrypt by a slow fake that tracks how many run at once."""
    lock = threading.Lock()
    running = [0]
    peak = [0]
    threads: list[int] = []

    def fake(password: bytes, **kwargs: Any) -> bytes:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            threads.append(threading.get_ident())
        time.sleep(delay)
        with lock:
            running[0] -= 1
        return hashlib.sha256(password + kwargs["salt"]).digest()[: kwargs.get("dklen", 64)]

    monkeypatch.setattr(hashlib, "scrypt", fake)
    return threads, lambda: peak[0]


@pytest.mark.parametrize("cap", [1, 4])
def test_answer_async_caps_concurrency(
    path: Path, monkeypatch: pytest.MonkeyPatch, cap: int
) -> None:
    store = make_store(path, max_concurrent=cap)
    slow_scrypt(monkeypatch, delay=0)  # the entry must be made with the same fake
    store.set_password("alice", PASSWORD)
    threads, peak = slow_scrypt(monkeypatch)

    async def main() -> list[sasl.CredentialsAnswer]:
        loop_thread = threading.get_ident()
        requests = [plain_request("alice" if i % 2 else "nobody", PASSWORD) for i in range(12)]
        answers = await asyncio.gather(*(store.answer_async(r) for r in requests))
        assert loop_thread not in threads  # scrypt never ran on the event loop
        return answers

    try:
        answers = asyncio.run(main())
    finally:
        store.close()
    assert len(threads) == 12
    assert peak() == cap
    assert answers.count(sasl.NoSuchUser()) == 6
    assert answers.count(sasl.PasswordVerdict(valid=True)) == 6


def test_answer_async_scram_and_reuse_across_loops(store: PasswordFile) -> None:
    store.set_password("alice", PASSWORD)
    for _ in range(2):  # a store outlives one event loop
        answer = asyncio.run(store.answer_async(scram_request("alice")))
        assert answer == store.lookup("alice").scram  # type: ignore[union-attr]


def test_public_names_are_documented() -> None:
    for name in userdb.__all__:
        obj = getattr(userdb, name)
        if callable(obj):
            assert obj.__doc__ and obj.__doc__.strip(), name
    for method in ("lookup", "answer", "answer_async", "verify_password", "close"):
        assert getattr(UserStore, method).__doc__, method
    for method in ("set_password", "delete", "make_entry", "users", "lookup"):
        assert getattr(PasswordFile, method).__doc__, method
