"""``python -m mailagents deliver`` and ``lmtp`` (mailagents/_cli_mda.py): a message on
standard input delivered to local users with sendmail-style exit statuses, and the LMTP
server run from the command line."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailagents import _cli_mda
from mailagents.store import MaildirStore

MESSAGE = b"From: a@remote.test\nSubject: hi\n\nHello.\n"


def inbox(root: Path) -> list[bytes]:
    if not root.exists():
        return []
    with MaildirStore(root) as store, store.folder("INBOX") as box:
        return [box.read_message(m.uid) for m in box.messages()]


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_deliver_without_a_users_file(tmp_path: Path) -> None:
    mail = str(tmp_path / "{user}")
    status = _cli_mda.deliver(["-d", "alice", "-f", "a@remote.test", "--mail", mail],
                              io.BytesIO(b"From a@remote.test Sat Dec  5 10:00:00 2026\n"
                                         + MESSAGE))
    assert status == 0
    [copy] = inbox(tmp_path / "alice")
    assert copy == (b"Return-Path: <a@remote.test>\r\nDelivered-To: alice@localhost\r\n"
                    + MESSAGE.replace(b"\n", b"\r\n"))


def test_the_from_line_gives_the_sender(tmp_path: Path) -> None:
    status = _cli_mda.deliver(["-d", "bob@example.test", "--mail", str(tmp_path / "{user}")],
                              io.BytesIO(b"From owner@lists.test Sat Dec  5 10:00:00 2026\n"
                                         + MESSAGE))
    assert status == 0
    [copy] = inbox(tmp_path / "bob@example.test")
    assert copy.startswith(b"Return-Path: <owner@lists.test>\r\n")
    assert b"\nFrom owner" not in copy


@pytest.mark.parametrize(
    ("recipients", "expected"),
    [
        (["alice"], 0),
        (["nobody"], 67),  # EX_NOUSER
        (["alice", "nobody"], 67),
        (["bob"], 75),  # over quota, temporary: EX_TEMPFAIL
        (["bob", "nobody"], 75),  # a retry is the caller's safer mistake
    ],
)
def test_exit_statuses(tmp_path: Path, recipients: list[str], expected: int) -> None:
    users = write(tmp_path / "users", "alice@example.test\nbob@example.test 5\n")
    aliases = write(tmp_path / "aliases", "postmaster: alice\n")
    argv = ["--users", users, "--aliases", aliases, "--domain", "example.test",
            "--mail", str(tmp_path / "{user}"), "-f", "a@remote.test"]
    for r in recipients:
        argv += ["-d", r]
    assert _cli_mda.deliver(argv, io.BytesIO(MESSAGE)) == expected


def test_permanent_quota_and_loops_are_ex_unavailable(tmp_path: Path) -> None:
    users = write(tmp_path / "users", "alice@example.test\nbob@example.test 5\n")
    aliases = write(tmp_path / "aliases", "postmaster: alice\n")
    base = ["--users", users, "--aliases", aliases, "--mail", str(tmp_path / "{user}")]
    assert _cli_mda.deliver([*base, "-d", "bob@example.test", "--quota-reply", "permanent"],
                            io.BytesIO(MESSAGE)) == 69
    looped = b"Received: x\n" * 3 + MESSAGE
    assert _cli_mda.deliver([*base, "-d", "alice@example.test", "--max-received", "2"],
                            io.BytesIO(looped)) == 69


def test_usage_and_config_errors(tmp_path: Path) -> None:
    assert _cli_mda.deliver([], io.BytesIO(MESSAGE)) == 64
    assert _cli_mda.deliver(["-d", "a b@example.test"], io.BytesIO(MESSAGE)) == 64
    aliases = write(tmp_path / "aliases", "postmaster: nobody\n")
    users = write(tmp_path / "users", "alice@example.test\n")
    assert _cli_mda.deliver(["-d", "alice@example.test", "--users", users,
                             "--aliases", aliases], io.BytesIO(MESSAGE)) == 78


def test_deliver_as_a_program(tmp_path: Path) -> None:
    """The way fetchmail and Postfix call it: a process reading standard input."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    done = subprocess.run(
        [sys.executable, "-m", "mailagents", "deliver", "-d", "carol@example.test",
         "--mail", str(tmp_path / "{user}")],
        input=MESSAGE, capture_output=True, timeout=60, env=env, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(inbox(tmp_path / "carol@example.test")) == 1


def test_lmtp_command_serves_until_sigterm(tmp_path: Path) -> None:
    import signal
    import smtplib

    users = write(tmp_path / "users", "alice@example.test\n")
    aliases = write(tmp_path / "aliases", "postmaster: alice\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailagents", "lmtp", "--port", "0", "--users", users,
         "--aliases", aliases, "--mail", str(tmp_path / "{user}")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("mailagents lmtp: listening on 127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        with smtplib.LMTP("127.0.0.1", port, timeout=30) as client:
            refused = client.sendmail("a@remote.test", ["alice@example.test"],
                                      MESSAGE.replace(b"\n", b"\r\n"))
            assert refused == {}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(inbox(tmp_path / "alice@example.test")) == 1


def test_users_file_without_aliases_postmaster_is_its_first_user(tmp_path: Path) -> None:
    """Without --aliases, postmaster is the users file's first user, whatever the -d
    recipients are: an address extension into a folder, or an unknown user (EX_NOUSER,
    not a configuration error). It was the first -d recipient, so both gave 78."""
    users = write(tmp_path / "users", "alice@example.test\nbob@example.test\n")
    mail = str(tmp_path / "{user}")
    with MaildirStore(tmp_path / "alice@example.test") as store:
        store.create_folder("lists")
    status = _cli_mda.deliver(["-d", "alice+lists@example.test", "--users", users,
                               "--mail", mail], io.BytesIO(MESSAGE))
    assert status == 0
    with MaildirStore(tmp_path / "alice@example.test") as store, store.folder("lists") as box:
        [copy] = [box.read_message(m.uid) for m in box.messages()]
    assert copy.startswith(b"Return-Path: <>\r\nDelivered-To: alice@example.test\r\n")
    assert _cli_mda.deliver(["-d", "nobody@example.test", "--users", users, "--mail", mail],
                            io.BytesIO(MESSAGE)) == 67
    assert _cli_mda.deliver(["-d", "postmaster@example.test", "--users", users,
                             "--mail", mail], io.BytesIO(MESSAGE)) == 0
    assert len(inbox(tmp_path / "alice@example.test")) == 1
    empty = write(tmp_path / "empty", "# nobody yet\n")
    assert _cli_mda.deliver(["-d", "alice@example.test", "--users", empty, "--mail", mail],
                            io.BytesIO(MESSAGE)) == 78
