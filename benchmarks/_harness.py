"""What the benchmark scripts that start servers share: free ports on loopback, waiting
for a server to listen, stopping a child process, and the error for a server that could
not be measured. (A helper module, not a benchmark: the scripts import it from their own
folder.)"""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Any

HOST = "127.0.0.1"


class ServerFailed(Exception):
    """A server could not be measured."""


def free_port() -> int:
    """A port of :data:`HOST` free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, seconds: float = 15.0) -> None:
    """Until something accepts connections on ``port`` (:class:`RuntimeError` after
    ``seconds``)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {HOST}:{port}") from None
            time.sleep(0.05)


def stop_process(process: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """Terminate ``process``, and kill it if it is still there after ``grace`` s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
