"""The MAA's IMAP listeners (mailagents.agents.MAA): IMAP with STARTTLS and IMAPS beside
POP3 over the same stores, one failed-login throttle for all four listeners, imaplib
and poplib as the clients (run in a thread); every test is bounded in time."""

from __future__ import annotations

import asyncio
import imaplib
import poplib
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailagents.agents import MAA, StoreIMAPHandler, imap_config
from mailagents.aio import AuthThrottle, SelfSignedCertificate
from mailagents.store import SEEN, MboxStore
from mailagents.userdb import PasswordFile
from tests.agents import test_maa
from tests.agents.test_maa import (
    ALICE,
    ALICE_PW,
    BOB,
    BOB_PW,
    FAST,
    TIMEOUT,
    message,
    put,
    stored,
)

T = TypeVar("T")


# The MAA's POP3 tests' fixtures: a certificate, a password file with alice and bob,
# the mail folder.
cert = test_maa.cert
users = test_maa.users
mail = test_maa.mail


def run_with_maa(
    cert: SelfSignedCertificate,
    users: PasswordFile,
    mail: Path,
    client: Callable[[MAA], T],
    **options: Any,
) -> T:
    """Start an MAA with all four listeners on free ports, run ``client(maa)`` in a
    thread, close."""
    mailboxes = options.pop("mailboxes", str(mail / "{user}" / "Maildir"))
    maa = MAA(
        "mail.example.test",
        users,
        mailboxes,
        ssl_context=cert.server_context(),
        fsync=False,
        server_options=FAST,
        imap_options=FAST,
        **options,
    )

    async def main() -> T:
        async with maa:
            await maa.serve("127.0.0.1", 0, 0, 0, 0)
            result = await asyncio.to_thread(client, maa)
        assert maa.imap is None and maa.imaps is None and maa.pop3 is None
        return result

    try:
        return asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    finally:
        users.close()


def starttls(maa: MAA, cert: SelfSignedCertificate) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", maa.imap_port, timeout=5)
    imap.starttls(cert.client_context())
    return imap


def imaps(maa: MAA, cert: SelfSignedCertificate) -> imaplib.IMAP4_SSL:
    return imaplib.IMAP4_SSL(
        "127.0.0.1", maa.imaps_port, ssl_context=cert.client_context(), timeout=5
    )


def test_imap_and_pop3_serve_the_same_store(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    put(mail, ALICE, message(1), message(2))

    def client(maa: MAA) -> None:
        assert maa.imap_config.auth_mechanisms == ("SCRAM-SHA-256", "PLAIN")
        imap = imaplib.IMAP4("127.0.0.1", maa.imap_port, timeout=5)
        assert "LOGINDISABLED" in imap.capabilities  # no password before TLS
        assert "STARTTLS" in imap.capabilities
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(ALICE, ALICE_PW)
        imap.starttls(cert.client_context())
        assert "LOGINDISABLED" not in imap.capabilities
        assert "AUTH=SCRAM-SHA-256" in imap.capabilities
        imap.login(ALICE, ALICE_PW)
        assert imap.select("INBOX") == ("OK", [b"2"])
        typ, data = imap.fetch("2", "(BODY[])")  # sets \Seen
        assert data[0][1] == message(2)  # type: ignore[index]
        imap.create("Archive")
        imap.copy("1", "Archive")
        imap.append("INBOX", "", imaplib.Time2Internaldate(0), message(3))
        imap.logout()

        # POP3 sees the message IMAP appended; IMAP's \Seen is in the store.
        pop = poplib.POP3_SSL(
            "127.0.0.1", maa.pop3s_port, timeout=5, context=cert.client_context()
        )
        pop.user(ALICE)
        pop.pass_(ALICE_PW)
        assert pop.stat()[0] == 3
        assert b"\r\n".join(pop.retr(3)[1]) + b"\r\n" == message(3)
        pop.dele(1)
        pop.quit()

        # IMAPS: the POP3 deletion is seen; the folder made over IMAP is there.
        with imaps(maa, cert) as again:
            again.login(ALICE, ALICE_PW)
            assert again.status("INBOX", "(MESSAGES)")[1] == [b'INBOX (MESSAGES 2)']
            assert again.status("Archive", "(MESSAGES)")[1] == [b'Archive (MESSAGES 1)']

    run_with_maa(cert, users, mail, client)
    flags = {info.flags for info in stored(mail, ALICE)}
    assert any(SEEN in f for f in flags)
    assert len(stored(mail, ALICE)) == 2


def test_users_see_only_their_own_store(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    put(mail, ALICE, message(1))

    def client(maa: MAA) -> None:
        with imaps(maa, cert) as imap:
            imap.login(BOB, BOB_PW)
            assert imap.select("INBOX") == ("OK", [b"0"])
            imap.append("INBOX", "", imaplib.Time2Internaldate(0), message(9))
        with imaps(maa, cert) as imap:
            imap.login(ALICE, ALICE_PW)
            assert imap.select("INBOX") == ("OK", [b"1"])

    run_with_maa(cert, users, mail, client)
    assert (mail / BOB / "Maildir" / "cur").is_dir() or (mail / BOB / "Maildir" / "new").is_dir()


def test_failed_logins_count_across_protocols(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    def client(maa: MAA) -> AuthThrottle:
        assert maa.pop3 is not None and maa.imap is not None and maa.imaps is not None
        shared = maa.pop3.throttle
        assert maa.imap.throttle is shared and maa.imaps.throttle is shared
        pop = poplib.POP3_SSL(
            "127.0.0.1", maa.pop3s_port, timeout=5, context=cert.client_context()
        )
        pop.user(ALICE)
        with pytest.raises(poplib.error_proto):
            pop.pass_("wrong")
        pop.quit()
        imap = starttls(maa, cert)
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(ALICE, "wrong too")
        imap.logout()
        return shared

    throttle = run_with_maa(cert, users, mail, client)
    # Both failures, one over POP3 and one over IMAP, are in the one throttle.
    assert throttle.failures("127.0.0.1") >= 2


def test_imap_over_mbox_stores(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    with MboxStore(mail / ALICE, fsync=False) as made, made.folder("INBOX") as inbox:
        inbox.append_bytes(message(1))

    def client(maa: MAA) -> None:
        with imaps(maa, cert) as imap:
            imap.login(ALICE, ALICE_PW)
            assert imap.select("INBOX") == ("OK", [b"1"])
            imap.create("Sent")
            imap.append("Sent", "(\\Seen)", imaplib.Time2Internaldate(0), message(2))
            assert imap.status("Sent", "(MESSAGES UNSEEN)")[1] == [
                b"Sent (MESSAGES 1 UNSEEN 0)"
            ]

    run_with_maa(
        cert, users, mail, client, mailboxes=str(mail / "{user}"), mailbox_format="mbox"
    )


def test_imap_config_and_options_reach_the_listeners(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    async def main() -> None:
        maa = MAA(
            "h",
            users,
            str(mail / "{user}"),
            ssl_context=cert.server_context(),
            allow_plaintext=True,
            mechanisms=("PLAIN",),
            imap_config=imap_config(server_id=(("name", "test"),)),
            imap_options={"max_sessions_per_user": 3, "compress": False},
        )
        assert isinstance(maa.imap_handler, StoreIMAPHandler)
        async with maa:
            await maa.serve("127.0.0.1", None, None, 0, None)
            assert maa.imap is not None and maa.pop3 is None and maa.imaps is None
            assert maa.imap.max_sessions_per_user == 3
            config = maa.imap.config
            assert config.allow_plaintext_login and config.auth_mechanisms == ("PLAIN",)
            assert config.server_id == (("name", "test"),)
            assert "COMPRESS=DEFLATE" not in config.extensions
            assert "UIDPLUS" in config.extensions
            with pytest.raises(RuntimeError):
                maa.imaps_port  # noqa: B018
            with pytest.raises(RuntimeError):
                await maa.serve("127.0.0.1", None, None, 0, None)

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_a_busy_imap_port_closes_every_listener(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    async def main() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            maa = MAA("h", users, str(mail / "{user}"), ssl_context=cert.server_context())
            with pytest.raises(OSError):
                await maa.serve("127.0.0.1", 0, 0, 0, port)
            assert (maa.pop3, maa.pop3s, maa.imap, maa.imaps) == (None, None, None, None)

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))
