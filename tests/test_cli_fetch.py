"""``python -m mailagents fetch`` (mailagents/_cli_fetch.py) against our MAA: one pass
with a report line per account (exit 0; 1 when an account failed), ``--check``, exit
78 on a bad configuration with the key at fault, ``--account``, and ``--daemon``
stopped by SIGTERM. Each command runs as a subprocess, bounded in time."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from mailagents import _cli_fetch
from tests.agents.test_mra import Remote, local_numbers, run, serving
from tests.agents.test_mra_failures import closed_port

BOUND = 30.0


def config(root: Path, pop3: int, imap: int, *, extra: str = "") -> Path:
    """Two accounts on the MAA (``work``: alice over IMAP, delete; ``home``: carol over
    POP3, keep)
    into root/local/{user}/Maildir, the state in root/state (relative paths)."""
    path = root / "fetch.toml"
    (root / "alice.pw").write_text("pw\n")
    path.write_text(f"""
state_dir = "state"
[destination]
maildir = "local/{{user}}/Maildir"

[[account]]
name = "work"
protocol = "imap"
host = "127.0.0.1"
port = {imap}
tls = "none"
user = "alice"
password_file = "alice.pw"
recipients = ["bob@local.test"]
folders = ["INBOX", "Lists"]
after = "delete"
max_size = 4000
interval = 600
timeout = 10

[[account]]
name = "home"
protocol = "pop3"
host = "127.0.0.1"
port = {pop3}
tls = "none"
user = "carol"
password = "pw"
recipients = ["bob@local.test"]
after = "keep"
interval = 0.2
timeout = 10
{extra}
""")
    return path


async def fetch(*args: str, cwd: Path, signal_after: float | None = None,
                until: str | None = None) -> tuple[int, str, str]:
    """Run the command; with ``until``, SIGTERM once that text is on its output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailagents", "fetch", *args, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    try:
        if until is None:
            out, err = await asyncio.wait_for(process.communicate(), BOUND)
        else:
            assert process.stdout is not None
            seen = b""
            async with asyncio.timeout(BOUND):
                while until.encode() not in seen:
                    line = await process.stdout.readline()
                    assert line, f"ended before {until!r}: {seen!r}"
                    seen += line
            process.send_signal(signal.SIGTERM)
            rest, err = await asyncio.wait_for(process.communicate(), BOUND)
            out = seen + rest
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_one_pass(tmp_path: Path) -> None:
    remote, carol = Remote(tmp_path), Remote(tmp_path, "carol")
    remote.put(1, 2)
    remote.put(3, pad=5000)
    remote.put(4, folder="Lists")
    carol.put(5, 6)

    async def main() -> None:
        async with serving(tmp_path) as maa:
            path = config(tmp_path, maa.pop3_port, maa.imap_port)
            elsewhere = tmp_path / "elsewhere"  # paths are from the file's folder
            elsewhere.mkdir()
            status, out, err = await fetch("--config", str(path), cwd=elsewhere)
            assert status == 0, err
            lines = out.splitlines()
            assert lines[0] == "work: 3 fetched, 3 removed, 1 skipped (ok)"
            assert lines[1].startswith("  INBOX 3: too large (")
            assert lines[2] == "home: 2 fetched, 0 removed (ok)"
            assert len(lines) == 3
            # Again: nothing new.
            status, out, _ = await fetch("--config", str(path), cwd=elsewhere)
            assert status == 0 and out.splitlines()[::2] == [
                "work: 0 fetched, 0 removed, 1 skipped (ok)", "home: 0 fetched, 0 removed (ok)"]

    run(main(), 2 * BOUND)
    assert remote.numbers() == [3] and remote.numbers("Lists") == []
    assert carol.numbers() == [5, 6]
    assert local_numbers(tmp_path) == [1, 2, 4, 5, 6]
    assert sorted(n.split("-")[0] for n in os.listdir(tmp_path / "state")
                  if n.endswith(".json")) == ["home", "work"]


def test_account_filter_and_failure_status(tmp_path: Path) -> None:
    remote = Remote(tmp_path)
    remote.put(1)
    remote.create("Lists")

    async def main() -> None:
        async with serving(tmp_path) as maa:
            path = config(tmp_path, closed_port(), maa.imap_port)
            status, out, err = await fetch("--config", str(path), "--account", "work",
                                           cwd=tmp_path)
            assert status == 0, err
            assert out.splitlines() == ["work: 1 fetched, 1 removed (ok)"]
            status, out, _ = await fetch("--config", str(path), "--account", "home",
                                         cwd=tmp_path)
            assert status == 1 and out.startswith("home: 0 fetched, 0 removed (error: ")
            status, _, err = await fetch("--config", str(path), "--account", "nobody",
                                         cwd=tmp_path)
            assert status == 64 and "nobody" in err

    run(main(), 4 * BOUND)
    assert local_numbers(tmp_path) == [1]


def test_check(tmp_path: Path) -> None:
    path = config(tmp_path, 110, 143)
    assert _cli_fetch.main(["--config", str(path), "--check"]) == 0
    assert _cli_fetch.main(["--config", str(path), "--check", "--account", "home"]) == 0
    assert not (tmp_path / "state").exists()  # nothing fetched, nothing made


@pytest.mark.parametrize(("extra", "key"), [
    ("bogus = 1", "account[1].bogus"),
    ("max_size = 0", "account[1].max_size"),
    ("[[account]]\nname = \"work\"", "account[2]"),
])
def test_bad_configuration_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    extra: str, key: str) -> None:
    path = config(tmp_path, 110, 143, extra=extra)
    assert _cli_fetch.main(["--config", str(path)]) == 78
    err = capsys.readouterr().err
    assert err.startswith(f"mailagents fetch: {path}: {key}")


def test_bad_arguments_exit_64(tmp_path: Path) -> None:
    assert _cli_fetch.main([]) == 64
    assert _cli_fetch.main(["--config", str(tmp_path / "x"), "--bogus"]) == 64
    assert _cli_fetch.main(["--config", str(tmp_path / "missing.toml")]) == 78


def test_daemon_stopped_by_sigterm(tmp_path: Path) -> None:
    remote = Remote(tmp_path)
    remote.put(1)
    remote.create("Lists")

    async def main() -> None:
        async with serving(tmp_path) as maa:
            path = config(tmp_path, maa.pop3_port, maa.imap_port)
            status, out, err = await fetch("--config", str(path), "--daemon", "--account",
                                           "work", cwd=tmp_path, until="work: 1 fetched")
            assert status == 0, err
            assert out.startswith("work: 1 fetched, 1 removed (ok)\n")

    run(main(), 2 * BOUND)
    assert local_numbers(tmp_path) == [1]
    assert remote.numbers() == []
