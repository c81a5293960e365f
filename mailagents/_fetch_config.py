"""The MRA's TOML configuration (``python -m mailagents fetch --config FILE``).

::

    state_dir = "fetch-state"            # one state file per account (default)

    [destination]                        # where messages go, unless an account says
    maildir = "mail/{user}/Maildir"      # a Maildir path template (MaildirDelivery)
    # lmtp = "127.0.0.1:24"              # or re-inject over LMTP, or SMTP:
    # smtp = "127.0.0.1:25"
    # starttls = false                   # for smtp/lmtp: true, false, or unset (if offered)
    # [destination.mda]                  # or an MDA with users, aliases and domains
    # users = "users"; aliases = "aliases"; domains = ["example.test"]
    # mailboxes = "mail/{user}/Maildir"; format = "maildir"

    [[account]]
    name = "work"                        # required, unique
    protocol = "imap"                    # "imap" or "pop3"
    host = "imap.example.org"
    port = 993                           # default by protocol and tls
    tls = "implicit"                     # "implicit" (default), "starttls", "none"
    verify = true                        # check the certificate (default)
    ca_file = "ca.pem"                   # trusted authorities instead of the system's
    user = "alice"
    password_file = "work.password"      # its first line; or password_env = "VAR",
                                         # or password = "..." (in this file)
    recipients = ["alice@example.test"]  # local envelope recipients
    folders = ["INBOX"]                  # IMAP only
    after = "keep"                       # "keep", "seen", "delete", "move" (POP3: keep, delete)
    move_to = "Archive"                  # with after = "move"
    max_size = 26214400                  # octets; larger messages stay and are reported
    max_messages = 500                   # per pass
    interval = 300                       # seconds between polls
    idle = true                          # IMAP IDLE where offered
    timeout = 120
    mechanism = "SCRAM-SHA-256"          # default: the strongest offered
    # [account.destination]              # this account's own destination

Relative paths are taken from the configuration file's folder. Every error names its
key (``account[1].port: ...``); a TOML syntax error gives tomllib's line and column.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mailagents._config_keys import (
    ConfigError,
    host_port,
    join,
    no_unknown,
    optional,
    path,
    read_toml,
    required_str,
    str_list,
)
from mailagents.agents._mra_handoff import SMTPForward, recipient
from mailagents.agents._recipients import LocalRecipients
from mailagents.agents.mda import MDA, MaildirDelivery
from mailagents.agents.mra import Account
from mailagents.delivery import Deliver
from mailagents.smtp import AddressError

__all__ = ["ConfigError", "FetchConfig", "load_fetch_config", "parse_fetch_config"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchConfig:
    """What a configuration file describes."""

    accounts: tuple[Account, ...]
    """The accounts, each with its destination."""
    state_dir: str
    """Where the state files go (absolute)."""
    closers: tuple[Callable[[], None], ...] = ()
    """What closes the destinations made for the file (call each once done)."""

    def close(self) -> None:
        """Close the destinations made for the file."""
        for close in self.closers:
            close()


_ACCOUNT_KEYS = {
    "name", "protocol", "host", "port", "tls", "verify", "ca_file", "user", "password",
    "password_file", "password_env", "recipients", "folders", "after", "move_to",
    "max_size", "max_messages", "interval", "idle", "timeout", "mechanism", "destination",
}
_TOP_KEYS = {"state_dir", "destination", "account"}


def load_fetch_config(path: str | os.PathLike[str]) -> FetchConfig:
    """Read and check the file at ``path`` (see the module text)."""
    data, base = read_toml(path)
    return parse_fetch_config(data, base=base)


def parse_fetch_config(
    data: Mapping[str, Any],
    *,
    base: str = ".",
    where: str = "",
    default: Deliver | None = None,
) -> FetchConfig:
    """Check the parsed TOML ``data``; relative paths are from ``base``. ``where`` is
    the key path of ``data`` in a larger file (``"fetch"``), ``default`` the
    destination of accounts without their own when ``data`` names none."""
    no_unknown(data, _TOP_KEYS, where)
    closers: list[Callable[[], None]] = []
    try:
        if "destination" in data:
            default = _destination(data["destination"], join(where, "destination"), base,
                                   closers)
        raw = data.get("account", [])
        if not isinstance(raw, list) or not raw:
            raise ConfigError(join(where, "account"), "give at least one [[account]] table")
        accounts: list[Account] = []
        names: set[str] = set()
        for index, table in enumerate(raw):
            key = join(where, f"account[{index}]")
            account = _account(table, key, base, default, closers)
            if account.name in names:
                raise ConfigError(f"{key}.name", f"{account.name!r} is used twice")
            names.add(account.name)
            accounts.append(account)
        state_dir = path(data.get("state_dir", "fetch-state"), join(where, "state_dir"), base)
    except BaseException:
        for close in closers:
            close()
        raise
    return FetchConfig(accounts=tuple(accounts), state_dir=state_dir, closers=tuple(closers))


def _destination(
    table: Any, key: str, base: str, closers: list[Callable[[], None]]
) -> Deliver:
    if not isinstance(table, Mapping):
        raise ConfigError(key, "must be a table")
    no_unknown(table, {"maildir", "smtp", "lmtp", "starttls", "mda"}, key)
    kinds = [k for k in ("maildir", "smtp", "lmtp", "mda") if k in table]
    if len(kinds) != 1:
        raise ConfigError(key, "give exactly one of maildir, smtp, lmtp or mda")
    kind = kinds[0]
    starttls = table.get("starttls")
    if starttls is not None and (kind not in ("smtp", "lmtp") or not isinstance(starttls, bool)):
        raise ConfigError(f"{key}.starttls", "true or false, with smtp or lmtp only")
    if kind == "maildir":
        delivery = MaildirDelivery(path(table["maildir"], f"{key}.maildir", base))
        closers.append(delivery.close)
        return delivery
    if kind in ("smtp", "lmtp"):
        host, port = host_port(table[kind], f"{key}.{kind}")
        return SMTPForward(host, port, lmtp=kind == "lmtp", starttls=starttls)
    mda = table["mda"]
    where = f"{key}.mda"
    if not isinstance(mda, Mapping):
        raise ConfigError(where, "must be a table")
    no_unknown(mda, {"users", "aliases", "domains", "mailboxes", "format"}, where)
    domains = str_list(mda, "domains", where, "domain names")
    fmt = mda.get("format", "maildir")
    if fmt not in ("maildir", "mbox"):
        raise ConfigError(f"{where}.format", "'maildir' or 'mbox'")
    aliases = mda.get("aliases")
    try:
        recipients = LocalRecipients(
            path(mda.get("users"), f"{where}.users", base),
            path(aliases, f"{where}.aliases", base) if aliases is not None else None,
            local_domains=domains,
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(where, str(exc)) from exc
    made = MDA(path(mda.get("mailboxes", "mail/{user}/Maildir"), f"{where}.mailboxes", base),
               recipients, format=fmt)
    closers.append(made.close)
    return made


def _password(table: Mapping[str, Any], key: str, base: str) -> str | Callable[[], str]:
    given = [n for n in ("password", "password_file", "password_env") if n in table]
    if len(given) != 1:
        raise ConfigError(key, "give one of password, password_file or password_env")
    name = given[0]
    if name == "password":
        return required_str(table, "password", key)
    if name == "password_env":
        variable = required_str(table, "password_env", key)

        def from_env() -> str:
            value = os.environ.get(variable)
            if value is None:
                raise ConfigError(f"{key}.password_env", f"${variable} is not set")
            return value

        return from_env
    source = path(table["password_file"], f"{key}.password_file", base)

    def from_file() -> str:
        with open(source, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n")

    return from_file


def _account(
    table: Any, key: str, base: str, default: Deliver | None,
    closers: list[Callable[[], None]],
) -> Account:
    if not isinstance(table, Mapping):
        raise ConfigError(key, "must be a table")
    no_unknown(table, _ACCOUNT_KEYS, key)
    deliver = default
    if "destination" in table:
        deliver = _destination(table["destination"], f"{key}.destination", base, closers)
    if deliver is None:
        raise ConfigError(f"{key}.destination", "no destination here nor at the top")
    recipients = str_list(table, "recipients", key, "local addresses")
    folders = str_list(table, "folders", key, "folder names", ["INBOX"])
    port = optional(table, "port", key, int, "a port number")
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"{key}.port", "from 1 to 65535")
    ca_file = table.get("ca_file")
    options: dict[str, Any] = {
        "name": required_str(table, "name", key),
        "protocol": required_str(table, "protocol", key),
        "host": required_str(table, "host", key),
        "user": required_str(table, "user", key),
        "password": _password(table, key, base),
        "recipients": tuple(recipients),
        "port": port,
        "tls": required_str(table, "tls", key, "implicit"),
        "verify": optional(table, "verify", key, bool, "true or false") is not False,
        "ca_file": path(ca_file, f"{key}.ca_file", base) if ca_file is not None else None,
        "mechanism": optional(table, "mechanism", key, str, "a mechanism name"),
        "folders": tuple(folders),
        "after": required_str(table, "after", key, "keep"),
        "move_to": optional(table, "move_to", key, str, "a folder name"),
        "max_size": optional(table, "max_size", key, int, "a number of octets"),
        "max_messages": optional(table, "max_messages", key, int, "a number"),
        "idle": optional(table, "idle", key, bool, "true or false") is not False,
        "deliver": deliver,
    }
    for name in ("interval", "timeout"):
        value = optional(table, name, key, float, "a number of seconds")
        if value is not None:
            options[name] = value
    _check(options, key)
    try:
        return Account(**options)
    except ValueError as exc:
        text = str(exc).removeprefix(f"{options['name']}: ")
        raise ConfigError(key, text) from exc


_CHOICES = {
    "protocol": ("imap", "pop3"),
    "tls": ("implicit", "starttls", "none"),
    "after": ("keep", "seen", "delete", "move"),
}


def _check(options: Mapping[str, Any], key: str) -> None:
    """What :class:`Account` would refuse, refused with the key at fault."""
    for name, choices in _CHOICES.items():
        if options[name] not in choices:
            raise ConfigError(f"{key}.{name}", "one of " + ", ".join(f"'{c}'" for c in choices))
    if options["protocol"] == "pop3" and options["after"] not in ("keep", "delete"):
        raise ConfigError(f"{key}.after", "a POP3 account can only keep or delete")
    move_to = options["move_to"]
    if (options["after"] == "move") != (move_to is not None):
        raise ConfigError(f"{key}.move_to", "goes with after = 'move', and only with it")
    if move_to is not None and move_to in options["folders"]:
        raise ConfigError(f"{key}.move_to", "may not be one of the folders fetched")
    for name in ("max_size", "max_messages"):
        if options[name] is not None and options[name] < 1:
            raise ConfigError(f"{key}.{name}", "must be at least 1")
    for name in ("interval", "timeout"):
        if options.get(name, 1.0) <= 0:
            raise ConfigError(f"{key}.{name}", "must be positive")
    for address in options["recipients"]:
        try:
            recipient(address)
        except AddressError as exc:
            raise ConfigError(f"{key}.recipients", f"{address!r}: {exc}") from exc
