"""The self-signed certificate helper and the contexts, over a real TLS handshake."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from mailagents.aio.tls import client_context, make_self_signed


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str) -> str:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    result: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), 5) as raw,
            client.wrap_socket(raw, server_hostname=name) as tls,
        ):
            result.append(tls.recv(2).decode())
            result.append(tls.version() or "")
    finally:
        thread.join(5)
        listener.close()
    return " ".join(result)


def test_self_signed_certificate_verifies_for_its_names(tmp_path: Path) -> None:
    cert = make_self_signed(["mx.example.test", "localhost"], days=1)
    assert b"BEGIN CERTIFICATE" in cert.cert_pem and b"PRIVATE KEY" in cert.key_pem
    out = handshake(cert.server_context(), cert.client_context(), "mx.example.test")
    assert out.startswith("ok TLSv1.")
    certfile, keyfile = cert.write(tmp_path)
    assert oct(keyfile.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(cert.server_context(), cert.client_context(), "other.example.test")
    # Verification is on by default: the system trust store does not know it.
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(cert.server_context(), client_context(), "localhost")
    assert handshake(cert.server_context(), client_context(verify=False), "x").startswith("ok")


def test_no_hostnames_is_an_error() -> None:
    with pytest.raises(ValueError):
        make_self_signed([])
