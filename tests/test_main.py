"""``python -m mailagents``: the MSA demo and the smtp-sink, run as subprocesses, and
the passwd sub-command."""

from __future__ import annotations

import imaplib
import os
import poplib
import re
import signal
import smtplib
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mailagents import __version__
from mailagents.__main__ import (
    describe,
    imaplib_one_liner,
    parse_args,
    parse_sink_args,
    poplib_one_liner,
    smtplib_one_liner,
)
from mailagents.smtp import Envelope, MailParameters, Recipient, parse_path
from mailagents.smtp._address import parse_forward_path

ROOT = Path(__file__).resolve().parent.parent
DEMO_PORTS = (
    "--submission-port",
    "0",
    "--submissions-port",
    "0",
    "--mta-port",
    "0",
    "--pop3-port",
    "0",
    "--pop3s-port",
    "0",
    "--imap-port",
    "0",
    "--imaps-port",
    "0",
)


def start(*args: str) -> subprocess.Popen[str]:
    """Start ``python -m mailagents ARGS`` with its output in a pipe."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    return subprocess.Popen(
        [sys.executable, "-m", "mailagents", *args],
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


# ------------------------------------------------------------------- the MSA demo


def wait_for(lines: list[str], proc: subprocess.Popen[str], text: str, timeout: float) -> str:
    """Wait (bounded) until the output holds ``text``; return the output so far."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = "".join(lines)
        if text in output or proc.poll() is not None:
            break
        time.sleep(0.05)
    output = "".join(lines)
    assert text in output, output
    return output


def demo_settings(output: str) -> dict[str, str]:
    """The ports, user and password the demo printed."""
    found = {}
    for key, pattern in (
        ("submission", r"submission: +127\.0\.0\.1:(\d+) "),
        ("submissions", r"submissions: +127\.0\.0\.1:(\d+) "),
        ("mta", r"smtp \(MTA\): +127\.0\.0\.1:(\d+) "),
        ("pop3", r"pop3: +127\.0\.0\.1:(\d+) "),
        ("pop3s", r"pop3s: +127\.0\.0\.1:(\d+) "),
        ("imap", r"imap: +127\.0\.0\.1:(\d+) "),
        ("imaps", r"imaps: +127\.0\.0\.1:(\d+) "),
        ("user", r"user: +(\S+)"),
        ("password", r"password: +(\S+)"),
    ):
        match = re.search(pattern, output)
        assert match, (key, output)
        found[key] = match.group(1)
    return found


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill the process if it still runs; close its pipe (bounded in time)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


def unverified() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def test_demo_msa_delivers_into_maildir(tmp_path: Path) -> None:
    proc = start(*DEMO_PORTS, "--dir", str(tmp_path))
    lines: list[str] = []
    done = threading.Event()
    threading.Thread(target=read_lines, args=(proc, lines, done), daemon=True).start()
    try:
        output = wait_for(lines, proc, "Submit a message", 30)
        settings = demo_settings(output)
        user, password = settings["user"], settings["password"]
        assert user == "demo@example.test"
        assert f"certificate: {tmp_path / 'tls' / 'cert.pem'}" in output
        one_liner = output.split("Submit a message (paste into a shell):\n", 1)[1]
        assert one_liner.strip().startswith('python3 -c "import smtplib, ssl;')
        assert f"'{password}'" in one_liner and settings["submission"] in one_liner

        with smtplib.SMTP("127.0.0.1", int(settings["submission"]), timeout=5) as smtp:
            smtp.ehlo()
            assert not smtp.has_extn("auth")  # not in the clear
            smtp.starttls(context=unverified())
            smtp.login(user, password)
            smtp.sendmail(user, [user], f"From: {user}\r\nSubject: via 587\r\n\r\nHi.\r\n")
        with smtplib.SMTP_SSL(
            "127.0.0.1", int(settings["submissions"]), timeout=5, context=unverified()
        ) as smtp:
            smtp.login(user, password)
            smtp.sendmail(user, [user], f"From: {user}\r\nSubject: via 465\r\n\r\nHi.\r\n")
        # The MTA takes mail for the demo's domain from anyone, without AUTH, and
        # refuses to relay elsewhere.
        with smtplib.SMTP("127.0.0.1", int(settings["mta"]), timeout=5) as smtp:
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                smtp.sendmail("x@elsewhere.test", ["y@elsewhere.test"], "Subject: no\r\n\r\n.")
            smtp.sendmail("x@elsewhere.test", [user], "Subject: via 25\r\n\r\nHi.\r\n")

        output = "".join(lines)
        maildir = tmp_path / user / "Maildir" / "new"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and output.count("mailagents demo: delivered") < 3:
            time.sleep(0.05)
            output = "".join(lines)
        files = sorted(maildir.iterdir())
        assert len(files) == 3
        subjects = set()
        for path in files:
            content = path.read_bytes()
            subject = re.search(rb"Subject: (via \d+)", content)
            assert subject
            subjects.add(subject.group(1))
            if subject.group(1) != b"via 25":  # submitted: authenticated, a Message-ID
                assert b"with ESMTPSA" in content and b"Message-ID: <" in content
        assert subjects == {b"via 587", b"via 465", b"via 25"}
        assert output.count(f"from <{user}> into {maildir}{os.sep}") == 2, output
        assert password not in (tmp_path / "users").read_text()

        # Read both back over IMAP (STARTTLS, then implicit TLS), and with the printed
        # imaplib one-liner; nothing is deleted there.
        imap = imaplib.IMAP4("127.0.0.1", int(settings["imap"]), timeout=5)
        try:
            assert "LOGINDISABLED" in imap.capabilities  # no clear-text password
            with pytest.raises(imaplib.IMAP4.error):
                imap.login(user, password)
            imap.starttls(unverified())
            imap.login(user, password)
            imap.select("INBOX")
            numbers = imap.search(None, "ALL")[1][0].split()
            assert len(numbers) == 3
            headers = [
                imap.fetch(n, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1][0][1]  # type: ignore[index]
                for n in numbers
            ]
            assert {h.strip() for h in headers} == {
                b"Subject: via 587", b"Subject: via 465", b"Subject: via 25"
            }
        finally:
            imap.logout()
        with imaplib.IMAP4_SSL(
            "127.0.0.1", int(settings["imaps"]), ssl_context=unverified(), timeout=5
        ) as imaps:
            imaps.login(user, password)
            assert imaps.status("INBOX", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 3)")
        imap_line = output.split("Or with IMAP:\n", 1)[1].splitlines()[0].strip()
        assert imap_line.startswith('python3 -c "import imaplib, ssl;'), imap_line
        read = subprocess.run(
            imap_line, shell=True, capture_output=True, text=True, timeout=60, check=True
        )
        assert "Subject: via 587" in read.stdout and "Subject: via 465" in read.stdout

        # The whole chain: read both messages back over POP3 (STLS, then implicit TLS).
        pop = poplib.POP3("127.0.0.1", int(settings["pop3"]), timeout=5)
        try:
            with pytest.raises(poplib.error_proto):
                pop.user(user)  # no clear-text password before TLS
            pop.stls(context=unverified())
            pop.user(user)
            pop.pass_(password)
            assert pop.stat()[0] == 3
            fetched = {
                re.search(rb"Subject: (via \d+)", b"\r\n".join(pop.retr(n)[1])).group(1)  # type: ignore[union-attr]
                for n in (1, 2, 3)
            }
            assert fetched == subjects
            uidls = [line.split()[1] for line in pop.uidl()[1]]
            pop.dele(1)
        finally:
            pop.quit()
        pops = poplib.POP3_SSL("127.0.0.1", int(settings["pop3s"]), timeout=5, context=unverified())
        try:
            pops.user(user)
            pops.pass_(password)
            assert pops.stat()[0] == 2  # the one deleted at QUIT is gone
            assert [line.split()[1] for line in pops.uidl()[1]] == uidls[1:]
        finally:
            pops.quit()

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        done.wait(timeout=5)
        assert "mailagents demo: stopping" in "".join(lines)
    finally:
        stop(proc)


def test_demo_msa_sigterm_and_smtplib_one_liner(tmp_path: Path) -> None:
    proc = start(*DEMO_PORTS, "--dir", str(tmp_path))
    lines: list[str] = []
    done = threading.Event()
    threading.Thread(target=read_lines, args=(proc, lines, done), daemon=True).start()
    try:
        output = wait_for(lines, proc, "Submit a message", 30)
        command = output.split("Submit a message (paste into a shell):\n", 1)[1]
        command = command.splitlines()[0].strip()
        # The printed command, run by a shell exactly as pasted.
        result = subprocess.run(
            command.replace("python3 ", f"{sys.executable} ", 1),
            shell=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        settings = demo_settings(output)
        wait_for(lines, proc, "mailagents demo: delivered", 10)
        assert len(list((tmp_path / settings["user"] / "Maildir" / "new").iterdir())) == 1
        command = output.split("Read it back with POP3:\n", 1)[1].splitlines()[0].strip()
        result = subprocess.run(
            command.replace("python3 ", f"{sys.executable} ", 1),
            shell=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        assert "Subject: hello" in result.stdout and "Hi!" in result.stdout
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        stop(proc)


def test_parse_args() -> None:
    args = parse_args([])
    assert (args.host, args.submission_port, args.submissions_port) == ("127.0.0.1", 10587, 10465)
    assert (args.pop3_port, args.pop3s_port) == (10110, 10995)
    assert (args.imap_port, args.imaps_port) == (10143, 10993)
    assert (args.dir, args.user) == ("demo-mail", "demo@example.test")
    args = parse_args(["--submission-port", "0", "--submissions-port", "0", "--dir", "x"])
    assert (args.submission_port, args.submissions_port, args.dir) == (0, 0, "x")
    for bad in (
        ["--submission-port", "70000"],
        ["--pop3-port", "-1"],
        ["--imaps-port", "65536"],
        ["--max-size", "0"],
        ["--user", "nobody"],
        ["--user", "it's@example.test"],
    ):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_poplib_one_liner_is_python() -> None:
    command = poplib_one_liner("127.0.0.1", 10110, "demo@example.test", "pw-1_x")
    assert command.startswith('python3 -c "') and command.endswith('"')
    compile(command[len('python3 -c "') : -1], "<one-liner>", "exec")


def test_imaplib_one_liner_is_python() -> None:
    command = imaplib_one_liner("127.0.0.1", 10143, "demo@example.test", "pw-1_x")
    assert command.startswith('python3 -c "') and command.endswith('"')
    compile(command[len('python3 -c "') : -1], "<one-liner>", "exec")


def test_smtplib_one_liner_is_python() -> None:
    command = smtplib_one_liner("127.0.0.1", 10587, "demo@example.test", "pw-1_x")
    assert command.startswith('python3 -c "') and command.endswith('"')
    compile(command[len('python3 -c "') : -1], "<one-liner>", "exec")


# ---------------------------------------------------------------------- smtp-sink


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_smtp_sink_prints_messages(lmtp: bool) -> None:
    proc = start("smtp-sink", "--port", "0", *(["--lmtp"] if lmtp else []))
    lines: list[str] = []
    done = threading.Event()
    reader = threading.Thread(target=read_lines, args=(proc, lines, done), daemon=True)
    reader.start()
    try:
        port = first_port(proc, lines)
        assert lines[0].startswith(
            f"mailagents smtp-sink: {'LMTP' if lmtp else 'SMTP'} server listening"
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


def test_smtp_sink_sigterm_stops_cleanly() -> None:
    proc = start("smtp-sink", "--port", "0")
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


def test_parse_sink_args() -> None:
    args = parse_sink_args(["--port", "0", "--lmtp", "--max-size", "1000"])
    assert (args.host, args.port, args.lmtp, args.max_size) == ("127.0.0.1", 0, True, 1000)
    with pytest.raises(SystemExit):
        parse_sink_args(["--port", "70000"])
    with pytest.raises(SystemExit):
        parse_sink_args(["--max-size", "0"])


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
