"""The subscriptions and special-use attributes of a store's folders, kept the same way
by every store; only the files they live in differ (:class:`ListFiles`: Dovecot's
``subscriptions`` for Maildir, side files of our own for mbox).

The rules:

* a subscription is a name, listed once, in the order subscribed; the folder need not
  exist, and deleting a folder does not unsubscribe it (:rfc:`9051#section-6.3.7`: a
  server should not remove a name from the subscriptions unilaterally);
* a special-use attribute (:rfc:`6154`) marks one folder at a time: giving it to a
  folder takes it from the one that had it, and a folder has at most one. A store may
  give defaults by name (Maildir's ``Sent``, ``Trash``...), which an explicit
  attribute overrides; clearing a folder's attribute that is a default gives the
  attribute to nobody (an empty name in the file);
* renaming a folder carries its subscription and attribute, and its children's, to the
  new names; deleting it drops its attribute.

Each change reads, edits and rewrites its file under the store's lock for that file, so
concurrent changes from other processes are not lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Protocol


class ListFiles(Protocol):
    """Where a store keeps its two lists. Each ``write_*`` replaces its file atomically
    (durably if the store fsyncs) and is called with the matching lock held."""

    def subscriptions_lock(self) -> AbstractContextManager[object]:
        """The lock that serialises changes to the subscriptions."""
        ...

    def read_subscriptions(self) -> list[str]:
        """Subscribed names in file order (canonical, each once)."""
        ...

    def write_subscriptions(self, names: list[str]) -> None:
        """Replace the subscriptions."""
        ...

    def special_use_lock(self) -> AbstractContextManager[object]:
        """The lock that serialises changes to the special-use attributes."""
        ...

    def read_special_use(self) -> dict[str, str]:
        """Explicit special-use attribute → folder name."""
        ...

    def write_special_use(self, mapping: dict[str, str]) -> None:
        """Replace the explicit special-use attributes (attribute → folder name)."""
        ...


class FolderLists:
    """A store's subscriptions and special-use attributes, by the rules of the module
    docs, in ``files``; ``defaults`` maps folder names to the attribute they have when
    no explicit one names that attribute. Names given are canonical (the store
    canonicalises them first)."""

    def __init__(self, files: ListFiles, *, defaults: Mapping[str, str] | None = None) -> None:
        self._files = files
        self._defaults = dict(defaults or {})

    # --- subscriptions -------------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        """Subscribed names, in the order they were subscribed."""
        return self._files.read_subscriptions()

    def subscribe(self, name: str) -> None:
        """Add ``name`` (once)."""
        files = self._files
        with files.subscriptions_lock():
            names = files.read_subscriptions()
            if name not in names:
                files.write_subscriptions([*names, name])

    def unsubscribe(self, name: str) -> None:
        """Remove ``name`` if it is there."""
        files = self._files
        with files.subscriptions_lock():
            names = files.read_subscriptions()
            if name in names:
                files.write_subscriptions([n for n in names if n != name])

    # --- special use ---------------------------------------------------------------------

    def special_use(self) -> dict[str, str]:
        """Folder name → special-use attribute, defaults included."""
        explicit = self._files.read_special_use()
        result = {n: a for a, n in explicit.items() if n}
        for name, attr in self._defaults.items():
            if attr not in explicit and name not in result:
                result[name] = attr
        return result

    def set_special_use(self, name: str, attribute: str) -> None:
        """Give ``attribute`` to folder ``name`` (and take any other from it)."""
        files = self._files
        with files.special_use_lock():
            mapping = {a: n for a, n in files.read_special_use().items() if n != name}
            mapping[attribute] = name
            files.write_special_use(mapping)

    def clear_special_use(self, name: str) -> None:
        """Take folder ``name``'s attribute away, a default one included."""
        files = self._files
        with files.special_use_lock():
            explicit = files.read_special_use()
            mapping = {a: n for a, n in explicit.items() if n != name}
            default = self._defaults.get(name)
            if default is not None and default not in mapping:
                mapping[default] = ""  # nobody: the default no longer applies
            if mapping != explicit:
                files.write_special_use(mapping)

    # --- following the folders -----------------------------------------------------------

    def deleted(self, name: str) -> None:
        """Folder ``name`` is gone: it loses its explicit attribute (it stays
        subscribed)."""
        files = self._files
        if name not in files.read_special_use().values():
            return
        with files.special_use_lock():
            current = files.read_special_use()
            files.write_special_use({a: n for a, n in current.items() if n != name})

    def renamed(self, old: str, new: str, separator: str) -> None:
        """Folder ``old`` and its children (below ``old`` + ``separator``) are now
        ``new``: their subscriptions and attributes follow."""

        def rename(name: str) -> str:
            if name == old:
                return new
            if name.startswith(old + separator):
                return new + name[len(old) :]
            return name

        files = self._files
        if any(rename(n) != n for n in files.read_subscriptions()):
            with files.subscriptions_lock():
                files.write_subscriptions([rename(n) for n in files.read_subscriptions()])
        if any(rename(n) != n for n in files.read_special_use().values()):
            with files.special_use_lock():
                current = files.read_special_use()
                files.write_special_use({a: rename(n) for a, n in current.items()})
