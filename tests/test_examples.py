"""Every script in examples/ runs and does what its docstring says."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_smtp_in_memory(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "smtp_in_memory.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "accepted: ['<b@example.test>']" in out
    assert "refused:  ['<c@elsewhere.example>']" in out
    assert r"Hello.\r\n.dot line\r\n" in out


def test_pop3_in_memory(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "pop3_in_memory.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "+OK maildrop locked and ready, 2 messages" in out
    assert "\r\n..a line that starts with a dot\r\n.\r\n" in out.replace("\n", "\r\n").replace(
        "\r\r\n", "\r\n"
    )
    assert "deleted at QUIT: ['0000000100000001']" in out


def test_imap_client(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "imap_client.py"), run_name="__main__")
    out = capsys.readouterr().out
    # The password holds CR LF: it went out as a literal, never inside the line.
    assert "C: b'A0001 LOGIN fred {10}\\r\\n'" in out
    # COPYUID's UIDs stay ranges.
    assert "source=SequenceSet(ranges=((4380, 4381),)" in out
    assert "closed: True" in out


def test_imap_server(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "imap_server.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "SELECT INBOX: ('OK', [b'1'])" in out
    assert "b'Subject: Hello\\r\\n\\r\\n'" in out
    # The fetch of BODY[...] (not BODY.PEEK) set \Seen in the store.
    assert "flags now: b'1 (FLAGS (\\\\Recent \\\\Seen))'" in out


def test_mra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import asyncio
    import threading

    from mailagents.agents import MAA
    from mailagents.aio import make_self_signed
    from mailagents.store import MaildirStore
    from mailagents.userdb import PasswordFile

    users = PasswordFile(tmp_path / "users", scrypt_n=2**8)
    users.set_password("alice", "secret")
    remote = MaildirStore(tmp_path / "remote" / "Maildir", fsync=False)
    with remote, remote.folder("INBOX") as inbox:
        inbox.append_bytes(b"Message-ID: <1@remote.test>\r\nSubject: hi\r\n\r\nHello.\r\n")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    maa = MAA("h", users, str(tmp_path / "remote" / "Maildir"), allow_plaintext=True,
              ssl_context=make_self_signed(["localhost"]).server_context(), fsync=False)
    asyncio.run_coroutine_threadsafe(maa.serve("127.0.0.1", None, None, 0, None), loop).result(20)
    try:
        monkeypatch.chdir(tmp_path)
        for name, value in (("IMAP_HOST", "127.0.0.1"), ("IMAP_PORT", str(maa.imap_port)),
                            ("IMAP_USER", "alice"), ("IMAP_PASSWORD", "secret"),
                            ("IMAP_TLS", "none")):
            monkeypatch.setenv(name, value)
        runpy.run_path(str(EXAMPLES / "mra.py"), run_name="__main__")
        runpy.run_path(str(EXAMPLES / "mra.py"), run_name="__main__")
    finally:
        asyncio.run_coroutine_threadsafe(maa.close(), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        users.close()
    out = capsys.readouterr().out
    assert out.splitlines() == ["work: 1 new, error: None", "work: 0 new, error: None"]
    local = tmp_path / "mail" / "alice@example.test" / "Maildir" / "new"
    [delivered] = list(local.iterdir())
    assert delivered.read_bytes().endswith(b"\n\nHello.\n")  # Maildir stores LF
