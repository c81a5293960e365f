"""TLS helpers for the adapters: a self-signed certificate for demos and tests, and the
server and client ``ssl.SSLContext`` objects built the usual way."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SelfSignedCertificate",
    "client_context",
    "make_self_signed",
    "server_context",
]


@dataclass(frozen=True, slots=True)
class SelfSignedCertificate:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes

    def write(self, directory: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``cert.pem`` and ``key.pem`` (mode 0600) into ``directory``; return
        their paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        cert = directory / "cert.pem"
        key = directory / "key.pem"
        cert.write_bytes(self.cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.key_pem)
        return cert, key

    def server_context(self) -> ssl.SSLContext:
        """A server context loaded with this certificate."""
        with tempfile.TemporaryDirectory(prefix="mailagents-tls-") as tmp:
            cert, key = self.write(tmp)
            return server_context(cert, key)

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts exactly this certificate (verification on)."""
        context = ssl.create_default_context(cadata=self.cert_pem.decode("ascii"))
        return context


def make_self_signed(
    hostnames: Sequence[str] = ("localhost",),
    *,
    days: int = 30,
    addresses: Sequence[str] = ("127.0.0.1", "::1"),
) -> SelfSignedCertificate:
    """A fresh EC P-256 key and a self-signed certificate for ``hostnames`` (the first is
    the subject's common name) and ``addresses``, valid from now for ``days`` days."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    if not hostnames:
        raise ValueError("at least one host name is needed")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return SelfSignedCertificate(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def server_context(
    certfile: str | os.PathLike[str], keyfile: str | os.PathLike[str]
) -> ssl.SSLContext:
    """A server context: TLS 1.2 or newer, the standard library's default ciphers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


def client_context(*, verify: bool = True, cafile: str | None = None) -> ssl.SSLContext:
    """A client context that verifies the server's certificate and name (the default),
    or, with ``verify=False``, one that does not: for tests against self-signed
    certificates only."""
    if verify:
        return ssl.create_default_context(cafile=cafile)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
