"""The configuration of ``python -m mailagents serve --config FILE`` (layer 5): one TOML
file for any set of agents, checked whole before anything listens.

Every key is in docs/configuration.rst. Relative paths are taken from the file's
folder; every error names its key (``maa.imaps: from 0 to 65535``), a TOML syntax
error gives tomllib's line and column. :func:`load_serve_config` reads the file into a
:class:`ServeConfig` of plain values, opening nothing but the files it must check (the
certificate, the users and aliases files); ``mailagents._cli_serve`` builds and runs
the agents from it.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mailagents._config_keys import (
    ConfigError,
    join,
    no_unknown,
    optional,
    path,
    port,
    read_toml,
    required_str,
    str_list,
    table_at,
)
from mailagents.agents._recipients import LocalRecipients
from mailagents.aio.tls import server_context
from mailagents.smtp import ServerConfig as SMTPServerConfig
from mailagents.userdb import PasswordFile, UserStore

__all__ = [
    "ConfigError",
    "FetchSection",
    "LMTPSection",
    "LocalSection",
    "MAASection",
    "MSASection",
    "MTASection",
    "ServeConfig",
    "load_serve_config",
    "parse_serve_config",
]

LogLevel = Literal["debug", "info", "warning", "error"]
_TOP = {"hostname", "log_level", "tls", "users", "local", "queue", "msa", "mta", "lmtp",
        "maa", "fetch"}
_DEFAULT_SIZE = SMTPServerConfig().max_message_size


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalSection:
    """``[local]``: the MDA, delivery into the local users' stores."""

    domains: tuple[str, ...]
    users: str | None
    aliases: str | None
    mailboxes: str
    format: Literal["maildir", "mbox"]
    delimiter: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MSASection:
    """``[msa]``: submission (RFC 6409)."""

    host: tuple[str, ...]
    submission: int | None
    submissions: int | None
    relay: bool
    max_message_size: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MTASection:
    """``[mta]``: SMTP for the local domains, relaying, the outbound loop."""

    host: tuple[str, ...]
    port: int | None
    relay_domains: tuple[str, ...]
    relay_networks: tuple[str, ...]
    nameservers: tuple[str, ...] | None
    dns_port: int
    outbound_port: int
    auth: bool
    max_message_size: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LMTPSection:
    """``[lmtp]``: the MDA over LMTP (RFC 2033), on TCP or a Unix socket."""

    host: tuple[str, ...]
    port: int | None
    socket: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MAASection:
    """``[maa]``: POP3 and IMAP over the local stores."""

    host: tuple[str, ...]
    pop3: int | None
    pop3s: int | None
    imap: int | None
    imaps: int | None
    allow_plaintext: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchSection:
    """``[fetch]``: the MRA's accounts, as ``python -m mailagents fetch`` reads them
    (their default destination: the local MDA)."""

    table: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeConfig:
    """What a ``serve`` configuration describes (paths absolute)."""

    path: str
    """The file it was read from (or ``"<data>"``)."""
    base: str
    """The folder relative paths were taken from."""
    hostname: str
    log_level: LogLevel
    tls: tuple[str, str] | None
    """The certificate and key files."""
    passwords: str | None
    """The password file (logins of the MSA, the MAA and, with ``auth``, the MTA)."""
    local: LocalSection | None
    queue: str
    msa: MSASection | None
    mta: MTASection | None
    lmtp: LMTPSection | None
    maa: MAASection | None
    fetch: FetchSection | None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server TLS context, or ``None`` without ``[tls]``."""
        if self.tls is None:
            return None
        return server_context(*self.tls)


def load_serve_config(file: str | os.PathLike[str]) -> ServeConfig:
    """Read and check the file (see the module text)."""
    data, base = read_toml(file)
    return parse_serve_config(data, base=base, path=os.path.abspath(os.fspath(file)))


def parse_serve_config(
    data: Mapping[str, Any], *, base: str = ".", path: str = "<data>"
) -> ServeConfig:
    """Check the parsed TOML ``data``; relative paths are from ``base``."""
    base = os.path.abspath(base)
    no_unknown(data, _TOP, "")
    hostname = required_str(data, "hostname", "")
    level = data.get("log_level", "info")
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError("log_level", "one of debug, info, warning, error")
    tls = _tls(data, base)
    passwords = _passwords(data, base)
    local = _local(data, base, passwords)
    queue = _queue(data, base)
    msa = _msa(data)
    mta = _mta(data)
    lmtp = _lmtp(data, base)
    maa = _maa(data)
    fetch = table_at(data, "fetch", "")
    if not any((msa, mta, lmtp, maa, fetch)):
        raise ConfigError("", "no agent: give at least one of [msa], [mta], [lmtp], [maa], "
                              "[fetch]")
    for name, present in (("msa", msa is not None), ("maa", maa is not None)):
        if present:
            if tls is None:
                raise ConfigError(name, "needs [tls] (passwords go over TLS only)")
            if passwords is None:
                raise ConfigError(name, "needs [users] passwords")
    if mta is not None and mta.auth and passwords is None:
        raise ConfigError("mta.auth", "needs [users] passwords")
    if local is None:
        needing = [n for n, s in (("msa", msa), ("mta", mta), ("lmtp", lmtp), ("maa", maa))
                   if s is not None]
        if needing:
            raise ConfigError(needing[0], "needs [local] (the local domains and mailboxes)")
    if msa is not None and msa.relay and mta is None:
        raise ConfigError("msa.relay", "relaying needs [mta] (the outbound queue)")
    return ServeConfig(
        path=path,
        base=base,
        hostname=hostname,
        log_level=level,
        tls=tls,
        passwords=passwords,
        local=local,
        queue=queue,
        msa=msa,
        mta=mta,
        lmtp=lmtp,
        maa=maa,
        fetch=FetchSection(table=fetch) if fetch is not None else None,
    )


def _tls(data: Mapping[str, Any], base: str) -> tuple[str, str] | None:
    table = table_at(data, "tls", "")
    if table is None:
        return None
    no_unknown(table, {"cert", "key"}, "tls")
    cert = path(table.get("cert"), "tls.cert", base)
    key = path(table.get("key"), "tls.key", base)
    try:
        server_context(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("tls", f"cannot load the certificate and key: {exc}") from exc
    return cert, key


def _passwords(data: Mapping[str, Any], base: str) -> str | None:
    table = table_at(data, "users", "")
    if table is None:
        return None
    no_unknown(table, {"passwords"}, "users")
    return path(table.get("passwords"), "users.passwords", base)


def _local(data: Mapping[str, Any], base: str, passwords: str | None) -> LocalSection | None:
    table = table_at(data, "local", "")
    if table is None:
        return None
    where = "local"
    no_unknown(table, {"domains", "users", "aliases", "mailboxes", "format", "delimiter"},
               where)
    domains = tuple(d.lower().rstrip(".") for d in str_list(table, "domains", where,
                                                            "domain names"))
    users = table.get("users")
    users_path = path(users, f"{where}.users", base) if users is not None else None
    if users_path is None and passwords is None:
        raise ConfigError(f"{where}.users", "give a users file (or [users] passwords)")
    aliases = table.get("aliases")
    aliases_path = path(aliases, f"{where}.aliases", base) if aliases is not None else None
    fmt = table.get("format", "maildir")
    if fmt not in ("maildir", "mbox"):
        raise ConfigError(f"{where}.format", "'maildir' or 'mbox'")
    delimiter = table.get("delimiter", "+")
    if not isinstance(delimiter, str) or len(delimiter) > 1:
        raise ConfigError(f"{where}.delimiter", "one character, or '' for none")
    mailboxes = path(table.get("mailboxes", "mail/{user}/Maildir"), f"{where}.mailboxes", base)
    section = LocalSection(domains=domains, users=users_path, aliases=aliases_path,
                           mailboxes=mailboxes, format=fmt, delimiter=delimiter)
    local_recipients(section, passwords)  # reads and checks the files now
    return section


def local_recipients(section: LocalSection, passwords: str | UserStore | None
                     ) -> LocalRecipients:
    """The MDA's users and aliases of ``[local]``. Without a users file, the users are
    the password file's: give the open :class:`~mailagents.userdb.PasswordFile`, so that
    a user added with ``python -m mailagents passwd`` is known at once (it reads its file
    again when it changes), or its path to check the section. Raises
    :class:`ConfigError` naming the file in error."""
    if section.users is not None:
        return _recipients(section, section.users)
    if isinstance(passwords, UserStore):
        return _recipients(section, passwords)
    assert passwords is not None
    try:
        with PasswordFile(passwords) as store:
            return _recipients(section, store)
    except OSError as exc:
        raise ConfigError("users.passwords", f"{exc.filename}: {exc.strerror}") from exc


def _recipients(section: LocalSection, users: str | UserStore) -> LocalRecipients:
    try:
        return LocalRecipients(users, section.aliases, local_domains=section.domains,
                               delimiter=section.delimiter)
    except OSError as exc:
        raise ConfigError("local", f"{exc.filename}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError("local", str(exc)) from exc


def _queue(data: Mapping[str, Any], base: str) -> str:
    table = table_at(data, "queue", "") or {}
    no_unknown(table, {"directory"}, "queue")
    return path(table.get("directory", "spool/queue"), "queue.directory", base)


def _hosts(table: Mapping[str, Any], where: str, default: str = "127.0.0.1") -> tuple[str, ...]:
    value = table.get("host", default)
    hosts = [value] if isinstance(value, str) else value
    if not isinstance(hosts, list) or not hosts or not all(
        isinstance(h, str) and h for h in hosts
    ):
        raise ConfigError(join(where, "host"), "an address or a list of addresses")
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if host != "localhost":
                raise ConfigError(join(where, "host"),
                                  f"{host!r} is not an IP address") from None
    return tuple(hosts)


def _size(table: Mapping[str, Any], where: str) -> int | None:
    if "max_message_size" not in table:
        return _DEFAULT_SIZE
    size = optional(table, "max_message_size", where, int, "a number of octets")
    if size is not None and size < 1:
        raise ConfigError(join(where, "max_message_size"), "at least 1")
    return size  # type: ignore[no-any-return]


def _flag(table: Mapping[str, Any], name: str, where: str, default: bool) -> bool:
    value = optional(table, name, where, bool, "true or false")
    return default if value is None else bool(value)


def _msa(data: Mapping[str, Any]) -> MSASection | None:
    table = table_at(data, "msa", "")
    if table is None:
        return None
    no_unknown(table, {"host", "submission", "submissions", "relay", "max_message_size"}, "msa")
    section = MSASection(
        host=_hosts(table, "msa"),
        submission=port(table, "submission", "msa"),
        submissions=port(table, "submissions", "msa"),
        relay=_flag(table, "relay", "msa", "mta" in data),
        max_message_size=_size(table, "msa"),
    )
    if section.submission is None and section.submissions is None:
        raise ConfigError("msa", "give submission and/or submissions (ports)")
    return section


def _mta(data: Mapping[str, Any]) -> MTASection | None:
    table = table_at(data, "mta", "")
    if table is None:
        return None
    where = "mta"
    no_unknown(table, {"host", "port", "relay_domains", "relay_networks", "nameservers",
                       "dns_port", "outbound_port", "auth", "max_message_size"}, where)
    networks = tuple(table.get("relay_networks", []))
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except (ValueError, TypeError):
            raise ConfigError(f"{where}.relay_networks", f"{network!r} is no network") from None
    nameservers = None
    if "nameservers" in table:
        nameservers = tuple(str_list(table, "nameservers", where, "addresses"))
    relay_domains = tuple(table.get("relay_domains", []))
    if not all(isinstance(d, str) and d for d in relay_domains):
        raise ConfigError(f"{where}.relay_domains", "a list of domain names")
    dns_port = port(table, "dns_port", where)
    outbound = port(table, "outbound_port", where)
    return MTASection(
        host=_hosts(table, where),
        port=port(table, "port", where),
        relay_domains=relay_domains,
        relay_networks=networks,
        nameservers=nameservers,
        dns_port=53 if dns_port is None else dns_port,
        outbound_port=25 if outbound is None else outbound,
        auth=_flag(table, "auth", where, False),
        max_message_size=_size(table, where),
    )


def _lmtp(data: Mapping[str, Any], base: str) -> LMTPSection | None:
    table = table_at(data, "lmtp", "")
    if table is None:
        return None
    no_unknown(table, {"host", "port", "socket"}, "lmtp")
    socket_path = table.get("socket")
    if socket_path is not None and ("port" in table or "host" in table):
        raise ConfigError("lmtp", "give socket, or host and port, not both")
    number = port(table, "port", "lmtp")
    if socket_path is None and number is None:
        raise ConfigError("lmtp", "give port (and host) or socket")
    return LMTPSection(
        host=_hosts(table, "lmtp"),
        port=number,
        socket=path(socket_path, "lmtp.socket", base) if socket_path is not None else None,
    )


def _maa(data: Mapping[str, Any]) -> MAASection | None:
    table = table_at(data, "maa", "")
    if table is None:
        return None
    no_unknown(table, {"host", "pop3", "pop3s", "imap", "imaps", "allow_plaintext"}, "maa")
    section = MAASection(
        host=_hosts(table, "maa"),
        pop3=port(table, "pop3", "maa"),
        pop3s=port(table, "pop3s", "maa"),
        imap=port(table, "imap", "maa"),
        imaps=port(table, "imaps", "maa"),
        allow_plaintext=_flag(table, "allow_plaintext", "maa", False),
    )
    if all(p is None for p in (section.pop3, section.pop3s, section.imap, section.imaps)):
        raise ConfigError("maa", "give at least one of pop3, pop3s, imap, imaps (ports)")
    return section
