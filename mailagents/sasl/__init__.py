"""SASL mechanisms (RFC 4422), both sides, sans-I/O: SCRAM-SHA-256, OAUTHBEARER, PLAIN,
LOGIN, and (legacy, off by default) CRAM-MD5.

Mechanisms exchange raw bytes; each protocol core (SMTP, POP3, IMAP) does its own
base64 and framing. A server mechanism asks the caller for what it needs
(:class:`NeedCredentials`, answered with :class:`PasswordVerdict`,
:class:`ScramSecrets`, :class:`LegacySecret` for CRAM-MD5, or :class:`NoSuchUser`;
:class:`NeedTokenCheck` for OAUTHBEARER, answered with :class:`TokenVerdict`) and ends
with :class:`Success` or :class:`Failure`; a client mechanism answers challenges and
verifies the server.
"""

from mailagents._protocol import LocalProtocolError, RemoteProtocolError
from mailagents.sasl._base import (
    Answer,
    AuthenticationError,
    Challenge,
    ClientMechanism,
    CredentialsAnswer,
    Failure,
    LegacySecret,
    NeedCredentials,
    NeedTokenCheck,
    NoSuchUser,
    PasswordVerdict,
    ScramSecrets,
    ServerMechanism,
    ServerStep,
    Success,
    TokenVerdict,
)
from mailagents.sasl._crammd5 import CramMd5Client, CramMd5Server
from mailagents.sasl._framing import decode_base64
from mailagents.sasl._login import LoginClient, LoginServer
from mailagents.sasl._oauthbearer import OAuthBearerClient, OAuthBearerServer
from mailagents.sasl._plain import PlainClient, PlainServer
from mailagents.sasl._registry import (
    CLIENT_MECHANISMS,
    LEGACY_SERVER_MECHANISMS,
    SERVER_MECHANISMS,
    server_mechanism,
)
from mailagents.sasl._saslprep import saslprep
from mailagents.sasl._scram import (
    MIN_ITERATIONS,
    ScramSha256Client,
    ScramSha256Server,
    scram_secrets,
)

__all__ = [
    "decode_base64",
    "CLIENT_MECHANISMS",
    "LEGACY_SERVER_MECHANISMS",
    "MIN_ITERATIONS",
    "SERVER_MECHANISMS",
    "Answer",
    "AuthenticationError",
    "Challenge",
    "ClientMechanism",
    "CramMd5Client",
    "CramMd5Server",
    "CredentialsAnswer",
    "Failure",
    "LegacySecret",
    "LocalProtocolError",
    "LoginClient",
    "LoginServer",
    "NeedCredentials",
    "NeedTokenCheck",
    "NoSuchUser",
    "OAuthBearerClient",
    "OAuthBearerServer",
    "PasswordVerdict",
    "PlainClient",
    "PlainServer",
    "RemoteProtocolError",
    "ScramSecrets",
    "ScramSha256Client",
    "ScramSha256Server",
    "ServerMechanism",
    "ServerStep",
    "Success",
    "TokenVerdict",
    "saslprep",
    "scram_secrets",
    "server_mechanism",
]
