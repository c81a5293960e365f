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
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mailagents.agents._mra_handoff import SMTPForward
from mailagents.agents._recipients import LocalRecipients
from mailagents.agents.mda import MDA, MaildirDelivery
from mailagents.agents.mra import Account
from mailagents.delivery import Deliver

__all__ = ["ConfigError", "FetchConfig", "load_fetch_config", "parse_fetch_config"]


class ConfigError(ValueError):
    """A configuration error; ``key`` is the path of the key at fault (``""`` for the
    file as a whole)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        """Where: ``account[0].port``."""


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
    path = os.path.abspath(os.fspath(path))
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path}: {exc}") from exc
    except OSError as exc:
        raise ConfigError("", f"{path}: {exc.strerror or exc}") from exc
    return parse_fetch_config(data, base=os.path.dirname(path))


def parse_fetch_config(data: Mapping[str, Any], *, base: str = ".") -> FetchConfig:
    """Check the parsed TOML ``data``; relative paths are from ``base``."""
    _no_unknown(data, _TOP_KEYS, "")
    closers: list[Callable[[], None]] = []
    try:
        default: Deliver | None = None
        if "destination" in data:
            default = _destination(data["destination"], "destination", base, closers)
        raw = data.get("account", [])
        if not isinstance(raw, list) or not raw:
            raise ConfigError("account", "give at least one [[account]] table")
        accounts: list[Account] = []
        names: set[str] = set()
        for index, table in enumerate(raw):
            key = f"account[{index}]"
            account = _account(table, key, base, default, closers)
            if account.name in names:
                raise ConfigError(f"{key}.name", f"{account.name!r} is used twice")
            names.add(account.name)
            accounts.append(account)
        state_dir = _path(data.get("state_dir", "fetch-state"), "state_dir", base)
    except BaseException:
        for close in closers:
            close()
        raise
    return FetchConfig(accounts=tuple(accounts), state_dir=state_dir, closers=tuple(closers))


def _no_unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    for name in table:
        if name not in known:
            raise ConfigError(f"{where}.{name}" if where else name, "unknown key")


def _path(value: Any, key: str, base: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, "must be a path (a non-empty string)")
    return os.path.join(base, os.path.expanduser(value))


def _str(table: Mapping[str, Any], name: str, key: str, default: str | None = None) -> str:
    value = table.get(name, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}.{name}", "required, a non-empty string")
    return value


def _opt(table: Mapping[str, Any], name: str, key: str, kind: type, what: str) -> Any:
    value = table.get(name)
    if value is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key}.{name}", f"must be {what}")
    return value


def _host_port(value: Any, key: str) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(key, "must be 'host:port'")
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(key, "must be 'host:port' with a port from 1 to 65535")
    return host, int(port)


def _destination(
    table: Any, key: str, base: str, closers: list[Callable[[], None]]
) -> Deliver:
    if not isinstance(table, Mapping):
        raise ConfigError(key, "must be a table")
    _no_unknown(table, {"maildir", "smtp", "lmtp", "starttls", "mda"}, key)
    kinds = [k for k in ("maildir", "smtp", "lmtp", "mda") if k in table]
    if len(kinds) != 1:
        raise ConfigError(key, "give exactly one of maildir, smtp, lmtp or mda")
    kind = kinds[0]
    starttls = table.get("starttls")
    if starttls is not None and (kind not in ("smtp", "lmtp") or not isinstance(starttls, bool)):
        raise ConfigError(f"{key}.starttls", "true or false, with smtp or lmtp only")
    if kind == "maildir":
        delivery = MaildirDelivery(_path(table["maildir"], f"{key}.maildir", base))
        closers.append(delivery.close)
        return delivery
    if kind in ("smtp", "lmtp"):
        host, port = _host_port(table[kind], f"{key}.{kind}")
        return SMTPForward(host, port, lmtp=kind == "lmtp", starttls=starttls)
    mda = table["mda"]
    where = f"{key}.mda"
    if not isinstance(mda, Mapping):
        raise ConfigError(where, "must be a table")
    _no_unknown(mda, {"users", "aliases", "domains", "mailboxes", "format"}, where)
    domains = mda.get("domains")
    if not isinstance(domains, list) or not domains or not all(
        isinstance(d, str) and d for d in domains
    ):
        raise ConfigError(f"{where}.domains", "a list of domain names")
    fmt = mda.get("format", "maildir")
    if fmt not in ("maildir", "mbox"):
        raise ConfigError(f"{where}.format", "'maildir' or 'mbox'")
    aliases = mda.get("aliases")
    try:
        recipients = LocalRecipients(
            _path(mda.get("users"), f"{where}.users", base),
            _path(aliases, f"{where}.aliases", base) if aliases is not None else None,
            local_domains=domains,
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(where, str(exc)) from exc
    made = MDA(_path(mda.get("mailboxes", "mail/{user}/Maildir"), f"{where}.mailboxes", base),
               recipients, format=fmt)
    closers.append(made.close)
    return made


def _password(table: Mapping[str, Any], key: str, base: str) -> str | Callable[[], str]:
    given = [n for n in ("password", "password_file", "password_env") if n in table]
    if len(given) != 1:
        raise ConfigError(key, "give one of password, password_file or password_env")
    name = given[0]
    if name == "password":
        return _str(table, "password", key)
    if name == "password_env":
        variable = _str(table, "password_env", key)

        def from_env() -> str:
            value = os.environ.get(variable)
            if value is None:
                raise ConfigError(f"{key}.password_env", f"${variable} is not set")
            return value

        return from_env
    path = _path(table["password_file"], f"{key}.password_file", base)

    def from_file() -> str:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n")

    return from_file


def _account(
    table: Any, key: str, base: str, default: Deliver | None,
    closers: list[Callable[[], None]],
) -> Account:
    if not isinstance(table, Mapping):
        raise ConfigError(key, "must be a table")
    _no_unknown(table, _ACCOUNT_KEYS, key)
    deliver = default
    if "destination" in table:
        deliver = _destination(table["destination"], f"{key}.destination", base, closers)
    if deliver is None:
        raise ConfigError(f"{key}.destination", "no destination here nor at the top")
    recipients = table.get("recipients")
    if not isinstance(recipients, list) or not recipients or not all(
        isinstance(r, str) for r in recipients
    ):
        raise ConfigError(f"{key}.recipients", "a list of local addresses")
    folders = table.get("folders", ["INBOX"])
    if not isinstance(folders, list) or not folders or not all(
        isinstance(f, str) and f for f in folders
    ):
        raise ConfigError(f"{key}.folders", "a list of folder names")
    port = _opt(table, "port", key, int, "a port number")
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"{key}.port", "from 1 to 65535")
    ca_file = table.get("ca_file")
    options: dict[str, Any] = {
        "name": _str(table, "name", key),
        "protocol": _str(table, "protocol", key),
        "host": _str(table, "host", key),
        "user": _str(table, "user", key),
        "password": _password(table, key, base),
        "recipients": tuple(recipients),
        "port": port,
        "tls": _str(table, "tls", key, "implicit"),
        "verify": _opt(table, "verify", key, bool, "true or false") is not False,
        "ca_file": _path(ca_file, f"{key}.ca_file", base) if ca_file is not None else None,
        "mechanism": _opt(table, "mechanism", key, str, "a mechanism name"),
        "folders": tuple(folders),
        "after": _str(table, "after", key, "keep"),
        "move_to": _opt(table, "move_to", key, str, "a folder name"),
        "max_size": _opt(table, "max_size", key, int, "a number of octets"),
        "max_messages": _opt(table, "max_messages", key, int, "a number"),
        "idle": _opt(table, "idle", key, bool, "true or false") is not False,
        "deliver": deliver,
    }
    for name in ("interval", "timeout"):
        value = _opt(table, name, key, float, "a number of seconds")
        if value is not None:
            options[name] = value
    try:
        return Account(**options)
    except ValueError as exc:
        text = str(exc).removeprefix(f"{options['name']}: ")
        raise ConfigError(key, text) from exc
