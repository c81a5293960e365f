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


# --------------------------------------------------------------------------- passwd


def passwd(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "mailagents", "passwd", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_passwd_set_check_delete(tmp_path: Path) -> None:
    users = tmp_path / "users"
    secret = "Sub-Command-Secret 1"
    result = passwd(str(users), "alice", "--password-stdin", "--act-as", "pm", stdin=secret + "\n")
    assert result.returncode == 0, result.stderr
    assert "alice" in result.stdout
    assert secret not in result.stdout + result.stderr
    assert secret.encode() not in users.read_bytes()
    assert (users.stat().st_mode & 0o777) == 0o600

    from mailagents.userdb import PasswordFile

    entry = PasswordFile(users).lookup("alice")
    assert entry is not None and entry.may_act_as == frozenset({"pm"})
    assert entry.legacy_secret is None

    good = passwd(str(users), "alice", "--password-stdin", "--check", stdin=secret + "\n")
    assert good.returncode == 0, good.stderr
    bad = passwd(str(users), "alice", "--password-stdin", "--check", stdin="Not-It-7\n")
    assert bad.returncode == 1
    unknown = passwd(str(users), "bob", "--password-stdin", "--check", stdin=secret + "\n")
    assert unknown.returncode == 1
    for out in (good, bad, unknown):
        assert secret not in out.stdout + out.stderr and "Not-It-7" not in out.stdout + out.stderr

    deleted = passwd(str(users), "alice", "--delete")
    assert deleted.returncode == 0, deleted.stderr
    again = passwd(str(users), "alice", "--delete")
    assert again.returncode == 1
    after = passwd(str(users), "alice", "--password-stdin", "--check", stdin=secret + "\n")
    assert after.returncode == 1


def test_passwd_legacy_secret_and_errors(tmp_path: Path) -> None:
    users = tmp_path / "users"
    result = passwd(str(users), "old", "--password-stdin", "--legacy-secret", stdin="pw\r\n")
    assert result.returncode == 0, result.stderr
    assert "plaintext-equivalent" in result.stdout

    from mailagents.userdb import PasswordFile

    entry = PasswordFile(users).lookup("old")
    assert entry is not None and entry.legacy_secret == "pw"
    empty = passwd(str(users), "bob", "--password-stdin", stdin="")
    assert empty.returncode == 1 and "no password" in empty.stderr
    bad_name = passwd(str(users), "a:b", "--password-stdin", stdin="pw\n")
    assert bad_name.returncode == 1 and "':'" in bad_name.stderr
    usage = passwd(str(users), "bob", "--delete", "--check")
    assert usage.returncode == 2
    usage = passwd(str(users), "bob", "--check", "--act-as", "x")
    assert usage.returncode == 2
    assert PasswordFile(users).users() == ["old"]


def test_passwd_interactive(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import mailagents.__main__ as cli

    users = tmp_path / "users"
    answers = iter(["typed password", "typed password", "mismatch", "other", "typed password"])
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": next(answers))
    assert cli.main(["passwd", str(users), "carol"]) == 0
    assert cli.main(["passwd", str(users), "dave"]) == 1  # the two entries differ
    assert cli.main(["passwd", str(users), "carol", "--check"]) == 0
    from mailagents.userdb import PasswordFile

    assert PasswordFile(users).users() == ["carol"]


def test_parse_passwd_args() -> None:
    from mailagents.__main__ import parse_passwd_args

    args = parse_passwd_args(["f", "u", "--act-as", "a", "--act-as", "b", "--legacy-secret"])
    assert (args.file, args.user, args.act_as, args.legacy_secret) == ("f", "u", ["a", "b"], True)
    assert parse_passwd_args(["f", "u"]).act_as is None
    with pytest.raises(SystemExit):
        parse_passwd_args(["f", "u", "--delete", "--password-stdin"])
