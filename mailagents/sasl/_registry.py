"""The mechanisms this package implements, by name."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from mailagents.sasl._base import ClientMechanism, ServerMechanism
from mailagents.sasl._crammd5 import CramMd5Client, CramMd5Server
from mailagents.sasl._login import LoginClient, LoginServer
from mailagents.sasl._oauthbearer import OAuthBearerClient, OAuthBearerServer
from mailagents.sasl._plain import PlainClient, PlainServer
from mailagents.sasl._scram import ScramSha256Client, ScramSha256Server

__all__ = [
    "CLIENT_MECHANISMS",
    "LEGACY_SERVER_MECHANISMS",
    "SERVER_MECHANISMS",
    "server_mechanism",
]

SERVER_MECHANISMS: Mapping[str, type[ServerMechanism]] = MappingProxyType(
    {cls.name: cls for cls in (ScramSha256Server, OAuthBearerServer, PlainServer, LoginServer)}
)
"""Server mechanism classes by upper-case name, strongest first.

CRAM-MD5 is not here: see ``LEGACY_SERVER_MECHANISMS``.
"""

LEGACY_SERVER_MECHANISMS: Mapping[str, type[ServerMechanism]] = MappingProxyType(
    {cls.name: cls for cls in (CramMd5Server,)}
)
"""Server mechanisms that only an explicit choice enables: CRAM-MD5 (RFC 2195).

CRAM-MD5 needs the server to keep a plaintext-equivalent secret for each user (its HMAC
is keyed with the password itself), so a leaked store gives away every account and it
works only for users whose entry was made with a legacy-secret option. It is never
returned by :func:`server_mechanism` unless ``allow_legacy=True``.
"""

CLIENT_MECHANISMS: Mapping[str, type[ClientMechanism]] = MappingProxyType(
    {
        cls.name: cls
        for cls in (
            ScramSha256Client,
            OAuthBearerClient,
            PlainClient,
            LoginClient,
            CramMd5Client,
        )
    }
)
"""Client mechanism classes by upper-case name, in order of preference.

The constructors differ: the password mechanisms take ``(authcid, password)``,
:class:`~mailagents.sasl.OAuthBearerClient` takes a bearer token. CRAM-MD5 comes last:
use it only with a server that offers nothing else.
"""


def server_mechanism(name: str, *, allow_legacy: bool = False) -> ServerMechanism:
    """A fresh server mechanism for ``name`` (case-insensitive), with default settings.

    Mechanisms of ``LEGACY_SERVER_MECHANISMS`` (CRAM-MD5) are found only with
    ``allow_legacy=True``. Raises :class:`KeyError` if the mechanism is unknown (or
    legacy and not allowed).
    """
    key = name.upper()
    if allow_legacy and key in LEGACY_SERVER_MECHANISMS:
        return LEGACY_SERVER_MECHANISMS[key]()
    return SERVER_MECHANISMS[key]()
