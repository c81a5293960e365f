"""The mechanisms this package implements, by name."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from mailagents.sasl._base import ClientMechanism, ServerMechanism
from mailagents.sasl._plain import PlainClient, PlainServer
from mailagents.sasl._scram import ScramSha256Client, ScramSha256Server

__all__ = ["CLIENT_MECHANISMS", "SERVER_MECHANISMS", "server_mechanism"]

SERVER_MECHANISMS: Mapping[str, type[ServerMechanism]] = MappingProxyType(
    {cls.name: cls for cls in (ScramSha256Server, PlainServer)}
)
"""Server mechanism classes by upper-case name, strongest first."""

CLIENT_MECHANISMS: Mapping[str, type[ClientMechanism]] = MappingProxyType(
    {cls.name: cls for cls in (ScramSha256Client, PlainClient)}
)
"""Client mechanism classes by upper-case name, strongest first."""


def server_mechanism(name: str) -> ServerMechanism:
    """A fresh server mechanism for ``name`` (case-insensitive), with default settings.

    Raises :class:`KeyError` if the mechanism is unknown.
    """
    return SERVER_MECHANISMS[name.upper()]()
