"""Python's poplib against our MAA, for what tests/aio/test_pop3_server.py and
tests/agents/test_maa.py do not cover: RFC 6856 UTF8 with a user name and password
outside ASCII, as poplib sends them (Latin-1 before UTF8, UTF-8 after)."""

from __future__ import annotations

import poplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailagents.agents import MAA
from mailagents.aio import SelfSignedCertificate, make_self_signed
from mailagents.store.maildir import MaildirStore
from mailagents.userdb import PasswordFile

from .peers import LoopThread

pytestmark = pytest.mark.interop

USER = "jörg@example.test"
PASSWORD = "pässwört ünicode"
MESSAGE = "From: Jörg <jörg@example.test>\r\nSubject: Grüße\r\n\r\nÄpfel.\r\n".encode()


@pytest.fixture(scope="module")
def cert() -> SelfSignedCertificate:
    return make_self_signed(("localhost",))


@pytest.fixture
def maa(tmp_path: Path, cert: SelfSignedCertificate) -> Iterator[MAA]:
    users = PasswordFile(tmp_path / "users", scrypt_n=2**8)
    users.set_password(USER, PASSWORD)
    server = MAA("pop.example.test", users, str(tmp_path / "mail" / "{user}" / "Maildir"),
                 ssl_context=cert.server_context(), fsync=False)
    with MaildirStore(server.mailbox_path(USER), fsync=False) as store, \
            store.folder("INBOX") as inbox:
        inbox.append_bytes(MESSAGE)
    with LoopThread() as loop:
        loop.run(server.serve("127.0.0.1", 0, None, None, None))
        try:
            yield server
        finally:
            loop.run(server.close())
            users.close()


def connect(maa: MAA, cert: SelfSignedCertificate) -> poplib.POP3:
    pop = poplib.POP3("127.0.0.1", maa.pop3_port, timeout=5)
    pop.stls(context=cert.client_context())
    return pop


def test_utf8_then_a_non_ascii_login(maa: MAA, cert: SelfSignedCertificate) -> None:
    pop = connect(maa, cert)
    try:
        assert "UTF8" in pop.capa()
        assert pop.utf8().startswith(b"+OK")  # poplib now encodes commands as UTF-8
        pop.user(USER)
        pop.pass_(PASSWORD)
        assert pop.stat() == (1, len(MESSAGE))
        assert b"".join(line + b"\r\n" for line in pop.retr(1)[1]) == MESSAGE
    finally:
        pop.quit()


def test_latin1_bytes_before_utf8_are_refused_then_utf8_works(
    maa: MAA, cert: SelfSignedCertificate
) -> None:
    """Before UTF8, poplib sends the name in Latin-1: bytes that are not UTF-8. The
    server refuses them with -ERR and the session goes on."""
    pop = connect(maa, cert)
    try:
        with pytest.raises(poplib.error_proto, match=r"^b'-ERR"):
            pop.user(USER)
            pop.pass_(PASSWORD)
        assert "UTF8" in pop.capa()  # still there, still in AUTHORIZATION
        assert pop.utf8().startswith(b"+OK")
        pop.user(USER)
        pop.pass_(PASSWORD)
        assert pop.stat()[0] == 1
    finally:
        pop.quit()
