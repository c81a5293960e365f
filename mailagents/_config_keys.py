"""Reading TOML tables with errors that name their key (``account[1].port: must be a
port number``): shared by the MRA's configuration and ``python -m mailagents serve``."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Collection, Mapping
from typing import Any

__all__ = [
    "ConfigError",
    "read_toml",
    "host_port",
    "no_unknown",
    "optional",
    "path",
    "required_str",
    "str_list",
]


class ConfigError(ValueError):
    """A configuration error; ``key`` is the path of the key at fault (``""`` for the
    file as a whole)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        """Where: ``account[0].port``."""


def read_toml(file: str | os.PathLike[str]) -> tuple[dict[str, Any], str]:
    """The parsed file and its folder (where relative paths start); a syntax error
    gives tomllib's line and column."""
    name = os.path.abspath(os.fspath(file))
    try:
        with open(name, "rb") as f:
            return tomllib.load(f), os.path.dirname(name)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"TOML syntax: {exc}") from exc
    except OSError as exc:
        raise ConfigError("", f"cannot read {name}: {exc.strerror or exc}") from exc


def join(where: str, name: str) -> str:
    """The key path of ``name`` inside ``where``."""
    return f"{where}.{name}" if where else name


def no_unknown(table: Mapping[str, Any], known: Collection[str], where: str) -> None:
    """Refuse a key of ``table`` that is not in ``known``."""
    for name in table:
        if name not in known:
            raise ConfigError(join(where, name), "unknown key")


def table_at(data: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any] | None:
    """The sub-table ``name`` (``None`` when absent); an error if it is no table."""
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(join(where, name), "must be a table")
    return value


def path(value: Any, key: str, base: str) -> str:
    """A path, relative ones taken from ``base`` (``~`` expanded)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(key, "must be a path (a non-empty string)")
    return os.path.join(base, os.path.expanduser(value))


def required_str(table: Mapping[str, Any], name: str, key: str, default: str | None = None
                 ) -> str:
    """The non-empty string ``table[name]`` (or ``default``)."""
    value = table.get(name, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(join(key, name), "required, a non-empty string")
    return value


def optional(table: Mapping[str, Any], name: str, key: str, kind: type, what: str) -> Any:
    """``table[name]`` if it is a ``kind`` (an int is taken for a float; a bool is no
    int), ``None`` when absent."""
    value = table.get(name)
    if value is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(join(key, name), f"must be {what}")
    return value


def str_list(table: Mapping[str, Any], name: str, key: str, what: str,
             default: list[str] | None = None) -> list[str]:
    """A non-empty list of non-empty strings."""
    value = table.get(name, default)
    if not isinstance(value, list) or not value or not all(
        isinstance(v, str) and v for v in value
    ):
        raise ConfigError(join(key, name), f"a list of {what}")
    return value


def port(table: Mapping[str, Any], name: str, key: str) -> int | None:
    """A port number from 0 (any free port) to 65535, ``None`` when absent."""
    value = optional(table, name, key, int, "a port number")
    if value is not None and not 0 <= value <= 65535:
        raise ConfigError(join(key, name), "from 0 to 65535")
    return value  # type: ignore[no-any-return]


def host_port(value: Any, key: str) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:24"`` for IPv6) as a pair."""
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(key, "must be 'host:port'")
    host, _, number = value.rpartition(":")
    host = host.strip("[]")
    if not host or not number.isdigit() or not 0 < int(number) < 65536:
        raise ConfigError(key, "must be 'host:port' with a port from 1 to 65535")
    return host, int(number)
