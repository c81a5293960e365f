"""The mbox folder tree, for :class:`~mailagents.store.mbox.MboxStore`: which folder
names are valid, where a folder's file, children and index live, which files under the
root are folders, and the side files in the root that hold the folder lists of
:mod:`mailagents.store._folder_lists` (see the layout in :mod:`mailagents.store.mbox`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from mailagents.store._fileio import fsync_dir, write_atomic
from mailagents.store._folder_lists import FolderLists
from mailagents.store._locking import FileLock
from mailagents.store._model import SPECIAL_USE, InvalidFolderNameError

CHILDREN = ".sbd"
"""The suffix of the directory that holds a folder's children (Thunderbird's)."""

INDEX_SUFFIX = ".mailagents-index"
"""The suffix of a folder's side index, ``.NAME.mailagents-index``."""

SUBSCRIPTIONS = ".mailagents-subscriptions"
"""Subscribed names, one a line."""

SPECIAL_USE_FILE = ".mailagents-special-use"
"""``<attribute> <folder>`` lines (:rfc:`6154`)."""

META_LOCK = ".mailagents-meta.lock"
"""The lock of the root's side files (the lists and the last UIDVALIDITY)."""

_MAX_LEVEL = 200
"""Octets of one level of a folder name at most (a file name, with room for the
suffixes)."""


def folder_levels(name: str, separator: str) -> list[str]:
    """The levels of folder ``name`` (INBOX spelled canonically), or
    :class:`~mailagents.store.InvalidFolderNameError`: no control characters, no empty
    level, none that starts with ``.`` (our side files) or ends in ``.sbd`` or
    ``.lock``."""
    if not isinstance(name, str) or not name:
        raise InvalidFolderNameError(f"invalid folder name {name!r}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidFolderNameError(f"control character in folder name {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidFolderNameError(f"folder name not encodable: {name!r}") from None
    levels = name.split(separator)
    for level in levels:
        if (
            not level
            or level.startswith(".")
            or level.endswith((CHILDREN, ".lock"))
            or len(level.encode("utf-8")) > _MAX_LEVEL
        ):
            raise InvalidFolderNameError(f"invalid folder name {name!r}")
    if levels[0].upper() == "INBOX":
        levels[0] = "INBOX"
    return levels


def folder_file(root: str, inbox: str, levels: list[str]) -> str:
    """The mbox file of a folder (``inbox`` is INBOX's)."""
    if levels == ["INBOX"]:
        return inbox
    return os.path.join(root, *[lv + CHILDREN for lv in levels[:-1]], levels[-1])


def children_dir(root: str, levels: list[str]) -> str:
    """The directory of a folder's children."""
    return os.path.join(root, *[lv + CHILDREN for lv in levels])


def index_file(root: str, inbox: str, levels: list[str]) -> str:
    """A folder's side index: beside its file, or in the root for INBOX (which may be a
    spool elsewhere)."""
    if levels == ["INBOX"]:
        return os.path.join(root, ".INBOX" + INDEX_SUFFIX)
    directory, base = os.path.split(folder_file(root, inbox, levels))
    return os.path.join(directory, "." + base + INDEX_SUFFIX)


def looks_like_mbox(path: str) -> bool:
    """Whether the file at ``path`` is empty or starts as an mbox does (one that cannot
    be read is given the benefit of the doubt)."""
    try:
        with open(path, "rb") as f:
            head = f.read(5)
    except OSError:
        return True
    return head in (b"", b"From ")


def find_folders(
    root: str, separator: str, levels_of: Callable[[str], list[str]]
) -> dict[str, tuple[bool, bool]]:
    """Every folder under ``root`` by name: (holds messages, has children). A name that
    ``levels_of`` refuses or spells differently (``inbox`` for INBOX) is left out."""
    found: dict[str, tuple[bool, bool]] = {}

    def walk(directory: str, prefix: list[str]) -> bool:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return False
        here: dict[str, list[bool]] = {}
        for entry in entries:
            n = entry.name
            if n.startswith("."):
                continue
            if n.endswith(CHILDREN) and entry.is_dir(follow_symlinks=False):
                base = n[: -len(CHILDREN)]
                if base and walk(entry.path, [*prefix, base]):
                    here.setdefault(base, [False, False])[1] = True
            elif not n.endswith(".lock") and entry.is_file() and looks_like_mbox(entry.path):
                here.setdefault(n, [False, False])[0] = True
        any_found = False
        for base, (is_file, children) in here.items():
            levels = [*prefix, base]
            name = separator.join(levels)
            try:
                if levels_of(name) != levels:
                    continue
            except InvalidFolderNameError:
                continue
            found[name] = (is_file or levels == ["INBOX"], children)
            any_found = True
        return any_found

    walk(root, [])
    return found


def make_file(path: str, *, fsync: bool) -> bool:
    """Create the empty mbox ``path`` (and its directory), dropping any index left by
    an earlier folder of that name; false if it exists."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    directory, base = os.path.split(path)
    for suffix in ("", ".new"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, "." + base + INDEX_SUFFIX + suffix))
    if fsync:
        fsync_dir(directory)
    return True


def read_lines(path: str) -> list[str]:
    """The non-empty lines of the text file ``path`` (none if it is missing)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except FileNotFoundError:
        return []


def write_lines(path: str, lines: list[str], *, fsync: bool) -> None:
    """Replace the text file ``path`` with ``lines`` atomically."""
    write_atomic(path, "".join(line + "\n" for line in lines).encode("utf-8"), fsync=fsync)


class MboxListFiles:
    """The folder lists' side files in an mbox store's root (a
    :class:`~mailagents.store._folder_lists.ListFiles`), both under the root's one
    lock."""

    def __init__(self, root: str, *, fsync: bool, lock_timeout: float) -> None:
        self.root = root
        self.fsync = fsync
        self.lock_timeout = lock_timeout

    def meta_lock(self) -> FileLock:
        """The lock of the root's side files."""
        return FileLock(os.path.join(self.root, META_LOCK), timeout=self.lock_timeout)

    def subscriptions_lock(self) -> FileLock:
        """The root's lock (:meth:`meta_lock`)."""
        return self.meta_lock()

    def special_use_lock(self) -> FileLock:
        """The root's lock (:meth:`meta_lock`)."""
        return self.meta_lock()

    def read_subscriptions(self) -> list[str]:
        """Subscribed names, in file order."""
        return read_lines(os.path.join(self.root, SUBSCRIPTIONS))

    def write_subscriptions(self, names: list[str]) -> None:
        """Replace the subscriptions."""
        write_lines(os.path.join(self.root, SUBSCRIPTIONS), names, fsync=self.fsync)

    def read_special_use(self) -> dict[str, str]:
        """Explicit attribute → folder name (a later line for an attribute wins)."""
        result = {}
        for line in read_lines(os.path.join(self.root, SPECIAL_USE_FILE)):
            attr, _, name = line.partition(" ")
            if attr in SPECIAL_USE and name:
                result[attr] = name
        return result

    def write_special_use(self, mapping: dict[str, str]) -> None:
        """Replace the explicit special-use attributes, by folder name."""
        lines = [f"{a} {n}" for a, n in sorted(mapping.items(), key=lambda an: an[1])]
        write_lines(os.path.join(self.root, SPECIAL_USE_FILE), lines, fsync=self.fsync)


def mbox_lists(root: str, *, fsync: bool, lock_timeout: float) -> FolderLists:
    """The subscriptions and special-use attributes of the mbox store at ``root``."""
    return FolderLists(MboxListFiles(root, fsync=fsync, lock_timeout=lock_timeout))
