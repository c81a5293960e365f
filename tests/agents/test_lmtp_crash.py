"""Crash test of the LMTP server over the MDA (``python -m mailagents lmtp``, fsync on):
killed with SIGKILL at random moments while a client streams multi-recipient
transactions, it never has said 250 for a recipient whose copy is not on disk. Bounded:
a fixed number of kills, each run a second at most."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
USERS = [f"u{i}@example.test" for i in range(5)]
KILLS = 12


def start_server(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "users").write_text("".join(u + "\n" for u in USERS))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailagents", "lmtp", "--port", "0",
         "--users", str(tmp_path / "users"), "--mail", str(tmp_path / "mail" / "{user}")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert "listening on" in line, line
    return proc, int(line.rsplit(":", 1)[1])


class Replies:
    def __init__(self, sock: socket.socket) -> None:
        self.file = sock.makefile("rb")

    def read(self) -> int:
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("closed")
            if line[3:4] == b" ":
                return int(line[:3])


def client(port: int, acknowledged: list[tuple[str, str]], stop: threading.Event) -> None:
    """Transactions of five recipients each, until the connection dies; every
    (token, recipient) answered 250 after the data goes into ``acknowledged``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            replies = Replies(sock)
            assert replies.read() == 220
            sock.sendall(b"LHLO crash.test\r\n")
            assert replies.read() == 250
            n = 0
            while not stop.is_set():
                n += 1
                token = f"token-{os.getpid()}-{time.monotonic_ns()}-{n}"
                body = (f"Subject: {token}\r\n\r\n" + "line of text\r\n" * (n % 7 * 200)
                        + f"{token}\r\n.\r\n")
                commands = "MAIL FROM:<a@remote.test>\r\n" + "".join(
                    f"RCPT TO:<{u}>\r\n" for u in USERS) + "DATA\r\n"
                sock.sendall(commands.encode())
                codes = [replies.read() for _ in range(len(USERS) + 2)]
                assert codes == [250] * (len(USERS) + 1) + [354], codes
                sock.sendall(body.encode())
                for user in USERS:
                    if replies.read() == 250:
                        acknowledged.append((token, user))
    except (ConnectionError, OSError):
        pass  # killed


def on_disk(tmp_path: Path, user: str) -> str:
    new = tmp_path / "mail" / user / "new"
    cur = tmp_path / "mail" / user / "cur"
    texts = []
    for directory in (new, cur):
        if directory.is_dir():
            texts += [p.read_text(errors="replace") for p in directory.iterdir()]
    return "\n".join(texts)


def kill_round(tmp_path: Path, rng: random.Random) -> int:
    """One server, one client, one SIGKILL; checks the disk; returns how many copies
    had been acknowledged."""
    proc, port = start_server(tmp_path)
    acknowledged: list[tuple[str, str]] = []
    stop = threading.Event()
    thread = threading.Thread(target=client, args=(port, acknowledged, stop))
    try:
        thread.start()
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        thread.join(30)
    assert not thread.is_alive()
    for user in USERS:
        text = on_disk(tmp_path, user)
        missing = [t for t, u in acknowledged if u == user and t not in text]
        assert not missing, f"{user}: acknowledged but not on disk: {missing}"
    return len(acknowledged)


def test_a_kill_never_loses_an_acknowledged_copy(tmp_path: Path) -> None:
    rng = random.Random(2033)
    counts = [kill_round(tmp_path / f"round{i}", rng) for i in range(KILLS)]
    # The kills came while deliveries were going on, not only before the first one.
    print("acknowledged copies per kill:", counts)
    assert sum(counts) > 0, counts


def test_the_check_sees_a_missing_copy(tmp_path: Path) -> None:
    """The disk check itself: a copy acknowledged but gone is reported."""
    (tmp_path / "mail" / USERS[0] / "new").mkdir(parents=True)
    assert "token-x" not in on_disk(tmp_path, USERS[0])
    (tmp_path / "mail" / USERS[0] / "new" / "m").write_text("Subject: token-x\n")
    assert "token-x" in on_disk(tmp_path, USERS[0])
