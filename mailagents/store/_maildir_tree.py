"""The Maildir folder tree's files, for :class:`~mailagents.store.maildir.MaildirStore`:
which directories are Maildir++ folders, and where the folder lists of
:mod:`mailagents.store._folder_lists` live: the ``subscriptions`` file in Dovecot's
format (version 2, version 1 read too) and the ``mailagents-special-use`` file.
"""

from __future__ import annotations

import os

from mailagents._mutf7 import decode_mutf7, encode_mutf7
from mailagents.store._fileio import write_atomic
from mailagents.store._folder_lists import FolderLists
from mailagents.store._locking import DotLock
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
DEFAULT_SPECIAL_USE = {
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


class MaildirListFiles:
    """The folder lists' files in a Maildir's root (a
    :class:`~mailagents.store._folder_lists.ListFiles`)."""

    def __init__(self, root: str, *, fsync: bool) -> None:
        self.root = root
        self.fsync = fsync

    def subscriptions_lock(self) -> DotLock:
        """The dotlock that serialises changes to ``subscriptions``."""
        return DotLock(os.path.join(self.root, SUBSCRIPTIONS + ".lock"), stale_after=30.0)

    def read_subscriptions(self) -> list[str]:
        """Subscribed folder names, in file order (version 2 or version 1 files)."""
        try:
            with open(os.path.join(self.root, SUBSCRIPTIONS), "rb") as f:
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

    def write_subscriptions(self, names: list[str]) -> None:
        """Write ``subscriptions`` anew in version 2."""
        lines = []
        for name in names:
            levels = folder_levels(name) or (INBOX,)
            lines.append("\t".join(_tab_escape(encode_mutf7(lv)) for lv in levels) + "\n")
        data = _V2_HEADER + "".join(lines).encode("utf-8")
        write_atomic(os.path.join(self.root, SUBSCRIPTIONS), data, fsync=self.fsync)

    def special_use_lock(self) -> DotLock:
        """The dotlock that serialises changes to ``mailagents-special-use``."""
        return DotLock(os.path.join(self.root, SPECIAL_USE_FILE + ".lock"))

    def read_special_use(self) -> dict[str, str]:
        """Explicit attribute → folder name (``<attribute><TAB><folder>`` lines; an
        empty name takes a default attribute from its folder without giving it to
        another)."""
        try:
            with open(os.path.join(self.root, SPECIAL_USE_FILE), encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return {}
        result = {}
        for line in text.splitlines():
            attr, sep, name = line.partition("\t")
            if sep and attr in SPECIAL_USE:
                result[attr] = name
        return result

    def write_special_use(self, mapping: dict[str, str]) -> None:
        """Write ``mailagents-special-use`` anew (attribute → folder name)."""
        data = "".join(f"{a}\t{n}\n" for a, n in sorted(mapping.items())).encode("utf-8")
        write_atomic(os.path.join(self.root, SPECIAL_USE_FILE), data, fsync=self.fsync)


def maildir_lists(root: str, *, fsync: bool) -> FolderLists:
    """The subscriptions and special-use attributes of the Maildir at ``root``, with
    the usual folder names (``Sent``, ``Trash``...) given their attribute by default."""
    return FolderLists(MaildirListFiles(root, fsync=fsync), defaults=DEFAULT_SPECIAL_USE)


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
