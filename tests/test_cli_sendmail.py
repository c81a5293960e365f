"""``python -m mailagents sendmail``: a message on standard input into the queue, as
``sendmail -t -i`` callers expect (recipients from the header with -t, Bcc removed,
the lone-dot rule without -i, the exit statuses of sysexits.h)."""

from __future__ import annotations

import io
from pathlib import Path

from mailagents._cli_sendmail import main
from mailagents.queue import Queue

MESSAGE = (
    b"From: Alice <alice@example.test>\n"
    b"To: Bob <bob@example.test>, carol@example.test\n"
    b"Cc: dave@example.test\n"
    b"Bcc: eve@example.test\n"
    b"Subject: hello\n"
    b"\n"
    b"First line.\n"
    b".\n"
    b"After the dot.\n"
)


def run(tmp_path: Path, *args: str, data: bytes = MESSAGE) -> int:
    return main(["--queue", str(tmp_path / "q"), "--domain", "example.test",
                 "--hostname", "host.example.test", *args], stdin=io.BytesIO(data))


def queued(tmp_path: Path) -> list[tuple[str, list[str], bytes]]:
    queue = Queue(tmp_path / "q", fsync=False)
    found = []
    for m in queue.messages():
        with queue.open(m.id) as f:
            found.append((m.sender, sorted(r.address for r in m.recipients), f.read()))
    return found


def test_t_and_i(tmp_path: Path) -> None:
    assert run(tmp_path, "-t", "-i", "-f", "alice@example.test") == 0
    [(sender, recipients, content)] = queued(tmp_path)
    assert sender == "alice@example.test"
    assert recipients == ["bob@example.test", "carol@example.test", "dave@example.test",
                          "eve@example.test"]
    assert b"Bcc:" not in content and b"eve@" not in content  # blind copies stay blind
    assert content.startswith(b"Received: by host.example.test (mailagents sendmail, from userid")
    assert b"\r\nDate: " in content and b"\r\nMessage-ID: <" in content
    assert content.endswith(b"First line.\r\n.\r\nAfter the dot.\r\n")  # -i: the dot stays


def test_a_lone_dot_ends_the_message_without_i(tmp_path: Path) -> None:
    assert run(tmp_path, "-oi") == 64  # -oi alone: no recipient
    assert run(tmp_path, "frank") == 0
    [(sender, recipients, content)] = queued(tmp_path)
    assert recipients == ["frank@example.test"]  # a bare name gets --domain
    assert sender.endswith("@example.test")  # the login name
    assert content.endswith(b"First line.\r\n") and b"After the dot" not in content
    assert b"Bcc: eve@example.test" in content  # without -t the header is left alone


def test_existing_date_and_message_id_are_kept(tmp_path: Path) -> None:
    data = b"Date: Mon, 7 Dec 2026 10:00:00 +0000\nMessage-ID: <x@y>\nSubject: s\n\nb\n"
    assert run(tmp_path, "-f", "<>", "bob@example.test", data=data) == 0
    [(sender, _, content)] = queued(tmp_path)
    assert sender == ""
    assert content.count(b"Date:") == 1 and content.count(b"Message-ID:") == 1


def test_errors(tmp_path: Path) -> None:
    assert run(tmp_path) == 64
    assert run(tmp_path, "bad address@@") == 65
    assert run(tmp_path, "--no-such-option") == 64
    (tmp_path / "q").write_text("not a directory")
    assert run(tmp_path, "bob@example.test") == 75
