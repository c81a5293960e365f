"""User stores: who may log in, and the secrets that prove it (layer 2: it touches disk).

A SASL server mechanism asks for credentials with :class:`~mailagents.sasl.NeedCredentials`;
a :class:`UserStore` answers it (:meth:`UserStore.answer`, blocking, or
:meth:`UserStore.answer_async`, which runs the work in a small thread pool of its own
so that scrypt never runs on the event loop and only a few run at once).

:class:`PasswordFile` is the one real implementation: a text file of users, written and
checked by ``python -m mailagents passwd FILE USER``. It never holds a plain password,
except the explicit *legacy secret* (see below).

**The file format.** UTF-8 text, one user per line; empty lines and lines starting
with ``#`` are ignored. Each user line has five fields separated by ``:``::

    name:<scrypt>:<scram>:<legacy>:<act-as>

    for example (one line, shortened here):
    alice:scrypt$ln=15,r=8,p=1$Zm9v...$YmFy...:SCRAM-SHA-256$i=4096$c2Fs...$c3Rv...$c2Vy...::

* ``name``: the user name, prepared with SASLprep (RFC 4013) as a stored string; not
  empty, at most 255 octets of UTF-8, no ``:``, no control character, not starting with
  ``#``.
* ``scrypt$ln=L,r=R,p=P$<salt>$<hash>``: the scrypt hash (RFC 7914) of the SASLprep-ed
  password, with N = 2**L; salt and hash in standard base64 with padding.
* ``SCRAM-SHA-256$i=I$<salt>$<stored key>$<server key>``: the SCRAM-SHA-256 secrets of
  RFC 5802 §3 (never the password), base64.
* ``legacy``: empty, or ``plain$<base64 of the UTF-8 password>``: the password itself,
  only for users made with the legacy option, because CRAM-MD5 (RFC 2195) and POP3's
  APOP (RFC 1939) need it. Base64 is an encoding, not a protection: such a line is
  **plaintext-equivalent**.
* ``act-as``: the identities the user may act as (a SASL authzid), separated by ``,``;
  often empty.

A line that does not follow the format is skipped with a warning naming the file and
line number (never the line, which may hold secrets); the rest of the file still works.
Writers keep every other line as it was, comments and malformed lines included.
Passwords are prepared with SASLprep before hashing, for scrypt as for SCRAM (RFC 5802
§2.2), so PLAIN and SCRAM agree on which passwords are the same.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Self, cast

from mailagents import sasl
from mailagents.store._fileio import fsync_dir
from mailagents.store._locking import FileLock

__all__ = [
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_SCRAM_ITERATIONS",
    "DEFAULT_SCRYPT_N",
    "DEFAULT_SCRYPT_P",
    "DEFAULT_SCRYPT_R",
    "PasswordFile",
    "ScryptHash",
    "UserEntry",
    "UserStore",
    "prepare_password",
    "prepare_user_name",
]

logger = logging.getLogger(__name__)

DEFAULT_SCRYPT_N = 2**15
"""scrypt's CPU/memory cost N for new hashes (32 MiB and about 0.1 s per hash)."""
DEFAULT_SCRYPT_R = 8
"""scrypt's block size r for new hashes."""
DEFAULT_SCRYPT_P = 1
"""scrypt's parallelism p for new hashes."""
DEFAULT_SCRAM_ITERATIONS = sasl.MIN_ITERATIONS
"""PBKDF2 iterations of new SCRAM-SHA-256 secrets: 4096, the count
:class:`~mailagents.sasl.ScramSha256Server` shows for unknown users, so both look alike."""
DEFAULT_MAX_CONCURRENT = 4
"""How many credential checks :meth:`UserStore.answer_async` runs at once by default."""

_SALT_LENGTH = 16
_HASH_LENGTH = 32
_MAX_NAME_OCTETS = 255
# Bounds on parameters read from a file: a hostile or corrupt line must not make one
# login allocate gigabytes or spin for minutes.
_MAX_LOG_N = 22
_MAX_R = 32
_MAX_P = 16
_MAX_SCRAM_ITERATIONS = 10_000_000
_LEGACY_MECHANISMS = frozenset({"CRAM-MD5", "APOP"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_SCRYPT_PARAMS = re.compile(r"ln=([0-9]{1,2}),r=([0-9]{1,3}),p=([0-9]{1,3})")
_SCRAM_ITERATIONS = re.compile(r"i=([1-9][0-9]{0,9})")


class _Malformed(ValueError):
    """A line of a password file that does not follow the format."""


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str) -> bytes:
    if not _B64.fullmatch(text):
        raise _Malformed("invalid base64")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise _Malformed("invalid base64") from exc


def _check_name_syntax(name: str, what: str) -> None:
    if not name:
        raise ValueError(f"{what} is empty")
    if len(name.encode("utf-8")) > _MAX_NAME_OCTETS:
        raise ValueError(f"{what} is longer than {_MAX_NAME_OCTETS} octets")
    if ":" in name:
        raise ValueError(f"{what} contains ':'")
    if _CONTROL.search(name):
        raise ValueError(f"{what} contains a control character")


def prepare_user_name(name: str, *, query: bool = False) -> str:
    """Prepare a user name with SASLprep and check it can be stored.

    ``query`` prepares it as a query (unassigned code points allowed, RFC 3454 §7), the
    way a lookup does; otherwise as a stored string. Raises :class:`ValueError` if the
    name cannot be prepared, is empty, is longer than 255 octets of UTF-8, contains
    ``:`` or a control character, or starts with ``#``.
    """
    prepared = sasl.saslprep(name, allow_unassigned=query)
    _check_name_syntax(prepared, "user name")
    if prepared.startswith("#"):
        raise ValueError("user name starts with '#'")
    return prepared


def prepare_password(password: str, *, query: bool = True) -> bytes:
    """The password as scrypt hashes it: SASLprep-ed (RFC 5802 §2.2), in UTF-8.

    ``query`` (the default, as SCRAM does) allows unassigned code points; pass
    ``query=False`` when storing a new password. Raises :class:`ValueError` if the
    password cannot be prepared or is empty once prepared.
    """
    prepared = sasl.saslprep(password, allow_unassigned=query)
    if not prepared:
        raise ValueError("password is empty")
    return prepared.encode("utf-8")


def _maxmem(n: int, r: int, p: int) -> int:
    # OpenSSL needs 128*r*(N + 2) octets for V and 128*r*p for B; add room to spare.
    return 128 * r * (n + 2 + p) + 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ScryptHash:
    """An scrypt hash (RFC 7914) of a SASLprep-ed password, with its parameters and salt."""

    n: int
    r: int
    p: int
    salt: bytes
    hash: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1):
            raise ValueError("scrypt n must be a power of two, at least 2")
        if self.r < 1 or self.p < 1:
            raise ValueError("scrypt r and p must be positive")
        if not self.salt or not self.hash:
            raise ValueError("scrypt salt and hash must not be empty")

    @classmethod
    def create(
        cls,
        password: bytes,
        *,
        n: int = DEFAULT_SCRYPT_N,
        r: int = DEFAULT_SCRYPT_R,
        p: int = DEFAULT_SCRYPT_P,
        salt: bytes | None = None,
    ) -> ScryptHash:
        """Hash ``password`` (already prepared, see :func:`prepare_password`)."""
        if salt is None:
            salt = secrets.token_bytes(_SALT_LENGTH)
        digest = _scrypt(password, salt, n, r, p, _HASH_LENGTH)
        return cls(n=n, r=r, p=p, salt=salt, hash=digest)

    def verify(self, password: bytes) -> bool:
        """Whether ``password`` (prepared) matches, compared in constant time."""
        digest = _scrypt(password, self.salt, self.n, self.r, self.p, len(self.hash))
        return hmac.compare_digest(digest, self.hash)

    def encode(self) -> str:
        """The field of the password file: ``scrypt$ln=15,r=8,p=1$<salt>$<hash>``."""
        ln = self.n.bit_length() - 1
        return (
            f"scrypt$ln={ln},r={self.r},p={self.p}${_b64encode(self.salt)}${_b64encode(self.hash)}"
        )

    @classmethod
    def decode(cls, text: str) -> ScryptHash:
        """Parse the field :meth:`encode` writes; :class:`ValueError` if it is malformed
        or its parameters are out of bounds."""
        parts = text.split("$")
        if len(parts) != 4 or parts[0] != "scrypt":
            raise _Malformed("scrypt field is not scrypt$params$salt$hash")
        match = _SCRYPT_PARAMS.fullmatch(parts[1])
        if not match:
            raise _Malformed("bad scrypt parameters")
        ln, r, p = (int(g) for g in match.groups())
        if not (1 <= ln <= _MAX_LOG_N and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
            raise _Malformed("scrypt parameters out of bounds")
        salt, digest = _b64decode(parts[2]), _b64decode(parts[3])
        if not salt or not 16 <= len(digest) <= 64:
            raise _Malformed("bad scrypt salt or hash length")
        return cls(n=1 << ln, r=r, p=p, salt=salt, hash=digest)


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # Looked up on the module at each call, so tests can count or slow down the calls.
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=_maxmem(n, r, p), dklen=dklen)


def _encode_scram(scram: sasl.ScramSecrets) -> str:
    return (
        f"SCRAM-SHA-256$i={scram.iterations}${_b64encode(scram.salt)}"
        f"${_b64encode(scram.stored_key)}${_b64encode(scram.server_key)}"
    )


def _decode_scram(text: str, may_act_as: frozenset[str]) -> sasl.ScramSecrets:
    parts = text.split("$")
    if len(parts) != 5 or parts[0] != "SCRAM-SHA-256":
        raise _Malformed("SCRAM field is not SCRAM-SHA-256$i=N$salt$stored$server")
    match = _SCRAM_ITERATIONS.fullmatch(parts[1])
    if not match:
        raise _Malformed("bad SCRAM iteration count")
    iterations = int(match.group(1))
    if not sasl.MIN_ITERATIONS <= iterations <= _MAX_SCRAM_ITERATIONS:
        raise _Malformed("SCRAM iteration count out of bounds")
    salt, stored, server = (_b64decode(part) for part in parts[2:])
    size = hashlib.sha256().digest_size
    if not salt or len(stored) != size or len(server) != size:
        raise _Malformed("bad SCRAM salt or key length")
    return sasl.ScramSecrets(
        salt=salt,
        iterations=iterations,
        stored_key=stored,
        server_key=server,
        may_act_as=may_act_as,
    )


def _encode_act_as(names: frozenset[str]) -> str:
    return ",".join(sorted(names))


def _check_act_as(name: str) -> str:
    _check_name_syntax(name, "act-as identity")
    if "," in name:
        raise ValueError("act-as identity contains ','")
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class UserEntry:
    """One user of a store: the secrets that check a login, never the password.

    ``scram.may_act_as`` equals ``may_act_as``, so ``scram`` can be handed to a SCRAM
    mechanism as it is. ``legacy_secret`` is the password itself (plaintext-equivalent),
    present only for users made with the legacy option, for CRAM-MD5 and APOP.
    """

    name: str
    scrypt: ScryptHash
    scram: sasl.ScramSecrets = field(repr=False)
    legacy_secret: str | None = field(default=None, repr=False)
    may_act_as: frozenset[str] = frozenset()

    def encode(self) -> str:
        """The entry as one line of a password file (without the newline)."""
        legacy = ""
        if self.legacy_secret is not None:
            legacy = "plain$" + _b64encode(self.legacy_secret.encode("utf-8"))
        return ":".join(
            (
                self.name,
                self.scrypt.encode(),
                _encode_scram(self.scram),
                legacy,
                _encode_act_as(self.may_act_as),
            )
        )

    @classmethod
    def decode(cls, line: str) -> UserEntry:
        """Parse one line of a password file; :class:`ValueError` if it is malformed."""
        fields = line.split(":")
        if len(fields) != 5:
            raise _Malformed(f"{len(fields)} fields instead of 5")
        name, scrypt_field, scram_field, legacy_field, act_as_field = fields
        if prepare_user_name(name) != name:
            raise _Malformed("user name is not SASLprep-ed")
        may_act_as = frozenset(_check_act_as(n) for n in act_as_field.split(",") if act_as_field)
        legacy: str | None = None
        if legacy_field:
            kind, sep, value = legacy_field.partition("$")
            if kind != "plain" or not sep:
                raise _Malformed("legacy field is not plain$<base64>")
            try:
                legacy = _b64decode(value).decode("utf-8")
            except UnicodeDecodeError:
                raise _Malformed("legacy secret is not UTF-8") from None
            if not legacy:
                raise _Malformed("empty legacy secret")
        return cls(
            name=name,
            scrypt=ScryptHash.decode(scrypt_field),
            scram=_decode_scram(scram_field, may_act_as),
            legacy_secret=legacy,
            may_act_as=may_act_as,
        )


def _legacy_answer(secret: str) -> Any:
    """``mailagents.sasl.LegacySecret(secret)`` if that answer type exists, else None."""
    cls = getattr(sasl, "LegacySecret", None)
    if cls is None:
        return None
    value: str | bytes = secret
    if dataclasses.is_dataclass(cls):
        declared = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        kind = declared.get("secret", "")
        if "bytes" in kind and "str" not in kind:
            value = secret.encode("utf-8")
    try:
        return cls(secret=value)
    except TypeError:
        return cls(value)


class UserStore(abc.ABC):
    """Where a server looks users up to answer SASL's :class:`~mailagents.sasl.NeedCredentials`.

    Subclasses implement :meth:`lookup`; :meth:`answer` and :meth:`answer_async` are
    built on it. ``scrypt_n``, ``scrypt_r`` and ``scrypt_p`` are the parameters of the
    dummy hash computed for unknown users (make them those of the real entries, so that
    both cost the same); ``max_concurrent`` caps how many checks
    :meth:`answer_async` runs at once. Call :meth:`close` (or use ``with``) to stop the
    thread pool.
    """

    def __init__(
        self,
        *,
        scrypt_n: int = DEFAULT_SCRYPT_N,
        scrypt_r: int = DEFAULT_SCRYPT_R,
        scrypt_p: int = DEFAULT_SCRYPT_P,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be positive")
        self.scrypt_n = scrypt_n
        self.scrypt_r = scrypt_r
        self.scrypt_p = scrypt_p
        self.max_concurrent = max_concurrent
        # A fixed dummy hash: the same work as a real check, matching nothing.
        self._dummy = ScryptHash(
            n=scrypt_n,
            r=scrypt_r,
            p=scrypt_p,
            salt=secrets.token_bytes(_SALT_LENGTH),
            hash=secrets.token_bytes(_HASH_LENGTH),
        )
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    @abc.abstractmethod
    def lookup(self, user: str) -> UserEntry | None:
        """The entry of ``user`` (as a SASL authcid), or ``None`` if there is none. Blocks."""

    def answer(self, request: sasl.NeedCredentials) -> sasl.CredentialsAnswer:
        """Answer a mechanism's request for credentials. Blocks (scrypt, disk).

        * A password is set (PLAIN, LOGIN): verify it against the scrypt hash in
          constant time, giving a :class:`~mailagents.sasl.PasswordVerdict` with the
          user's ``may_act_as``. An unknown user still costs one scrypt, on a dummy
          hash, so timing does not tell which users exist; the answer is
          :class:`~mailagents.sasl.NoSuchUser`.
        * CRAM-MD5 (and APOP): ``LegacySecret`` for a user with a legacy secret when
          :mod:`mailagents.sasl` defines that answer, otherwise ``NoSuchUser``.
        * Otherwise (SCRAM): the stored :class:`~mailagents.sasl.ScramSecrets`.
        """
        entry = self.lookup(request.authcid)
        if request.password is not None:
            try:
                password = prepare_password(request.password)
            except ValueError:
                password = None
            if entry is None or password is None:
                self._dummy.verify(password or b"\x00")
                if entry is None:
                    return sasl.NoSuchUser()
                return sasl.PasswordVerdict(valid=False, may_act_as=entry.may_act_as)
            valid = entry.scrypt.verify(password)
            return sasl.PasswordVerdict(valid=valid, may_act_as=entry.may_act_as)
        if entry is None:
            return sasl.NoSuchUser()
        if request.mechanism.upper() in _LEGACY_MECHANISMS:
            if entry.legacy_secret is None:
                return sasl.NoSuchUser()
            legacy = _legacy_answer(entry.legacy_secret)
            if legacy is None:
                return sasl.NoSuchUser()
            return cast(sasl.CredentialsAnswer, legacy)
        return entry.scram

    def verify_password(self, user: str, password: str) -> bool:
        """Whether ``password`` is ``user``'s password (as PLAIN would check it). Blocks."""
        request = sasl.NeedCredentials(
            mechanism="PLAIN", authcid=user, authzid=None, password=password
        )
        verdict = self.answer(request)
        return isinstance(verdict, sasl.PasswordVerdict) and verdict.valid

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.max_concurrent, thread_name_prefix="mailagents-userdb"
                )
            return self._executor

    async def answer_async(self, request: sasl.NeedCredentials) -> sasl.CredentialsAnswer:
        """:meth:`answer`, run in the store's own pool of ``max_concurrent`` threads.

        scrypt never runs on the event loop, and no more than ``max_concurrent``
        checks run at once (the others wait their turn), whatever the number of
        sessions authenticating together.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), self.answer, request)

    def close(self) -> None:
        """Stop the thread pool of :meth:`answer_async` (it restarts if used again)."""
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class _Snapshot:
    signature: tuple[int, ...] | None
    entries: dict[str, UserEntry]


class PasswordFile(UserStore):
    """A :class:`UserStore` in a text file (the format is in this module's docs).

    The file is re-read whenever it changes (checked with ``stat`` at each lookup); a
    missing file is an empty store. :meth:`set_password` and :meth:`delete` rewrite it
    atomically (a temporary file in the same directory, fsync, rename, fsync of the
    directory), with mode 0600, under a lock on ``<path>.lock`` shared with other
    processes. ``scrypt_n``, ``scrypt_r``, ``scrypt_p`` and ``scram_iterations`` are the
    parameters of new entries (keep the strong defaults outside tests);
    ``lock_timeout`` bounds the wait for the lock, in seconds (then :class:`TimeoutError`,
    an :class:`OSError`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        scrypt_n: int = DEFAULT_SCRYPT_N,
        scrypt_r: int = DEFAULT_SCRYPT_R,
        scrypt_p: int = DEFAULT_SCRYPT_P,
        scram_iterations: int = DEFAULT_SCRAM_ITERATIONS,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        lock_timeout: float | None = 30.0,
    ) -> None:
        super().__init__(
            scrypt_n=scrypt_n, scrypt_r=scrypt_r, scrypt_p=scrypt_p, max_concurrent=max_concurrent
        )
        if scram_iterations < sasl.MIN_ITERATIONS:
            raise ValueError(f"scram_iterations must be at least {sasl.MIN_ITERATIONS}")
        self.path = os.path.abspath(os.fspath(path))
        self.scram_iterations = scram_iterations
        self.lock_timeout = lock_timeout
        self._snapshot = _Snapshot(signature=None, entries={})
        self._load_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PasswordFile({self.path!r})"

    # ----------------------------------------------------------------------- reading

    def _signature(self, st: os.stat_result) -> tuple[int, ...]:
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _current(self) -> dict[str, UserEntry]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._snapshot.signature is not None:
                self._snapshot = _Snapshot(signature=None, entries={})
            return self._snapshot.entries
        snapshot = self._snapshot
        if snapshot.signature == self._signature(st):
            return snapshot.entries
        with self._load_lock:
            if self._snapshot is snapshot:
                self._snapshot = self._load()
            return self._snapshot.entries

    def _load(self) -> _Snapshot:
        try:
            with open(self.path, "rb") as f:
                signature = self._signature(os.fstat(f.fileno()))
                data = f.read()
        except FileNotFoundError:
            return _Snapshot(signature=None, entries={})
        entries: dict[str, UserEntry] = {}
        for lineno, raw in enumerate(data.split(b"\n"), 1):
            try:
                line = raw.decode("utf-8").removesuffix("\r")
            except UnicodeDecodeError:
                logger.warning("%s:%d: ignored: not UTF-8", self.path, lineno)
                continue
            if not line.strip() or line.startswith("#"):
                continue
            try:
                entry = UserEntry.decode(line)
            except ValueError as exc:
                logger.warning("%s:%d: ignored malformed line: %s", self.path, lineno, exc)
                continue
            if entry.name in entries:
                logger.warning(
                    "%s:%d: ignored: user %r already defined above", self.path, lineno, entry.name
                )
                continue
            entries[entry.name] = entry
        return _Snapshot(signature=signature, entries=entries)

    def lookup(self, user: str) -> UserEntry | None:
        """The entry of ``user`` (prepared with SASLprep as a query), or ``None``."""
        try:
            name = prepare_user_name(user, query=True)
        except ValueError:
            return None
        return self._current().get(name)

    def users(self) -> list[str]:
        """The names of every (well-formed) user in the file, in file order."""
        return list(self._current())

    # ----------------------------------------------------------------------- writing

    def make_entry(
        self,
        user: str,
        password: str,
        *,
        legacy: bool = False,
        may_act_as: Iterable[str] = (),
    ) -> UserEntry:
        """Build (without storing) the entry for ``user`` with ``password``.

        Computes the scrypt hash and SCRAM secrets with this store's parameters.
        Raises :class:`ValueError` for a name, password or act-as identity that cannot
        be stored.
        """
        name = prepare_user_name(user)
        prepared = prepare_password(password, query=False)
        act_as = frozenset(_check_act_as(n) for n in may_act_as)
        scram = sasl.scram_secrets(password, iterations=self.scram_iterations)
        return UserEntry(
            name=name,
            scrypt=ScryptHash.create(prepared, n=self.scrypt_n, r=self.scrypt_r, p=self.scrypt_p),
            scram=dataclasses.replace(scram, may_act_as=act_as),
            legacy_secret=password if legacy else None,
            may_act_as=act_as,
        )

    def set_password(
        self,
        user: str,
        password: str,
        *,
        legacy: bool = False,
        may_act_as: Iterable[str] | None = None,
    ) -> UserEntry:
        """Add ``user`` or change their password; returns the new entry.

        ``legacy`` also stores the password itself (plaintext-equivalent) for CRAM-MD5
        and APOP; without it any legacy secret is dropped. ``may_act_as`` replaces the
        identities the user may act as; ``None`` (the default) keeps those of an
        existing user (none for a new one). Raises :class:`ValueError` for a name,
        password or identity that cannot be stored, :class:`OSError` if the file
        cannot be written (it is then left as it was) or :class:`TimeoutError` if the
        lock cannot be taken in time.
        """
        # Hash before taking the lock: scrypt is the slow part.
        entry = self.make_entry(user, password, legacy=legacy, may_act_as=may_act_as or ())
        with self._lock():
            lines = self._read_lines()
            index = self._find(lines, entry.name)
            if may_act_as is None and index is not None:
                current = self._parse_or_none(lines[index])
                if current is not None and current.may_act_as:
                    act_as = current.may_act_as
                    entry = dataclasses.replace(
                        entry,
                        may_act_as=act_as,
                        scram=dataclasses.replace(entry.scram, may_act_as=act_as),
                    )
            if index is None:
                lines.append(entry.encode())
            else:
                lines[index] = entry.encode()
            self._write_lines(lines)
        return entry

    def delete(self, user: str) -> bool:
        """Remove ``user``; returns whether they were there."""
        try:
            name = prepare_user_name(user, query=True)
        except ValueError:
            return False
        with self._lock():
            lines = self._read_lines()
            index = self._find(lines, name)
            if index is None:
                return False
            del lines[index]
            self._write_lines(lines)
        return True

    def _lock(self) -> FileLock:
        # The store's lock: in-process per path, then flock; LockTimeout is a
        # TimeoutError.
        return FileLock(self.path + ".lock", timeout=self.lock_timeout)

    def _read_lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        # Undecodable bytes survive a rewrite unchanged.
        text = data.decode("utf-8", "surrogateescape")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return lines

    @staticmethod
    def _line_name(line: str) -> str | None:
        if not line.strip() or line.startswith("#"):
            return None
        name, sep, _ = line.partition(":")
        return name if sep else None

    def _find(self, lines: list[str], name: str) -> int | None:
        for i, line in enumerate(lines):
            if self._line_name(line) == name:
                return i
        return None

    @staticmethod
    def _parse_or_none(line: str) -> UserEntry | None:
        try:
            return UserEntry.decode(line)
        except ValueError:
            return None

    def _write_lines(self, lines: list[str]) -> None:
        directory = os.path.dirname(self.path)
        data = "".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape")
        fd, tmp = tempfile.mkstemp(
            dir=directory, prefix="." + os.path.basename(self.path) + ".", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        fsync_dir(directory)
