"""The MRA's TLS: implicit TLS to our MAA with its self-signed certificate (trusted
through ``ca_file``, or ``verify=False``; refused when not trusted), STARTTLS/STLS
where offered, and a server that offers no STARTTLS: an error, never a login in the
clear. ``tls="none"`` logs in with plaintext (where the server allows it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.agents.test_mra import (
    CERT,
    Remote,
    account,
    local,
    local_numbers,
    make_mra,
    run,
    serving,
)


def ca_file(root: Path) -> str:
    path = root / "ca.pem"
    path.write_bytes(CERT.cert_pem)
    return str(path)


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
@pytest.mark.parametrize("how", ["ca_file", "no-verify"])
def test_implicit_tls(tmp_path: Path, protocol: str, how: str) -> None:
    remote = Remote(tmp_path)
    remote.put(1, 2)

    async def main() -> None:
        async with serving(tmp_path, allow_plaintext=False) as maa, \
                local(tmp_path) as delivery:
            port = maa.pop3s_port if protocol == "pop3" else maa.imaps_port
            trust = {"ca_file": ca_file(tmp_path)} if how == "ca_file" else {"verify": False}
            acct = account(maa, protocol, port=port, tls="implicit", **trust)
            report, = await make_mra(tmp_path, [acct], delivery).run_once()
            assert report.error is None and len(report.fetched) == 2

    run(main())
    assert local_numbers(tmp_path) == [1, 2]


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_starttls(tmp_path: Path, protocol: str) -> None:
    remote = Remote(tmp_path)
    remote.put(1)

    async def main() -> None:
        async with serving(tmp_path, allow_plaintext=False) as maa, \
                local(tmp_path) as delivery:
            acct = account(maa, protocol, tls="starttls", ca_file=ca_file(tmp_path))
            report, = await make_mra(tmp_path, [acct], delivery).run_once()
            assert report.error is None and len(report.fetched) == 1

    run(main())
    assert local_numbers(tmp_path) == [1]


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_an_untrusted_certificate_is_refused(tmp_path: Path, protocol: str) -> None:
    remote = Remote(tmp_path)
    remote.put(1)

    async def main() -> None:
        async with serving(tmp_path) as maa, local(tmp_path) as delivery:
            port = maa.pop3s_port if protocol == "pop3" else maa.imaps_port
            implicit = account(maa, protocol, name="implicit", port=port, tls="implicit")
            starttls = account(maa, protocol, name="starttls", tls="starttls")
            reports = await make_mra(tmp_path, [implicit, starttls], delivery).run_once()
            for report in reports:
                assert report.error is not None and "certificate" in report.error.lower()
                assert report.fetched == ()

    run(main())
    assert local_numbers(tmp_path) == []
    assert remote.numbers() == [1]


def test_without_tls_only_scram(tmp_path: Path) -> None:
    """tls="none" to a server that takes passwords only over TLS: PLAIN is refused,
    SCRAM-SHA-256 (the default choice, no password on the wire) logs in."""
    Remote(tmp_path).put(1)

    async def main() -> None:
        async with serving(tmp_path, allow_plaintext=False) as maa, \
                local(tmp_path) as delivery:
            plain = [account(maa, p, name=f"{p}-plain", mechanism="PLAIN")
                     for p in ("pop3", "imap")]
            for report in await make_mra(tmp_path, plain, delivery).run_once():
                assert report.error is not None and report.fetched == ()
            scram = account(maa, "imap", name="imap-scram")
            report, = await make_mra(tmp_path, [scram], delivery).run_once()
            assert report.error is None and len(report.fetched) == 1

    run(main())
    assert local_numbers(tmp_path) == [1]


# --- a server without STARTTLS ---------------------------------------------------------------


class Plain:
    """A POP3 or IMAP server that offers no STARTTLS/STLS and would take any login: it
    records every line it receives."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.received: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Plain:
        self.server = await asyncio.start_server(self.session, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pop3 = self.protocol == "pop3"
        writer.write(b"+OK ready\r\n" if pop3 else
                     b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN IDLE] ready\r\n")
        try:
            for _ in range(20):
                line = await asyncio.wait_for(reader.readline(), 10)
                if not line:
                    break
                self.received.append(line)
                word = line.split()[0 if pop3 else 1].upper() if line.split() else b""
                if word in (b"PASS", b"AUTH", b"LOGIN", b"AUTHENTICATE"):
                    break  # seen what the test looks for
                if pop3:
                    writer.write(b"+OK\r\nUSER\r\nUIDL\r\nSASL PLAIN\r\n.\r\n" if word == b"CAPA"
                                 else b"+OK\r\n")
                else:
                    tag = line.split()[0]
                    if word == b"CAPABILITY":
                        writer.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN IDLE\r\n")
                    writer.write(tag + b" OK done\r\n")
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_no_starttls_offered_is_an_error(tmp_path: Path, protocol: str) -> None:
    async def main() -> None:
        async with Plain(protocol) as server, local(tmp_path) as delivery:
            acct = account(None, protocol, port=server.port, tls="starttls")
            report, = await make_mra(tmp_path, [acct], delivery).run_once()
            assert report.error is not None and "TLS" in report.error
        sent = b"".join(server.received).upper()
        assert b"PASS" not in sent and b"LOGIN" not in sent and b"AUTH" not in sent
        assert b"PW" not in sent

    run(main())


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_tls_none_logs_in_in_the_clear(tmp_path: Path, protocol: str) -> None:
    """The same server with tls="none": the password goes as it is (which is why that
    mode is for loopback test servers)."""

    async def main() -> None:
        async with Plain(protocol) as server, local(tmp_path) as delivery:
            acct = account(None, protocol, port=server.port, tls="none", timeout=3.0)
            await make_mra(tmp_path, [acct], delivery).run_once()
        sent = b"".join(server.received).upper()
        assert b"AUTH" in sent or b"LOGIN" in sent or b"PASS" in sent

    run(main())
