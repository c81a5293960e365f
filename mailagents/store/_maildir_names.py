"""Maildir names: folder names on disk (Maildir++ with modified UTF-7), unique message
file names, and the ``:2,`` info suffix with its flag letters.

Folder names: the API separator is ``/``; on disk a folder is the directory
``.<level>.<level>`` under the root (Dovecot's default Maildir++ layout), each level in
modified UTF-7. A ``.`` inside a level is refused (:class:`InvalidFolderNameError`):
it would read back as a hierarchy separator, to Dovecot and mutt as well as to us.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import threading
import time
from collections.abc import Collection, Mapping, Sequence

from mailagents._mutf7 import decode_mutf7, encode_mutf7
from mailagents.store._model import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    InvalidFolderNameError,
)

INBOX = "INBOX"

# Maildir info letters (cr.yp.to/proto/maildir.html), in ASCII order. ``P`` (passed) is
# not an IMAP flag: Dovecot shows no flag for it, so neither do we (the letter is kept
# as it is), and ``$Forwarded`` is an ordinary keyword with a dovecot-keywords letter,
# which is how Dovecot stores it. Verified against Dovecot 2.3 in tests/interop.
LETTER_FLAGS: dict[str, str] = {
    "D": DRAFT,
    "F": FLAGGED,
    "R": ANSWERED,
    "S": SEEN,
    "T": DELETED,
}
_FLAG_LETTERS: dict[str, str] = {flag.lower(): letter for letter, flag in LETTER_FLAGS.items()}

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MAX_DIR_NAME = 255


def folder_levels(name: str) -> tuple[str, ...]:
    """Validate an API folder name and return its levels (``()`` for INBOX).

    The first level ``INBOX`` is matched case-insensitively (RFC 9051 §5.1)."""
    if not isinstance(name, str) or not name:
        raise InvalidFolderNameError(f"empty folder name: {name!r}")
    if _CONTROL.search(name):
        raise InvalidFolderNameError(f"control character in folder name: {name!r}")
    if name.startswith("/"):
        raise InvalidFolderNameError(f"folder name starts with the separator: {name!r}")
    levels = name.split("/")
    for level in levels:
        if not level:
            raise InvalidFolderNameError(f"empty level in folder name: {name!r}")
        if level in (".", ".."):
            raise InvalidFolderNameError(f"relative level in folder name: {name!r}")
        if "." in level:
            raise InvalidFolderNameError(
                f"'.' is the Maildir++ separator on disk and cannot be used in a level: {name!r}"
            )
    if levels[0].upper() == INBOX:
        levels[0] = INBOX
    if levels == [INBOX]:
        return ()
    if len(dir_name(tuple(levels)).encode("utf-8")) > _MAX_DIR_NAME:
        raise InvalidFolderNameError(f"folder name too long: {name!r}")
    return tuple(levels)


def api_name(levels: Sequence[str]) -> str:
    """The API name of a folder from its levels (``INBOX`` for ``()``)."""
    return "/".join(levels) if levels else INBOX


def dir_name(levels: Sequence[str]) -> str:
    """The Maildir++ directory name of a (non-INBOX) folder: ``.Archive.2026``."""
    return "." + ".".join(encode_mutf7(level) for level in levels)


def parse_dir_name(name: str) -> tuple[str, ...] | None:
    """The levels of a Maildir++ directory name, or ``None`` if it is not one."""
    if not name.startswith(".") or name in (".", ".."):
        return None
    parts = name[1:].split(".")
    try:
        levels = tuple(decode_mutf7(part) for part in parts)
    except ValueError:
        return None
    if any(not level or _CONTROL.search(level) or "/" in level for level in levels):
        return None
    return levels


# -- unique message file names ------------------------------------------------------

_counter = itertools.count(1)
_counter_lock = threading.Lock()


def _host() -> str:
    return socket.gethostname().replace("/", "\\057").replace(":", "\\072")


def unique_name() -> str:
    """A new unique base name: ``<secs>.M<usecs>P<pid>Q<counter>R<random>.<host>``."""
    with _counter_lock:
        count = next(_counter)
    secs, usecs = divmod(time.time_ns() // 1000, 1_000_000)
    return f"{secs}.M{usecs}P{os.getpid()}Q{count}R{os.urandom(8).hex()}.{_host()}"


def unique_names(count: int) -> list[str]:
    """``count`` new unique base names, as :func:`unique_name` makes them, for a batch:
    the host name, process id and random bytes are fetched once for all of them (each
    name keeps its own counter value, time and 8 random bytes)."""
    if count <= 0:
        return []
    with _counter_lock:
        first = next(_counter)
        for _ in range(count - 1):
            next(_counter)
    host, pid = _host(), os.getpid()
    randomness = os.urandom(8 * count).hex()
    names: list[str] = []
    for i in range(count):
        secs, usecs = divmod(time.time_ns() // 1000, 1_000_000)
        names.append(f"{secs}.M{usecs}P{pid}Q{first + i}R{randomness[16 * i : 16 * i + 16]}.{host}")
    return names


def sized_name(unique: str, disk_size: int, crlf_size: int) -> str:
    """The base name with the size fields Dovecot writes."""
    return f"{unique},S={disk_size},W={crlf_size}"


def split_name(name: str) -> tuple[str, str | None]:
    """``(base, info)`` of a file name; ``info`` is what follows ``:`` (``None`` if
    there is no ``:``)."""
    base, sep, info = name.partition(":")
    return base, (info if sep else None)


def name_size(base: str, key: str) -> int | None:
    """The value of ``,S=`` (``key="S"``) or ``,W=`` in a base name, as Dovecot parses it."""
    marker = f",{key}="
    pos = base.find(marker)
    if pos < 0:
        return None
    pos += len(marker)
    end = pos
    while end < len(base) and base[end].isdigit():
        end += 1
    if end == pos or (end < len(base) and base[end] != ","):
        return None
    return int(base[pos:end])


_SORT = re.compile(r"(\d*)(?:\.([^.:]*))?")


def sort_key(base: str) -> tuple[int, int, str]:
    """Dovecot's order of new files: by seconds, microseconds, then name."""
    match = _SORT.match(base)
    secs = int(match.group(1)) if match and match.group(1) else 0
    usecs = -1
    uniq = match.group(2) if match else None
    if uniq:
        pos = uniq.find("M")
        if pos >= 0:
            digits = re.match(r"\d*", uniq[pos + 1 :])
            usecs = int(digits.group(0)) if digits and digits.group(0) else 0
    return secs, usecs, base


# -- the info suffix -------------------------------------------------------------------


def parse_info(info: str | None, keywords: Sequence[str | None]) -> frozenset[str]:
    """Flags of an info suffix (``2,FRSa``); ``keywords[i]`` names letter ``a + i``.
    Letters without a meaning are ignored here (and kept by :func:`build_info`)."""
    if not info or not info.startswith("2,"):
        return frozenset()
    flags: set[str] = set()
    for ch in info[2:]:
        if ch in LETTER_FLAGS:
            flags.add(LETTER_FLAGS[ch])
        elif "a" <= ch <= "z":
            idx = ord(ch) - ord("a")
            if idx < len(keywords):
                keyword = keywords[idx]
                if keyword is not None:
                    flags.add(keyword)
    return frozenset(flags)


def keyword_letters_needed(flags: Collection[str]) -> list[str]:
    """The keywords among ``flags`` that need a letter (not system flags)."""
    return [f for f in flags if not f.startswith("\\") and f.lower() not in _FLAG_LETTERS]


def split_flags(
    flags: Collection[str], letters: Mapping[str, str]
) -> tuple[frozenset[str], frozenset[str]]:
    """``(named, extra)``: the flags a file name can carry (system flags, keywords
    with a letter) and the keywords without a letter."""
    named = set()
    extra = set()
    for flag in flags:
        if flag.lower() in _FLAG_LETTERS or flag.lower() in letters:
            named.add(flag)
        else:
            extra.add(flag)
    return frozenset(named), frozenset(extra)


def build_info(
    old_info: str | None,
    flags: Collection[str],
    letters: Mapping[str, str],
    keywords: Sequence[str | None],
) -> str:
    """The new info suffix for ``flags``: system letters and keyword letters
    (``letters`` maps lower-cased keyword → letter), keeping every character of
    ``old_info`` we do not understand; ASCII order, as the Maildir spec asks."""
    chars: set[str] = set()
    for flag in flags:
        letter = _FLAG_LETTERS.get(flag.lower())
        if letter is None:
            letter = letters.get(flag.lower())
        if letter is None:
            raise ValueError(f"no letter for keyword {flag!r}")
        chars.add(letter)
    if old_info and old_info.startswith("2,"):
        for ch in old_info[2:]:
            if ch in LETTER_FLAGS:
                continue
            if "a" <= ch <= "z":
                idx = ord(ch) - ord("a")
                if idx < len(keywords) and keywords[idx] is not None:
                    continue  # a known keyword: present only if in flags
            chars.add(ch)
    return "2," + "".join(sorted(chars))


def file_name(base: str, info: str | None) -> str:
    """``base`` plus ``:info`` when there is an info suffix."""
    return base if info is None else f"{base}:{info}"
