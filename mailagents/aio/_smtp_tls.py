"""The SMTP client's TLS policy (what to require of a server, per destination) and the
outcome it reports per connection; exported from :mod:`mailagents.aio`.

An MTA relaying mail picks a :class:`TLSPolicy` per destination: opportunistic by
default (RFC 7435: encrypt when the server offers it, without authenticating it, as
no name to check against is trustworthy from plain MX records), verified where the
MTA knows it must be (a configured destination, later MTA-STS (RFC 8461) or DANE
(RFC 7672), which would hand over a policy of their own making). The policy is a plain
value: the agent decides, the adapter only carries it out.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass, field
from typing import Literal

from mailagents.aio.tls import client_context

__all__ = ["TLSOutcome", "TLSPolicy", "unverified_context"]

TLSMode = Literal["none", "opportunistic", "required", "verified"]
HandshakeFailure = Literal["defer", "plaintext"]


def unverified_context() -> ssl.SSLContext:
    """A client context that encrypts without checking the certificate or the name
    (RFC 7435 opportunistic security), TLS 1.2 or newer (RFC 8996 retires 1.0/1.1)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSPolicy:
    """What :meth:`SMTPClient.connect(..., tls_policy=...) <SMTPClient.connect>`
    requires of the server's TLS (STARTTLS, RFC 3207).

    ``mode``:

    * ``"none"``: never STARTTLS (the session stays in plaintext);
    * ``"opportunistic"`` (the default, MTA to MTA: RFC 7435): STARTTLS when the
      server offers it, the certificate not checked; plaintext when it is not
      offered, or refused with a reply other than 220;
    * ``"required"``: STARTTLS must be offered and succeed
      (:class:`SMTPTLSError` otherwise), the certificate not checked;
    * ``"verified"``: as ``"required"``, and the certificate must verify against
      the server's host name with ``ssl_context``.

    ``ssl_context`` is the context of the handshake: by default
    :func:`~mailagents.aio.client_context` (the system's authorities) for
    ``"verified"``, and for the other modes one that does not verify, TLS 1.2 or
    newer. ``server_hostname`` is the name sent (SNI) and, for ``"verified"``,
    checked; by default the ``server_hostname`` given to ``connect``, else its
    ``host``.

    ``on_handshake_failure`` says what a failed handshake (a TLS error, the
    connection lost or timed out during it) leads to: ``"defer"`` raises
    :class:`SMTPTLSError` (a queue tries again later); ``"plaintext"``, only for
    ``"opportunistic"``, connects once more and goes on without TLS: an explicit
    step, logged at WARNING and reported as :attr:`SMTPClient.tls_downgraded`, for
    the servers whose TLS is broken, never a silent downgrade (RFC 7435 §3:
    opportunistic security puts getting the message through first).
    """

    mode: TLSMode = "opportunistic"
    ssl_context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    on_handshake_failure: HandshakeFailure = "defer"

    def __post_init__(self) -> None:
        if self.mode not in ("none", "opportunistic", "required", "verified"):
            raise ValueError(f"unknown TLS mode {self.mode!r}")
        if self.on_handshake_failure not in ("defer", "plaintext"):
            raise ValueError(f"unknown on_handshake_failure {self.on_handshake_failure!r}")
        if self.on_handshake_failure == "plaintext" and self.mode != "opportunistic":
            raise ValueError("a plaintext retry only fits the opportunistic mode")
        if self.ssl_context is not None and not isinstance(self.ssl_context, ssl.SSLContext):
            raise ValueError("ssl_context must be an ssl.SSLContext")
        if self.ssl_context is not None and self.mode == "none":
            raise ValueError("mode 'none' uses no ssl_context")

    @property
    def starttls(self) -> bool | None:
        """The ``starttls`` choice this policy amounts to: ``None`` (when offered),
        ``True`` (required) or ``False`` (never)."""
        return {"none": False, "opportunistic": None}.get(self.mode, True)

    def context(self) -> ssl.SSLContext:
        """The context for the handshake (see the class)."""
        if self.ssl_context is not None:
            return self.ssl_context
        if self.mode == "verified":
            return client_context()
        return unverified_context()


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSOutcome:
    """How one connection's TLS turned out (:attr:`SMTPClient.tls`)."""

    version: str
    """The protocol version, ``"TLSv1.3"``."""
    cipher: str
    """The cipher suite's (OpenSSL) name, ``"TLS_AES_256_GCM_SHA384"``."""
    bits: int
    """The secret bits of the cipher."""
    algorithm_bits: int
    """The bits of the cipher's algorithm (the same as ``bits`` for modern ciphers)."""
    verified: bool
    """Whether the certificate and the server's name were verified (a context with
    ``CERT_REQUIRED`` and ``check_hostname``): false for opportunistic TLS."""
    server_hostname: str | None
    """The name sent with SNI (and checked when ``verified``)."""
    peer_certificate: bytes | None = field(default=None, repr=False)
    """The server's certificate, DER, or ``None`` when it sent none."""
    implicit: bool = False
    """Whether TLS came first (RFC 8314, port 465) rather than after STARTTLS."""

    @property
    def subject(self) -> str | None:
        """The certificate's subject (RFC 4514, ``"CN=mx.example.net"``), or ``None``."""
        names = _names(self.peer_certificate)
        return names[0] if names is not None else None

    @property
    def issuer(self) -> str | None:
        """The certificate's issuer (RFC 4514), or ``None``."""
        names = _names(self.peer_certificate)
        return names[1] if names is not None else None

    def received_comment(self) -> str:
        """The comment for a ``Received:`` field (RFC 8314 §7 asks that the use of TLS
        be recorded there), in the form Postfix writes:
        ``"(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))"``."""
        return (
            f"(using {self.version} with cipher {self.cipher} "
            f"({self.bits}/{self.algorithm_bits} bits))"
        )

    def __str__(self) -> str:
        checked = "verified" if self.verified else "not verified"
        subject = self.subject
        peer = f", certificate {subject}" if subject else ""
        return (
            f"{self.version} with {self.cipher} ({self.bits} bits), {checked}"
            f"{peer}, server name {self.server_hostname}"
        )

    @classmethod
    def of(
        cls,
        ssl_object: ssl.SSLObject | ssl.SSLSocket,
        context: ssl.SSLContext,
        *,
        server_hostname: str | None,
        implicit: bool,
    ) -> TLSOutcome:
        """The outcome of a finished handshake on ``ssl_object`` with ``context``."""
        cipher = ssl_object.cipher()
        name, _, bits = cipher if cipher is not None else ("", "", 0)
        algorithm_bits = next(
            (c.get("alg_bits", bits) for c in context.get_ciphers() if c.get("name") == name),
            bits,
        )
        return cls(
            version=ssl_object.version() or "",
            cipher=name,
            bits=int(bits or 0),
            algorithm_bits=int(algorithm_bits or 0),
            verified=context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname,
            server_hostname=server_hostname,
            peer_certificate=ssl_object.getpeercert(binary_form=True),
            implicit=implicit,
        )


@functools.lru_cache(maxsize=64)
def _names(der: bytes | None) -> tuple[str, str] | None:
    """(subject, issuer) of a DER certificate, parsed on demand."""
    if der is None:
        return None
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
        return cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
    except ValueError:
        return None
