"""``python -m mailagents``: the demo server, run as a subprocess."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mailagents import __version__
from mailagents.__main__ import describe, parse_args
from mailagents.smtp import Envelope, MailParameters, Recipient, parse_forward_path, parse_path

ROOT = Path(__file__).resolve().parent.parent


def start(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    return subprocess.Popen(
        [sys.executable, "-m", "mailagents", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def read_lines(proc: subprocess.Popen[str], lines: list[str], done: threading.Event) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
    done.set()


def first_port(proc: subprocess.Popen[str], lines: list[str]) -> int:
    """Wait (bounded) for the first line and read the port from it."""
    for _ in range(200):
        if lines:
            break
        if proc.poll() is not None:
            break
        threading.Event().wait(0.05)
    assert lines, "the demo printed nothing"
    match = re.search(r"listening on 127\.0\.0\.1:(\d+) \(Ctrl-C to stop\)", lines[0])
    assert match, lines[0]
    return int(match.group(1))


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_demo_server_prints_messages(lmtp: bool) -> None:
    proc = start(*(["--lmtp"] if lmtp else []))
    lines: list[str] = []
    done = threading.Event()
    reader = threading.Thread(target=read_lines, args=(proc, lines, done), daemon=True)
    reader.start()
    try:
        port = first_port(proc, lines)
        assert lines[0].startswith(
            f"mailagents demo: {'LMTP' if lmtp else 'SMTP'} server listening"
        )
        client_class = smtplib.LMTP if lmtp else smtplib.SMTP
        # cpython's smtplib.LMTP reads one reply after the data whatever the number of
        # recipients (RFC 2033 wants one each): give it one recipient only.
        recipients = ["them@example.test"] if lmtp else ["you@example.test", "them@example.test"]
        with client_class("127.0.0.1", port, timeout=5) as client:
            refused = client.sendmail(
                "me@example.test",
                recipients,
                "Subject: a demo message\r\nFrom: me@example.test\r\n\r\nHello there.\r\n",
            )
        assert refused == {}
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        done.wait(timeout=5)
        output = "".join(lines)
        assert proc.returncode == 0, output
        assert "Subject: a demo message" in output
        assert "Hello there." in output
        assert "me@example.test" in output and "them@example.test" in output
        assert "smtplib" in lines[1]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_sigterm_stops_cleanly() -> None:
    proc = start()
    lines: list[str] = []
    done = threading.Event()
    threading.Thread(target=read_lines, args=(proc, lines, done), daemon=True).start()
    try:
        first_port(proc, lines)
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailagents", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"mailagents {__version__}"


def test_parse_args() -> None:
    args = parse_args(["--port", "0", "--lmtp", "--max-size", "1000"])
    assert (args.host, args.port, args.lmtp, args.max_size) == ("127.0.0.1", 0, True, 1000)
    with pytest.raises(SystemExit):
        parse_args(["--port", "70000"])
    with pytest.raises(SystemExit):
        parse_args(["--max-size", "0"])


def test_describe_long_body() -> None:
    envelope = Envelope(
        mail_from=parse_path("<me@example.test>"),
        mail_parameters=MailParameters(),
        recipients=(Recipient(path=parse_forward_path("<you@example.test>")),),
        size=10,
    )
    body = "".join(f"line {i}\r\n" for i in range(30))
    text = describe(envelope, f"Subject: =?utf-8?q?h=C3=A9?=\r\n\r\n{body}".encode())
    assert "Subject: hé" in text
    assert "line 9" in text and "line 10" not in text
    assert "more lines" in text
