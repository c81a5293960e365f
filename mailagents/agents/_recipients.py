"""Who is local, and where their mail goes: the users and aliases of an MDA.

:class:`LocalRecipients` resolves an envelope recipient to the stores it is delivered
to, from a users table and an aliases table, both loaded from text files (or given as
mappings) and checked whole when loaded, so that a broken alias is an error at start,
never a bounce later.

The users file: one identity per line (``alice@example.test``, or ``alice`` for that
user in every local domain), optionally followed by a quota in octets (``50M``,
``2G``, ``100000``; ``K``, ``M``, ``G`` are powers of 1024); ``#`` starts a comment.

The aliases file, in the format of ``/etc/aliases`` (aliases(5)): ``name: target,
target, ...``, a line starting with white space continuing the previous one. A name is
``local@domain``, ``local`` (in every local domain) or ``@domain`` (the catch-all of
that domain); a target is a local address or a bare local part (in the alias's own
domain), itself a user or another alias (at most 10 levels). An alias naming itself
among its targets delivers to the user of that name too, as sendmail's does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from mailagents.smtp import Mailbox
from mailagents.userdb import UserStore

__all__ = ["LocalRecipients", "LocalTarget", "parse_aliases", "parse_users"]

_MAX_DEPTH = 10
_MAX_TARGETS = 1000
_SIZE = re.compile(r"(\d+)([KMG]?)", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


@dataclass(frozen=True, slots=True, order=True)
class LocalTarget:
    """One copy to write: a user's identity (which names its store), the address it is
    delivered as (``Delivered-To:``), and the folder (``None``: INBOX)."""

    identity: str
    """The user, as the users table names it (the store resolver's identity)."""
    address: str
    """The user's address in the recipient's domain (``local@domain``, lower case)."""
    folder: str | None = None
    """The folder an address extension asked for (``user+tag@``), if any."""


def _numbered_lines(text: str) -> Iterable[tuple[int, str]]:
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if line.strip():
            yield number, line


def parse_size(text: str) -> int:
    """An octet count as the users file writes it (``50M``, ``2G``, ``100000``)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def parse_users(text: str, source: str = "users") -> dict[str, int | None]:
    """The users file's entries: identity (lower case) to quota (``None``: none)."""
    users: dict[str, int | None] = {}
    for number, line in _numbered_lines(text):
        fields = line.split()
        if len(fields) > 2:
            raise ValueError(f"{source}:{number}: expected an identity and a quota")
        try:
            quota = parse_size(fields[1]) if len(fields) == 2 else None
        except ValueError as exc:
            raise ValueError(f"{source}:{number}: {exc}") from None
        users[fields[0].lower()] = quota
    return users


def parse_aliases(text: str, source: str = "aliases") -> dict[str, tuple[str, ...]]:
    """The aliases file's entries: name (lower case) to its targets (lower case)."""
    entries: list[tuple[int, str]] = []
    for number, line in _numbered_lines(text):
        if line[0].isspace():
            if not entries:
                raise ValueError(f"{source}:{number}: a continuation line with no alias")
            entries[-1] = (entries[-1][0], entries[-1][1] + " " + line.strip())
        else:
            entries.append((number, line))
    aliases: dict[str, tuple[str, ...]] = {}
    for number, entry in entries:
        name, colon, rest = entry.partition(":")
        name = name.strip().lower()
        targets = tuple(t.strip().lower() for t in rest.split(",") if t.strip())
        if not colon or not name or not targets:
            raise ValueError(f"{source}:{number}: expected 'name: target, ...'")
        for target in targets:
            if target[0] in "|/:\"" or target.startswith("@"):
                raise ValueError(
                    f"{source}:{number}: {target!r}: only local addresses are delivered "
                    "(no commands, files or includes)"
                )
        if name in aliases:
            raise ValueError(f"{source}:{number}: {name!r} is defined twice")
        aliases[name] = targets
    return aliases


def _read(path: str | os.PathLike[str]) -> str:
    with open(path, encoding="utf-8") as file:
        return file.read()


class LocalRecipients:
    """The local users and aliases of an MDA, and the rule from a recipient to its
    :class:`LocalTarget` list (see the module).

    ``users``: the users file's path, a mapping from identity to quota (octets, or
    ``None``), a collection of identities, or a :class:`~mailagents.userdb.UserStore`
    (its users, with no quota). ``aliases``: the aliases file's path or a mapping from
    name to targets. ``local_domains``: the domains delivered here. ``delimiter``
    separates an address extension (``alice+lists@``: the folder ``lists``); ``""``
    turns extensions off.

    ``postmaster`` must reach someone in every local domain (RFC 5321 §4.5.1): through
    an alias (``postmaster: alice``) or a user of that name; otherwise, as for an alias
    that leads nowhere, construction raises :class:`ValueError` naming the problem.
    Local parts compare without regard to case. :meth:`reload` reads the files again.
    """

    def __init__(
        self,
        users: str | os.PathLike[str] | Mapping[str, int | None] | Collection[str] | UserStore,
        aliases: str | os.PathLike[str] | Mapping[str, Collection[str]] | None = None,
        *,
        local_domains: Collection[str],
        delimiter: str = "+",
    ) -> None:
        if isinstance(local_domains, str):
            raise TypeError("local_domains is a collection of domains, not one string")
        if len(delimiter) > 1:
            raise ValueError("the delimiter is one character (or empty)")
        self.local_domains = frozenset(d.lower().rstrip(".") for d in local_domains)
        """The domains delivered here (lower case)."""
        if not self.local_domains:
            raise ValueError("an MDA needs at least one local domain")
        self.delimiter = delimiter
        """What separates an address extension from the user (``""``: none)."""
        self._users_source = users
        self._aliases_source = aliases
        self._users: dict[str, int | None] = {}
        self._store: UserStore | None = None
        self._aliases: dict[str, tuple[str, ...]] = {}
        self.reload()

    # ------------------------------------------------------------------ loading

    def reload(self) -> None:
        """Read the users and aliases again (files), and check them whole; on an
        error the tables in use are kept and :class:`ValueError` is raised."""
        source = self._users_source
        store: UserStore | None = None
        if isinstance(source, UserStore):
            store, users = source, {}
        elif isinstance(source, str | os.PathLike):
            users = parse_users(_read(source), os.fspath(source))
        elif isinstance(source, Mapping):
            users = {k.lower(): v for k, v in source.items()}
        else:
            users = dict.fromkeys((u.lower() for u in source), None)
        found = self._aliases_source
        if found is None:
            aliases: dict[str, tuple[str, ...]] = {}
        elif isinstance(found, str | os.PathLike):
            aliases = parse_aliases(_read(found), os.fspath(found))
        else:
            aliases = {k.lower(): tuple(t.lower() for t in v) for k, v in found.items()}
        old = self._users, self._store, self._aliases
        self._users, self._store, self._aliases = users, store, aliases
        try:
            self._check()
        except ValueError:
            self._users, self._store, self._aliases = old
            raise

    def _check(self) -> None:
        problems = []
        for name in self._aliases:
            local, at, domain = name.rpartition("@") if "@" in name else (name, "", "")
            domains = [domain] if at else sorted(self.local_domains)
            for d in domains:
                if d not in self.local_domains:
                    problems.append(f"alias {name!r}: {d!r} is not a local domain")
                    continue
                try:
                    if local:
                        self._expand(local, d, 0, frozenset())
                    else:  # a catch-all
                        self._targets(name, self._aliases[name], d, 0, frozenset())
                except ValueError as exc:
                    problems.append(str(exc))
        for domain in sorted(self.local_domains):
            try:
                if not self._expand("postmaster", domain, 0, frozenset()):
                    problems.append(
                        f"postmaster@{domain} reaches nobody: add an alias "
                        "'postmaster: someone' (RFC 5321 §4.5.1)"
                    )
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(dict.fromkeys(problems)))

    # ---------------------------------------------------------------- resolving

    def is_user(self, identity: str) -> bool:
        """Whether ``identity`` is a user of the users table."""
        if self._store is not None:
            return self._store.lookup(identity) is not None
        return identity.lower() in self._users

    def quota(self, identity: str) -> int | None:
        """The user's quota in octets, or ``None``."""
        return self._users.get(identity.lower())

    def _user(self, local: str, domain: str) -> LocalTarget | None:
        for identity in (f"{local}@{domain}", local):
            if self._store is not None:
                entry = self._store.lookup(identity)
                found = entry.name if entry is not None else None
            else:
                found = identity if identity in self._users else None
            if found is not None:
                return LocalTarget(identity=found, address=f"{local}@{domain}")
        return None

    def _expand(
        self, local: str, domain: str, depth: int, seen: frozenset[str]
    ) -> list[LocalTarget]:
        """The targets of ``local@domain`` (no extension, lower case); ``[]`` if it is
        neither a user nor an alias. Raises :class:`ValueError` for a broken alias."""
        name = f"{local}@{domain}"
        targets = None
        if name not in seen:
            targets = self._aliases.get(name)
            if targets is None and local not in seen:
                targets = self._aliases.get(local)
        if targets is None:
            user = self._user(local, domain)
            return [user] if user is not None else []
        return self._targets(name, targets, domain, depth, seen | {name, local})

    def _targets(
        self, name: str, targets: tuple[str, ...], domain: str, depth: int,
        seen: frozenset[str],
    ) -> list[LocalTarget]:
        """The targets of alias ``name`` (in ``domain``), expanded."""
        if depth >= _MAX_DEPTH:
            raise ValueError(f"alias {name!r}: more than {_MAX_DEPTH} levels of aliases")
        result: list[LocalTarget] = []
        for target in targets:
            t_local, at, t_domain = target.rpartition("@")
            if not at:
                t_local, t_domain = target, domain
            if t_domain not in self.local_domains:
                raise ValueError(f"alias {name!r}: {target!r} is not a local address")
            found = self._expand(t_local, t_domain, depth + 1, seen)
            if not found:
                raise ValueError(f"alias {name!r}: {target!r} is neither a user nor an alias")
            result += found
            if len(result) > _MAX_TARGETS:
                raise ValueError(f"alias {name!r}: more than {_MAX_TARGETS} targets")
        return sorted(set(result))

    def resolve(self, mailbox: Mailbox) -> list[LocalTarget] | None:
        """Where mail for ``mailbox`` goes, or ``None`` if it is not a local recipient
        (its domain is not local, or it is neither a user nor an alias there).

        The whole local part is looked up first, then, with an extension
        (``user+tag``), the user part with the folder ``tag`` (the MDA uses it when it
        exists), then the domain's catch-all. ``<postmaster>`` without a domain is
        postmaster of the first local domain (by name)."""
        domain = mailbox.domain.lower().rstrip(".")
        local = mailbox.local_part.lower()
        if not domain:
            if local != "postmaster":
                return None
            domain = min(self.local_domains)
        if domain not in self.local_domains:
            return None
        candidates: list[tuple[str, str | None]] = [(local, None)]
        # An extension after the first delimiter (not a leading one); an empty one
        # (``bob+``) is INBOX.
        if self.delimiter and self.delimiter in local[1:]:
            base, _, tag = mailbox.local_part.partition(self.delimiter)
            candidates.append((base.lower(), tag or None))
        for candidate, folder in candidates:
            found = self._expand(candidate, domain, 0, frozenset())
            if found:
                if folder is None:
                    return found
                return [LocalTarget(t.identity, t.address, folder) for t in found]
        catch_all = self._aliases.get("@" + domain)
        if catch_all is not None:
            return self._targets("@" + domain, catch_all, domain, 0, frozenset()) or None
        return None
