"""What the MRA remembers of each remote account: one JSON file per account, replaced
atomically (written beside, fsynced, renamed over, directory fsynced), so that a crash
leaves the old memory or the new one, never half of one.

POP3 accounts remember unique-ids (UIDL, RFC 1939 §7). IMAP accounts remember, per
folder, the UIDVALIDITY and the UIDs fetched under it (kept as ranges), and a short
digest of each fetched message still on the server (its Message-ID and size): when the
server changes UIDVALIDITY (RFC 9051 §2.3.1.1), the old UIDs mean nothing, and the
digests recognise the messages already fetched, so that only those without a usable
digest come twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mailagents.imap import SequenceSet
from mailagents.store._fileio import write_atomic

__all__ = ["AccountMemory", "FolderMemory", "StateError", "digest", "state_path"]

_VERSION = 1
_SAFE = re.compile(r"[^A-Za-z0-9._@+-]")


class StateError(Exception):
    """The state file exists but cannot be read as MRA state."""


def state_path(directory: str | os.PathLike[str], account: str) -> str:
    """The state file of ``account`` in ``directory`` (its name made safe as a file
    name, with a hash of the original so that two names never share a file)."""
    safe = _SAFE.sub("_", account)[:80] or "account"
    tag = hashlib.sha256(account.encode("utf-8")).hexdigest()[:8]
    return os.path.join(os.fspath(directory), f"{safe}-{tag}.json")


def digest(message_id: str | None, size: int | None) -> str | None:
    """The digest that recognises a message after a UIDVALIDITY change: its Message-ID
    and its size; ``None`` without a Message-ID (such a message may come twice)."""
    if not message_id or size is None:
        return None
    key = f"{message_id.strip()}\0{size}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(key).hexdigest()[:24]


@dataclass(slots=True)
class FolderMemory:
    """One IMAP folder: the UIDVALIDITY, the UIDs fetched under it and the digests of
    fetched messages by UID."""

    uidvalidity: int = 0
    uids: set[int] = field(default_factory=set)
    digests: dict[int, str] = field(default_factory=dict)

    def reset(self, uidvalidity: int) -> dict[str, int]:
        """A new UIDVALIDITY: forget the UIDs; return the old digests (digest to old
        UID) to recognise the messages by."""
        old = {d: u for u, d in self.digests.items()}
        self.uidvalidity = uidvalidity
        self.uids = set()
        self.digests = {}
        return old

    def keep_only(self, present: Iterable[int]) -> None:
        """Forget the UIDs no longer on the server (the file stays as small as the
        mailbox)."""
        live = set(present)
        self.uids &= live
        self.digests = {u: d for u, d in self.digests.items() if u in live}

    def to_json(self) -> dict[str, Any]:
        return {
            "uidvalidity": self.uidvalidity,
            "uids": str(SequenceSet.from_numbers(sorted(self.uids))) if self.uids else "",
            "digests": {str(u): d for u, d in sorted(self.digests.items())},
        }

    @classmethod
    def from_json(cls, data: Any) -> FolderMemory:
        if not isinstance(data, dict):
            raise StateError("a folder's state is not an object")
        uidvalidity = data.get("uidvalidity", 0)
        text = data.get("uids", "")
        digests = data.get("digests", {})
        if not isinstance(uidvalidity, int) or not isinstance(text, str):
            raise StateError("bad uidvalidity or uids")
        if not isinstance(digests, dict):
            raise StateError("bad digests")
        try:
            uids: set[int] = set()
            if text:
                ranges = SequenceSet.parse(text).ranges
                if any(a is None or b is None for a, b in ranges):
                    raise ValueError("'*' in a stored UID set")
                for a, b in ranges:
                    assert a is not None and b is not None
                    uids.update(range(min(a, b), max(a, b) + 1))
            found = {int(u): str(d) for u, d in digests.items()}
        except (ValueError, TypeError) as exc:
            raise StateError(f"bad UIDs: {exc}") from exc
        return cls(uidvalidity=uidvalidity, uids=uids, digests=found)


@dataclass(slots=True)
class AccountMemory:
    """Everything remembered of one account, loaded from and saved to ``path``."""

    path: str
    uidls: set[str] = field(default_factory=set)
    folders: dict[str, FolderMemory] = field(default_factory=dict)
    fsync: bool = True

    @classmethod
    def load(cls, path: str, *, fsync: bool = True) -> AccountMemory:
        """The memory in ``path``; empty when the file does not exist. A file that is
        there but unreadable raises :class:`StateError` (fetching without the memory
        would download everything again)."""
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return cls(path=path, fsync=fsync)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise StateError(f"{path}: not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            raise StateError(f"{path}: not an MRA state file of version {_VERSION}")
        uidls = data.get("uidls", [])
        folders = data.get("folders", {})
        if not isinstance(uidls, list) or not all(isinstance(u, str) for u in uidls):
            raise StateError(f"{path}: bad uidls")
        if not isinstance(folders, dict):
            raise StateError(f"{path}: bad folders")
        try:
            loaded = {str(n): FolderMemory.from_json(v) for n, v in folders.items()}
        except StateError as exc:
            raise StateError(f"{path}: {exc}") from exc
        return cls(path=path, uidls=set(uidls), folders=loaded, fsync=fsync)

    def folder(self, name: str) -> FolderMemory:
        """The memory of IMAP folder ``name`` (made empty when new)."""
        found = self.folders.get(name)
        if found is None:
            found = self.folders[name] = FolderMemory()
        return found

    def save(self) -> None:
        """Replace the file atomically (and durably unless ``fsync`` is off)."""
        data = {
            "version": _VERSION,
            "uidls": sorted(self.uidls),
            "folders": {n: f.to_json() for n, f in sorted(self.folders.items())},
        }
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        encoded = json.dumps(data, separators=(",", ":")).encode()
        write_atomic(self.path, encoded, fsync=self.fsync)
