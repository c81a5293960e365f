"""SASL mechanisms (RFC 4422), both sides, sans-I/O: PLAIN and SCRAM-SHA-256.

Mechanisms exchange raw bytes; each protocol core (SMTP, POP3, IMAP) does its own
base64 and framing. A server mechanism asks the caller for what it needs
(:class:`NeedCredentials`, answered with :class:`PasswordVerdict`,
:class:`ScramSecrets` or :class:`NoSuchUser`) and ends with :class:`Success` or
:class:`Failure`; a client mechanism answers challenges and verifies the server.
"""

from mailagents._protocol import LocalProtocolError, RemoteProtocolError
from mailagents.sasl._base import (
    AuthenticationError,
    Challenge,
    ClientMechanism,
    CredentialsAnswer,
    Failure,
    NeedCredentials,
    NoSuchUser,
    PasswordVerdict,
    ScramSecrets,
    ServerMechanism,
    ServerStep,
    Success,
)
from mailagents.sasl._plain import PlainClient, PlainServer
from mailagents.sasl._registry import CLIENT_MECHANISMS, SERVER_MECHANISMS, server_mechanism
from mailagents.sasl._saslprep import saslprep
from mailagents.sasl._scram import (
    MIN_ITERATIONS,
    ScramSha256Client,
    ScramSha256Server,
    scram_secrets,
)

__all__ = [
    "CLIENT_MECHANISMS",
    "MIN_ITERATIONS",
    "SERVER_MECHANISMS",
    "AuthenticationError",
    "Challenge",
    "ClientMechanism",
    "CredentialsAnswer",
    "Failure",
    "LocalProtocolError",
    "NeedCredentials",
    "NoSuchUser",
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
    "saslprep",
    "scram_secrets",
    "server_mechanism",
]
