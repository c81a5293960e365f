"""The Maildir folder tree's files, for :class:`~mailagents.store.maildir.MaildirStore`:
which directories are Maildir++ folders, the ``subscriptions`` file in Dovecot's format
(version 2, version 1 read too) and the ``mailagents-special-use`` file; functions of
the store's root.
"""

from __future__ import annotations

import os

from mailagents._mutf7 import decode_mutf7, encode_mutf7
from mailagents.store._locking import DotLock
from mailagents.store._maildir_io import _write_file_atomic
from mailagents.store._maildir_names import (
    INBOX,
    api_name,
    dir_name,
    folder_levels,
    parse_dir_name,
)
from mailagents.store._model import SPECIAL_USE, InvalidFolderNameError

SUBSCRIPTIONS = "subscriptions"
SPECIAL_USE_FILE = "mailagents-special-use"
_V2_HEADER = b"V\t2\n\n"
_DEFAULT_SPECIAL_USE = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}


def existing_folders(root: str) -> list[tuple[str, ...]]:
    """Levels of every folder directory (not INBOX)."""
    found = []
    for name in os.listdir(root):
        levels = parse_dir_name(name)
        if levels is None:
            continue
        if levels[0].upper() == INBOX and (len(levels) == 1 or levels[0] != INBOX):
            continue  # ".INBOX" would shadow the root; ".inbox.x" is not canonical
        if dir_name(levels) != name:
            continue  # not the canonical encoding of its name
        if os.path.isdir(os.path.join(root, name)):
            found.append(levels)
    return found


def subscriptions_lock(root: str) -> DotLock:
    """The dotlock that serialises changes to ``subscriptions``."""
    return DotLock(os.path.join(root, SUBSCRIPTIONS + ".lock"), stale_after=30.0)


def read_subscriptions(root: str) -> list[str]:
    """Subscribed folder names, in file order (version 2 or version 1 files)."""
    try:
        with open(os.path.join(root, SUBSCRIPTIONS), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    names: list[str] = []
    if data.startswith(_V2_HEADER):
        for raw in data[len(_V2_HEADER) :].split(b"\n"):
            if not raw:
                continue
            levels = [_tab_unescape(p) for p in raw.decode("utf-8", "replace").split("\t")]
            _add_subscription(names, levels)
    else:
        for raw in data.split(b"\n"):
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            levels = line.split("/") if "/" in line else line.split(".")
            _add_subscription(names, levels)
    return names


def _add_subscription(names: list[str], levels: list[str]) -> None:
    decoded = []
    for level in levels:
        try:
            decoded.append(decode_mutf7(level))
        except ValueError:
            decoded.append(level)
    try:
        name = api_name(folder_levels("/".join(decoded)))
    except InvalidFolderNameError:
        return
    if name not in names:
        names.append(name)


def write_subscriptions(root: str, names: list[str], *, fsync: bool) -> None:
    """Write ``subscriptions`` anew in version 2, with the lock held by the caller."""
    lines = []
    for name in names:
        levels = folder_levels(name) or (INBOX,)
        lines.append("\t".join(_tab_escape(encode_mutf7(lv)) for lv in levels) + "\n")
    data = _V2_HEADER + "".join(lines).encode("utf-8")
    _write_file_atomic(os.path.join(root, SUBSCRIPTIONS), data, fsync=fsync)


def read_special_use(root: str) -> dict[str, str]:
    """Explicit attribute → folder name."""
    try:
        with open(os.path.join(root, SPECIAL_USE_FILE), encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    result = {}
    for line in text.splitlines():
        attr, sep, name = line.partition("\t")
        if sep and attr in SPECIAL_USE and name:
            result[attr] = name
    return result


def write_special_use(root: str, mapping: dict[str, str], *, fsync: bool) -> None:
    """Write ``mailagents-special-use`` anew (attribute → folder name)."""
    data = "".join(f"{a}\t{n}\n" for a, n in sorted(mapping.items())).encode("utf-8")
    _write_file_atomic(os.path.join(root, SPECIAL_USE_FILE), data, fsync=fsync)


def set_special_use(root: str, name: str, attribute: str, *, fsync: bool) -> None:
    """Give ``attribute`` to folder ``name`` (and take any other from it)."""
    with DotLock(os.path.join(root, SPECIAL_USE_FILE + ".lock")):
        mapping = {a: n for a, n in read_special_use(root).items() if n != name}
        mapping[attribute] = name
        write_special_use(root, mapping, fsync=fsync)


def special_use_by_folder(root: str) -> dict[str, str]:
    """Folder name → special-use attribute, defaults included."""
    explicit = read_special_use(root)
    result = {n: a for a, n in explicit.items()}
    for name, attr in _DEFAULT_SPECIAL_USE.items():
        if attr not in explicit and name not in result:
            result[name] = attr
    return result


def rename_in_lists(root: str, old_name: str, new_name: str, *, fsync: bool) -> None:
    """Subscriptions and special-use follow a folder (and its children) renamed from
    ``old_name`` to ``new_name``."""

    def rename(name: str) -> str:
        if name == old_name:
            return new_name
        if name.startswith(old_name + "/"):
            return new_name + name[len(old_name) :]
        return name

    subs = read_subscriptions(root)
    if any(rename(s) != s for s in subs):
        with subscriptions_lock(root):
            write_subscriptions(root, [rename(s) for s in read_subscriptions(root)], fsync=fsync)
    explicit = read_special_use(root)
    if any(rename(n) != n for n in explicit.values()):
        with DotLock(os.path.join(root, SPECIAL_USE_FILE + ".lock")):
            current = read_special_use(root)
            write_special_use(root, {a: rename(n) for a, n in current.items()}, fsync=fsync)


def forget_special_use(root: str, name: str, *, fsync: bool) -> None:
    """A deleted folder loses its explicit special-use attribute."""
    explicit = read_special_use(root)
    if name in explicit.values():
        with DotLock(os.path.join(root, SPECIAL_USE_FILE + ".lock")):
            current = read_special_use(root)
            write_special_use(root, {a: n for a, n in current.items() if n != name}, fsync=fsync)


_TAB_ESCAPES = {"\x01": "\x011", "\t": "\x01t", "\r": "\x01r", "\n": "\x01n"}
_TAB_UNESCAPES = {"1": "\x01", "t": "\t", "r": "\r", "n": "\n"}


def _tab_escape(text: str) -> str:
    return "".join(_TAB_ESCAPES.get(ch, ch) for ch in text)


def _tab_unescape(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\x01" and i + 1 < len(text):
            out.append(_TAB_UNESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)
