"""The whole chain through real programs, each agent run by ``python -m mailagents
serve --config FILE`` as a user would:

    swaks --AUTH--> MSA A --queue--> MTA A ==MX in Knot DNS==> MTA B --> MDA B --> Maildir
                                                        (or via Postfix: transport map)
    Maildir <-- MAA B <-- imaplib, s-nail (IMAPS), fetchmail (IMAPS, into our MDA)

and Postfix handing mail for its domain to MDA B over LMTP. Checked each time: the
body and every original header arrive unchanged under the trace fields (RFC 5321
§4.4: a relay adds Received: and changes nothing else), and the Received: chain names
every hop in order, newest first.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailagents._cli_demo import write_clients
from mailagents.aio import make_self_signed
from mailagents.userdb import PasswordFile

from .peers import running_knot, running_postfix, shared_port

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parent.parent.parent
A, B, POSTFIX = "127.0.0.1", "127.0.0.2", "127.0.0.3"


def zone(origin: str, records: str) -> str:
    return (f"$ORIGIN {origin}.\n$TTL 60\n@ SOA ns hostmaster 1 3600 600 86400 60\n"
            f"@ NS ns\nns A 127.0.0.1\n{records}")


ZONES = {
    "b.test": zone("b.test", f"@ MX 10 mx\nmx A {B}\n"),
    # c.test's MX is Postfix, which relays to B by its transport map.
    "c.test": zone("c.test", f"@ MX 10 mx\nmx A {POSTFIX}\n"),
}

MESSAGE = (
    "From: Alice <alice@a.test>\r\n"
    "To: Bob <bob@{domain}>\r\n"
    "Subject: the whole chain\r\n"
    "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
    "Message-ID: <chain-{domain}@a.test>\r\n"
    "X-Folded: one\r\n\ttwo\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "Hello Bob.\r\n"
    ".a line that starts with a dot\r\n"
    "From the start of a line.\r\n"
    "Bye.\r\n"
)


@dataclass
class Instance:
    """One ``serve`` process and its folder."""

    folder: Path
    proc: subprocess.Popen[str]
    ports: dict[str, int]

    def maildir(self, user: str) -> Path:
        return self.folder / "mail" / user / "Maildir"


def site(folder: Path, users: dict[str, str], aliases: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    make_self_signed(["localhost"], addresses=("127.0.0.1", B)).write(folder / "tls")
    passwords = PasswordFile(folder / "users", scrypt_n=2**8)
    for user, password in users.items():
        passwords.set_password(user, password)
    passwords.close()
    (folder / "aliases").write_text(aliases)


def start(folder: Path, config: str, expect: int) -> Instance:
    (folder / "serve.toml").write_text(config)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailagents", "serve", "--config", "serve.toml"],
        cwd=folder, stdout=subprocess.PIPE, stderr=open(folder / "log", "w"),  # noqa: SIM115
        text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    ports: dict[str, int] = {}
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while len(ports) < expect and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        found = re.match(r"listening: (.+) [\d.]+:(\d+)$", line.strip())
        if found:
            ports[found.group(1)] = int(found.group(2))
    if len(ports) < expect:
        proc.kill()
        raise AssertionError(f"serve did not start: {(folder / 'log').read_text()}")
    return Instance(folder=folder, proc=proc, ports=ports)


def stop(instance: Instance) -> None:
    proc = instance.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.stdout is not None
    proc.stdout.close()


TLS = '[tls]\ncert = "tls/cert.pem"\nkey = "tls/key.pem"\n[users]\npasswords = "users"\n'


@pytest.fixture(scope="module")
def port() -> int:
    """The port every MTA and Postfix listens on, each on its own address."""
    return shared_port((A, B, POSTFIX))


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, port: int) -> Iterator[
        tuple[Instance, Instance, int]]:
    for program in ("knotd", "swaks", "postfix"):
        if shutil.which(program) is None and not Path(f"/usr/sbin/{program}").exists():
            pytest.skip(f"{program} is not installed")
    base = tmp_path_factory.mktemp("chain")
    with contextlib.ExitStack() as stack:
        knot = stack.enter_context(running_knot(ZONES))
        lmtp_port = shared_port((B,))
        b_folder = base / "b"
        site(b_folder, {"bob@b.test": "bob-secret"},
             "postmaster: bob@b.test\nbob@c.test: bob@b.test\nbob@example.test: bob@b.test\n"
             "postmaster@example.test: bob@b.test\npostmaster@c.test: bob@b.test\n")
        b = start(b_folder, f"""hostname = "mx.b.test"
{TLS}[local]
domains = ["b.test", "c.test", "example.test"]
aliases = "aliases"
[mta]
host = "{B}"
port = {port}
[lmtp]
host = "{B}"
port = {lmtp_port}
[maa]
host = "{B}"
imap = 0
imaps = 0
""", expect=4)
        stack.callback(stop, b)
        a_folder = base / "a"
        site(a_folder, {"alice@a.test": "alice-secret"}, "postmaster: alice@a.test\n")
        a = start(a_folder, f"""hostname = "mx.a.test"
{TLS}[local]
domains = ["a.test"]
aliases = "aliases"
[msa]
host = "{A}"
submission = 0
[mta]
host = "{A}"
nameservers = ["127.0.0.1"]
dns_port = {knot.port}
outbound_port = {port}
""", expect=1)
        stack.callback(stop, a)
        yield a, b, lmtp_port


def swaks(a: Instance, domain: str, tmp_path: Path) -> None:
    data = tmp_path / "message.eml"
    # swaks ends the data with CRLF . CRLF after the file: without the file's last line
    # end, what arrives is MESSAGE exactly.
    data.write_bytes(MESSAGE.format(domain=domain).encode().removesuffix(b"\r\n"))
    done = subprocess.run(
        ["swaks", "--server", f"{A}:{a.ports['msa submission']}", "--tls",
         "--auth-user", "alice@a.test", "--auth-password", "alice-secret",
         "--from", "alice@a.test", "--to", f"bob@{domain}", "--data", f"@{data}"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def wait_for_message(maildir: Path, marker: bytes, timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for sub in ("new", "cur"):
            folder = maildir / sub
            if folder.is_dir():
                for path in folder.iterdir():
                    content = path.read_bytes()
                    if marker in content:
                        return content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        time.sleep(0.1)
    raise AssertionError(f"no message with {marker!r} in {maildir}")


def trace_and_rest(content: bytes) -> tuple[list[bytes], bytes]:
    """The trace fields on top (Return-Path, Delivered-To, Received, folded lines
    joined), and the rest of the message."""
    fields: list[bytes] = []
    rest = content
    while True:
        line, sep, after = rest.partition(b"\r\n")
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += b" " + line.strip()
        elif line.split(b":", 1)[0].lower() in (b"return-path", b"delivered-to", b"received"):
            fields.append(line)
        else:
            return fields, rest
        rest = after


def received(fields: list[bytes]) -> list[bytes]:
    return [f for f in fields if f.lower().startswith(b"received:")]


def unverified() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def test_swaks_msa_mta_by_mx_to_our_second_instance_read_back_three_ways(
    chain: tuple[Instance, Instance, int], tmp_path: Path
) -> None:
    a, b, _ = chain
    swaks(a, "b.test", tmp_path)
    stored = wait_for_message(b.maildir("bob@b.test"), b"<chain-b.test@a.test>")
    fields, rest = trace_and_rest(stored)
    assert rest == MESSAGE.format(domain="b.test").encode()  # nothing changed
    assert fields[0] == b"Return-Path: <alice@a.test>"
    hops = received(fields)
    assert len(hops) == 2, fields
    assert b"by mx.b.test" in hops[0] and b"from mx.a.test" in hops[0]  # newest first
    assert b"by mx.a.test" in hops[1] and b"with ESMTPSA" in hops[1]

    # imaplib over STARTTLS
    imap = imaplib.IMAP4(B, b.ports["maa imap"], timeout=10)
    imap.starttls(unverified())
    imap.login("bob@b.test", "bob-secret")
    imap.select("INBOX", readonly=True)
    number = imap.search(None, "HEADER", "Message-ID", "chain-b.test@a.test")[1][0].split()[0]
    read = imap.fetch(number, "(BODY.PEEK[])")[1][0][1]  # type: ignore[index]
    imap.logout()
    assert read == stored

    # s-nail and fetchmail over IMAPS, as the demo tells its user to run them.
    cert = b.folder / "tls" / "cert.pem"
    clients = write_clients(tmp_path, host=B, user="bob@b.test", password="bob-secret",
                            cert=cert, submission_port=1, mta_port=1,
                            imaps_port=b.ports["maa imaps"])
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "LC_ALL": "C.UTF-8", "MAILRC": "/dev/null", "PYTHONPATH": str(ROOT)}
    if shutil.which("s-nail"):
        snail = clients.snail.replace("echo headers", "printf 'print 1\\n'")
        done = subprocess.run(snail, shell=True, capture_output=True, text=True, timeout=60,
                              env=env, check=False)
        assert done.returncode == 0, done.stderr
        assert "the whole chain" in done.stdout and "From the start of a line." in done.stdout
    if shutil.which("fetchmail"):
        command = clients.fetchmail.split("    #", 1)[0]
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60,
                              env=env, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        fetched = wait_for_message(tmp_path / "fetched" / "bob@b.test" / "Maildir",
                                   b"<chain-b.test@a.test>", timeout=10)
        assert fetched.endswith(stored.split(b"\r\n\r\n", 1)[1])  # the body, whole
        assert b"Message-ID: <chain-b.test@a.test>\r\nX-Folded: one\r\n\ttwo\r\n" in fetched


def test_postfix_as_the_middle_relay(
    chain: tuple[Instance, Instance, int], port: int, tmp_path: Path
) -> None:
    a, b, _ = chain
    with running_postfix(host=POSTFIX, port=port, transport_map=f"c.test smtp:[{B}]:{port}\n"):
        swaks(a, "c.test", tmp_path)
        stored = wait_for_message(b.maildir("bob@b.test"), b"<chain-c.test@a.test>")
    fields, rest = trace_and_rest(stored)
    assert rest == MESSAGE.format(domain="c.test").encode()
    hops = received(fields)
    assert len(hops) == 3, fields
    assert b"by mx.b.test" in hops[0]
    assert b"(Postfix)" in hops[1] and b"from mx.a.test" in hops[1]
    assert b"by mx.a.test" in hops[2] and b"with ESMTPSA" in hops[2]


def test_postfix_delivers_to_our_mda_over_lmtp(
    chain: tuple[Instance, Instance, int], tmp_path: Path
) -> None:
    _, b, lmtp_port = chain
    with running_postfix(transport=f"lmtp:inet:{B}:{lmtp_port}") as postfix:
        import smtplib

        with smtplib.SMTP("127.0.0.1", postfix.port, timeout=10) as smtp:
            smtp.sendmail("someone@elsewhere.test", ["bob@example.test"],
                          MESSAGE.format(domain="example.test").encode())
        stored = wait_for_message(b.maildir("bob@b.test"), b"<chain-example.test@a.test>")
    fields, rest = trace_and_rest(stored)
    assert rest == MESSAGE.format(domain="example.test").encode()
    assert b"Delivered-To: bob@b.test" in fields  # the alias bob@example.test, resolved
    hops = received(fields)
    assert len(hops) == 2, fields
    assert b"by mx.b.test" in hops[0] and b"LMTP" in hops[0], hops
    assert b"(Postfix)" in hops[1], hops
