"""The demo (``python -m mailagents``) with the real programs it tells its user about:
every command it prints under "With other programs" is run as printed (swaks into the
MSA and into the MTA, s-nail over IMAPS, fetchmail with the fetchmailrc it wrote,
mbsync with its mbsyncrc), and each one's effect is checked."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from tests.test_main import DEMO_PORTS, demo_settings, start, stop, wait_for

pytestmark = pytest.mark.interop

PROGRAMS = ("swaks", "s-nail", "fetchmail", "mbsync")


def messages_in(maildir: Path) -> int:
    return sum(1 for sub in ("new", "cur") if (maildir / sub).is_dir()
               for _ in (maildir / sub).iterdir())


def test_the_printed_commands_work(tmp_path: Path) -> None:
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    proc = start(*DEMO_PORTS, "--dir", str(tmp_path))
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        output = wait_for(lines, proc, "mbsync -c", 30)
        settings = demo_settings(output)
        commands = output.split("With other programs:\n", 1)[1].splitlines()
        by_program = {c.split()[0] if not c.strip().startswith("echo") else "s-nail":
                      c.strip().split("    #", 1)[0] for c in commands if c.startswith("  ")}
        swaks = [c.strip() for c in commands if c.strip().startswith("swaks")]
        assert len(swaks) == 2 and set(by_program) == {"swaks", "s-nail", "fetchmail", "mbsync"}
        env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
               "LC_ALL": "C.UTF-8", "MAILRC": "/dev/null"}

        def run(command: str) -> str:
            done_ = subprocess.run(command, shell=True, capture_output=True, text=True,
                                   timeout=90, env=env, cwd=tmp_path)
            assert done_.returncode == 0, (command, done_.stdout, done_.stderr)
            return done_.stdout + done_.stderr

        for command in swaks:  # submission with AUTH, then the MTA from anywhere
            assert "250 2.0.0" in run(command)
        wait_for(lines, proc, "delivered", 20)
        inbox = tmp_path / settings["user"] / "Maildir"
        for _ in range(200):
            if messages_in(inbox) == 2:
                break
            threading.Event().wait(0.05)
        assert messages_in(inbox) == 2

        listing = run(by_program["s-nail"])
        # Both senders in the header list: the MSA's user and the MTA's stranger.
        assert settings["user"] in listing and "someone@elsewhere" in listing, listing

        run(by_program["fetchmail"])
        fetched = tmp_path / "fetched" / settings["user"] / "Maildir"
        assert messages_in(fetched) == 2

        run(by_program["mbsync"])
        copy = tmp_path / "mbsync-copy" / "INBOX"
        assert messages_in(copy) == 2
    finally:
        stop(proc)
