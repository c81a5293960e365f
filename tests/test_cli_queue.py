"""python -m mailagents queue list|show|retry|delete (mailagents/_cli_queue.py)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from mailagents import _cli_queue
from mailagents.delivery import Message
from mailagents.queue import Outcome, Queue
from mailagents.smtp import Envelope, Mailbox, MailParameters, Recipient, Reply
from mailagents.smtp import Path as SMTPPath

CONTENT = b"From: a@x.test\r\nSubject: queued\r\n\r\nbody\r\n"
LATER = Reply(code=451, enhanced="4.4.1", lines=("connect to mx.y.test failed",))


def fill(directory: Path) -> tuple[str, str]:
    queue = Queue(directory, fsync=False)
    env = Envelope(mail_from=SMTPPath(Mailbox("a", "x.test")), mail_parameters=MailParameters(),
                   recipients=(Recipient(path=SMTPPath(Mailbox("b", "y.test"))),
                               Recipient(path=SMTPPath(Mailbox("c", "y.test")))), size=0)
    one = queue.enqueue(env, Message.from_bytes(CONTENT), now=1000.0)
    queue.record(one.id, [Outcome(index=0, status="temporary", reply=LATER,
                                  remote_mta="mx.y.test")], now=1000.0)
    two = queue.enqueue(env, Message.from_bytes(CONTENT), now=1001.0)
    return one.id, two.id


def cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    return _cli_queue.main(list(args), out), out.getvalue()


def test_list_show_retry_delete(tmp_path: Path) -> None:
    one, two = fill(tmp_path / "q")
    code, text = cli("--queue", str(tmp_path / "q"), "list")
    assert code == 0 and one in text and two in text and "2 message(s)" in text
    assert "451 4.4.1 connect to mx.y.test failed" in text and "via mx.y.test" in text
    code, text = cli("--queue", str(tmp_path / "q"), "show", one)
    assert code == 0 and "Subject: queued" in text and "<b@y.test>  queued, 1 attempt" in text
    code, text = cli("--queue", str(tmp_path / "q"), "retry", one)
    assert code == 0 and Queue(tmp_path / "q").get(one).recipients[0].next_attempt > 1000.0
    code, text = cli("--queue", str(tmp_path / "q"), "retry")
    assert code == 0 and "2 message(s) due now" in text
    code, text = cli("--queue", str(tmp_path / "q"), "delete", one)
    assert code == 0 and [m.id for m in Queue(tmp_path / "q").messages()] == [two]


def test_unknown_id_and_bad_usage(tmp_path: Path) -> None:
    assert cli("--queue", str(tmp_path / "q"), "show", "NOPE")[0] == 1
    assert cli("--queue", str(tmp_path / "q"), "delete", "NOPE")[0] == 1
    assert cli("--queue", str(tmp_path / "q"), "frobnicate")[0] == 64
    assert cli("--queue", str(tmp_path / "q"))[0] == 64


def test_through_python_dash_m(tmp_path: Path) -> None:
    one, _ = fill(tmp_path / "q")
    result = subprocess.run(
        [sys.executable, "-m", "mailagents", "queue", "--queue", str(tmp_path / "q"), "list"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0 and one in result.stdout
