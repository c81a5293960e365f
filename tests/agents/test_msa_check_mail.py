"""The MSA's ``check_mail`` hook (the MAIL-time check, a rate limit's place), over real
sockets on 127.0.0.1 with smtplib as the MUA; the helpers are test_msa's."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from mailagents.agents import MSA
from mailagents.aio import SelfSignedCertificate, Session
from mailagents.smtp import MailFrom, Reply
from mailagents.userdb import PasswordFile
from tests.agents import test_msa
from tests.agents.test_msa import ALICE, ALICE_PW, MESSAGE, delivered, run_with_msa, starttls

cert = test_msa.cert
users = test_msa.users
mail = test_msa.mail

SLOW_DOWN = Reply(code=451, enhanced="4.7.0", lines=("Slow down",))


def test_check_mail_refuses_and_accepts(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    seen: list[tuple[str | None, str, tuple[object, ...]]] = []

    async def check_mail(session: Session, event: MailFrom) -> Reply | None:
        seen.append((session.identity, str(event.path), tuple(session.peer[:1])))
        return SLOW_DOWN if len(seen) > 1 else None

    def client(msa: MSA) -> None:
        with starttls(msa, cert) as smtp:
            smtp.login(ALICE, ALICE_PW)
            assert smtp.sendmail(ALICE, [ALICE], MESSAGE) == {}
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                smtp.sendmail(ALICE, [ALICE], MESSAGE)
            assert refused.value.smtp_code == 451
            assert refused.value.smtp_error == b"4.7.0 Slow down"
            # The session goes on: the transaction alone was refused.
            assert smtp.noop()[0] == 250

    run_with_msa(cert, users, mail, client, check_mail=check_mail)
    assert seen == [(ALICE, f"<{ALICE}>", ("127.0.0.1",))] * 2
    assert len(delivered(mail, ALICE)) == 1


def test_check_mail_comes_after_the_sender_check(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    calls: list[str] = []

    async def check_mail(session: Session, event: MailFrom) -> Reply | None:
        calls.append(str(event.path))
        return None

    def client(msa: MSA) -> None:
        with starttls(msa, cert) as smtp:
            smtp.login(ALICE, ALICE_PW)
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                smtp.sendmail("mallory@example.test", [ALICE], MESSAGE)
            assert refused.value.smtp_code == 553

    run_with_msa(cert, users, mail, client, check_mail=check_mail)
    assert calls == []


@pytest.mark.parametrize("broken", ["raises", "2xx"])
def test_a_broken_check_mail_is_a_temporary_failure(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path, broken: str
) -> None:
    async def check_mail(session: Session, event: MailFrom) -> Reply | None:
        if broken == "raises":
            raise RuntimeError("the rate database is down")
        return Reply(code=250, enhanced="2.0.0", lines=("Ok",))  # not a refusal

    def client(msa: MSA) -> None:
        with starttls(msa, cert) as smtp:
            smtp.login(ALICE, ALICE_PW)
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                smtp.sendmail(ALICE, [ALICE], MESSAGE)
            assert (refused.value.smtp_code, refused.value.smtp_error) == (
                451, b"4.3.0 Sender check failed, try again later")

    run_with_msa(cert, users, mail, client, check_mail=check_mail)
    assert delivered(mail, ALICE) == []
