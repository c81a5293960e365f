"""mailagents.agents.MSA over real sockets on 127.0.0.1, with Python's smtplib as the
MUA (run in a thread); every test is bounded in time."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import re
import runpy
import smtplib
import ssl
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailagents import sasl
from mailagents.agents import MSA, MaildirDelivery, Submission
from mailagents.aio import ListenerLimits, SelfSignedCertificate, make_self_signed
from mailagents.delivery import RecipientResult
from mailagents.smtp import Reply
from mailagents.userdb import PasswordFile

# The failed-login throttle, made short for the tests.
FAST = {"limits": ListenerLimits(auth_failure_delay=0.01, max_auth_failure_delay=0.05)}

T = TypeVar("T")
TIMEOUT = 20.0
EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"

ALICE = "alice@example.test"
ALICE_PW = "Alice's secret 1"
MESSAGE = (
    f"From: Alice <{ALICE}>\r\nTo: bob@example.test\r\nSubject: hi\r\n\r\nHello Bob.\r\n"
)


@pytest.fixture(scope="module")
def cert() -> SelfSignedCertificate:
    return make_self_signed(["localhost"])


@pytest.fixture
def users(tmp_path: Path) -> PasswordFile:
    store = PasswordFile(tmp_path / "users", scrypt_n=2**8)
    store.set_password(ALICE, ALICE_PW)
    store.set_password("carol", "Carol's secret 2")  # not an address: owns nothing itself
    return store


@pytest.fixture
def mail(tmp_path: Path) -> Path:
    return tmp_path / "mail"


def maildir_files(root: Path, user: str, sub: str = "new") -> list[Path]:
    folder = root / user / "Maildir" / sub
    return sorted(folder.iterdir()) if folder.is_dir() else []


def delivered(root: Path, user: str) -> list[email.message.EmailMessage]:
    """The messages in ``user``'s Maildir (new/ and cur/: opening a folder of the store
    moves new/ to cur/)."""
    out = []
    for path in maildir_files(root, user) + maildir_files(root, user, "cur"):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        out.append(msg)
    return out


def run_with_msa(
    cert: SelfSignedCertificate,
    users: PasswordFile,
    mail: Path,
    client: Callable[[MSA], None],
    **options: Any,
) -> MSA:
    """Start an MSA on two free ports, run ``client(msa)`` in a thread, close."""
    options.setdefault("deliver", MaildirDelivery(mail / "{user}" / "Maildir"))
    msa = MSA(
        "mx.example.test",
        users,
        local_domains={"example.test"},
        ssl_context=cert.server_context(),
        **options,
    )

    async def main() -> None:
        async with msa:
            await msa.serve("127.0.0.1", 0, 0)
            await asyncio.to_thread(client, msa)
        assert msa.submission is None and msa.submissions is None

    try:
        asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    finally:
        deliver = options["deliver"]
        if isinstance(deliver, MaildirDelivery):
            deliver.close()
        users.close()
    return msa


def starttls(msa: MSA, cert: SelfSignedCertificate) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", msa.submission_port, timeout=5)
    smtp.ehlo("client.example")
    assert smtp.has_extn("starttls")
    smtp.starttls(context=cert.client_context())
    smtp.ehlo("client.example")
    return smtp


def auth_object(
    user: str, password: str, mechanism: type[sasl.ClientMechanism]
) -> Callable[[bytes | None], str]:
    """An smtplib authobject that drives one of our SASL client mechanisms."""
    client: Any = mechanism(user, password)  # type: ignore[call-arg]

    def respond(challenge: bytes | None = None) -> str:
        data = client.initial_response() if challenge is None else client.respond(challenge)
        return (data or b"").decode("utf-8")

    return respond


# --------------------------------------------------------------------- the happy paths


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "SCRAM-SHA-256"])
def test_starttls_auth_and_delivery(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path, mechanism: str
) -> None:
    def client(msa: MSA) -> None:
        with starttls(msa, cert) as smtp:
            offered = smtp.esmtp_features["auth"].split()
            assert offered == ["SCRAM-SHA-256", "PLAIN", "LOGIN"]
            smtp.user, smtp.password = ALICE, ALICE_PW
            if mechanism == "PLAIN":
                code, _ = smtp.auth("PLAIN", smtp.auth_plain)
            elif mechanism == "LOGIN":
                code, _ = smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
            else:
                code, _ = smtp.auth(
                    "SCRAM-SHA-256", auth_object(ALICE, ALICE_PW, sasl.ScramSha256Client)
                )
            assert code == 235
            assert smtp.sendmail(ALICE, ["bob@example.test"], MESSAGE) == {}

    run_with_msa(cert, users, mail, client)
    [message] = delivered(mail, "bob@example.test")
    assert message["Subject"] == "hi"
    assert message["Message-ID"].endswith("@mx.example.test>")
    assert message["Date"]
    received = message["Received"]
    assert "with ESMTPSA id" in received
    assert "by mx.example.test" in received
    assert "from client.example ([127.0.0.1])" in received
    assert "for <bob@example.test>" in received
    assert re.search(r"\(using TLSv1\.[23] with cipher \S+ \(\d+ bits\)\)", received)
    assert ALICE not in received  # show_auth_user is off
    raw = maildir_files(mail, "bob@example.test")[0].read_bytes()
    assert raw.startswith(b"Received: ")  # the trace field goes on top
    assert raw.endswith(b"\n\nHello Bob.\n")
    assert maildir_files(mail, "bob@example.test", "tmp") == []


def test_implicit_tls(cert: SelfSignedCertificate, users: PasswordFile, mail: Path) -> None:
    def client(msa: MSA) -> None:
        with smtplib.SMTP_SSL(
            "127.0.0.1", msa.submissions_port, timeout=5, context=cert.client_context()
        ) as smtp:
            smtp.ehlo()
            assert not smtp.has_extn("starttls")
            assert "PLAIN" in smtp.esmtp_features["auth"]
            smtp.login(ALICE, ALICE_PW)
            smtp.sendmail(ALICE, [ALICE], MESSAGE)

    run_with_msa(cert, users, mail, client, show_auth_user=True)
    [message] = delivered(mail, ALICE)
    assert "with ESMTPSA" in message["Received"]
    assert "(using TLSv1." in message["Received"]  # implicit TLS is noted too
    assert f"(authenticated as {ALICE})" in message["Received"]


def test_eight_bit_and_utf8_headers(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    text = (
        f"From: Zoë Ålice <{ALICE}>\r\nTo: zoë@example.test\r\nSubject: héllo wörld\r\n"
        "Message-ID: <kept@client.example>\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        "\r\nÇa marche, 日本語 too.\r\n"
    ).encode()

    def client(msa: MSA) -> None:
        with starttls(msa, cert) as smtp:
            assert smtp.has_extn("smtputf8") and smtp.has_extn("8bitmime")
            smtp.login(ALICE, ALICE_PW)
            refused = smtp.sendmail(
                ALICE, ["zoë@example.test"], text, mail_options=["SMTPUTF8", "BODY=8BITMIME"]
            )
            assert refused == {}

    run_with_msa(cert, users, mail, client)
    [message] = delivered(mail, "zoë@example.test")
    assert message["Subject"] == "héllo wörld"
    assert message["Message-ID"] == "<kept@client.example>"  # present: not replaced
    assert message["Date"] == "Mon, 01 Jan 2024 10:00:00 +0000"
    assert message.get_content() == "Ça marche, 日本語 too.\n"
    assert len(message.get_all("Message-ID", [])) == 1


def test_senders_mapping_and_callable(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    asked: list[str] = []

    async def senders(identity: str) -> Collection[str]:
        asked.append(identity)
        return {"carol": ["Carol@Example.test", "@example.org"]}.get(identity, [])

    def client(msa: MSA) -> None:
        with starttls(msa, cert) as smtp:
            smtp.login("carol", "Carol's secret 2")
            msg = "From: c@example.org\r\nSender: carol@example.test\r\n\r\nHi.\r\n"
            assert smtp.sendmail("carol@EXAMPLE.test", [ALICE], msg) == {}
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                smtp.sendmail(ALICE, [ALICE], MESSAGE)
            assert refused.value.smtp_code == 553

    run_with_msa(cert, users, mail, client, senders=senders)
    assert asked and set(asked) == {"carol"}
    assert len(delivered(mail, ALICE)) == 1
    # A mapping: identities it does not list own themselves.
    users = PasswordFile(users.path, scrypt_n=2**8)

    def client2(msa: MSA) -> None:
        with starttls(msa, cert) as smtp:
            smtp.login(ALICE, ALICE_PW)
            assert smtp.sendmail(ALICE, [ALICE], MESSAGE) == {}
            with pytest.raises(smtplib.SMTPSenderRefused):
                smtp.sendmail("alias@example.test", [ALICE], MESSAGE)

    run_with_msa(cert, users, mail, client2, senders={"carol": "carol@example.test"})
    assert len(delivered(mail, ALICE)) == 2


# ------------------------------------------------------------------------- refusals


def test_auth_refused_before_tls(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    def client(msa: MSA) -> None:
        with smtplib.SMTP("127.0.0.1", msa.submission_port, timeout=5) as smtp:
            smtp.ehlo()
            assert not smtp.has_extn("auth")
            assert smtp.has_extn("size")
            with pytest.raises(smtplib.SMTPNotSupportedError):
                smtp.login(ALICE, ALICE_PW)
            # Forced anyway, in the clear: refused, the password is never checked.
            code, _ = smtp.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0a\0b").decode())
            assert code in (503, 504, 530, 538)
            code, reply = smtp.mail(ALICE)
            assert (code, reply[:5]) == (530, b"5.7.0")

    run_with_msa(cert, users, mail, client)


def test_mail_before_auth_and_wrong_password(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    def client(msa: MSA) -> None:
        with starttls(msa, cert) as smtp:
            code, reply = smtp.mail(ALICE)
            assert (code, reply[:5]) == (530, b"5.7.0")
            smtp.user, smtp.password = ALICE, "not the password"
            with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
                smtp.auth("PLAIN", smtp.auth_plain)
            assert failed.value.smtp_code == 535
            smtp.user, smtp.password = "nobody@example.test", ALICE_PW
            with pytest.raises(smtplib.SMTPAuthenticationError) as unknown:
                smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
            assert unknown.value.smtp_code == 535
            code, reply = smtp.mail(ALICE)
            assert code == 530

    run_with_msa(cert, users, mail, client, server_options=FAST)


def test_sender_from_and_relay_refusals(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    def client(msa: MSA) -> None:
        with starttls(msa, cert) as smtp:
            smtp.login(ALICE, ALICE_PW)
            with pytest.raises(smtplib.SMTPSenderRefused) as sender:
                smtp.sendmail("mallory@example.test", ["bob@example.test"], MESSAGE)
            assert sender.value.smtp_code == 553
            assert sender.value.smtp_error.startswith(b"5.7.1")
            for bad_from in (
                "From: Bob <bob@example.test>\r\n",
                f"From: {ALICE}, bob@example.test\r\n",
                f"From: {ALICE}\r\nSender: bob@example.test\r\n",
                "From: undisclosed:;\r\n",
                f"From: <{ALICE}\r\n",
                'From: "\r\n',  # the email package's parser fails on it
                f"From: {ALICE}\r\nSender: \"\r\n",
                "Subject: no From at all\r\n",
            ):
                smtp.rset()
                with pytest.raises(smtplib.SMTPDataError) as data:
                    smtp.sendmail(ALICE, ["bob@example.test"], bad_from + "\r\nBody\r\n")
                assert data.value.smtp_code == 550, bad_from
                assert data.value.smtp_error[:2] == b"5.", bad_from
            smtp.rset()
            with pytest.raises(smtplib.SMTPRecipientsRefused) as rcpt:
                smtp.sendmail(ALICE, ["someone@elsewhere.example"], MESSAGE)
            [(code, text)] = rcpt.value.recipients.values()
            assert (code, text[:5]) == (550, b"5.7.1")
            smtp.rset()
            # A null reverse-path is allowed (MDNs); the From: is still checked.
            assert smtp.sendmail("<>", ["bob@example.test"], MESSAGE) == {}

    run_with_msa(cert, users, mail, client)
    assert len(delivered(mail, "bob@example.test")) == 1
    assert maildir_files(mail, "someone@elsewhere.example") == []


def test_size_limit(cert: SelfSignedCertificate, users: PasswordFile, mail: Path) -> None:
    def client(msa: MSA) -> None:
        with starttls(msa, cert) as smtp:
            assert smtp.esmtp_features["size"] == "2000"
            smtp.login(ALICE, ALICE_PW)
            big = MESSAGE + "x" * 3000 + "\r\n"
            with pytest.raises(smtplib.SMTPSenderRefused) as announced:
                smtp.sendmail(ALICE, [ALICE], big)  # smtplib announces SIZE=
            assert announced.value.smtp_code == 552
            del smtp.esmtp_features["size"]  # now only counted while it arrives
            with pytest.raises(smtplib.SMTPDataError) as counted:
                smtp.sendmail(ALICE, [ALICE], big)
            assert counted.value.smtp_code == 552

    run_with_msa(cert, users, mail, client, max_message_size=2000)
    assert delivered(mail, ALICE) == []


# ------------------------------------------------------------------ delivery failures


def test_failing_deliver_callable_is_451(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    calls: list[Submission] = []

    async def deliver(submission: Submission) -> None:
        calls.append(submission)
        raise OSError("disk on fire")

    def client(msa: MSA) -> None:
        with starttls(msa, cert) as smtp:
            smtp.login(ALICE, ALICE_PW)
            with pytest.raises(smtplib.SMTPDataError) as failed:
                smtp.sendmail(ALICE, [ALICE], MESSAGE)
            assert (failed.value.smtp_code, failed.value.smtp_error[:5]) == (451, b"4.3.0")

    run_with_msa(cert, users, mail, client, deliver=deliver)
    [submission] = calls
    assert submission.identity == ALICE
    assert submission.message.read().startswith(b"Received: ")


def test_unwritable_maildir_is_451_and_nothing_half_delivered(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    # bob's Maildir exists but its tmp/ is a file: writing there fails, even as root.
    bob_tmp = mail / "bob@example.test" / "Maildir" / "tmp"
    for sub in ("new", "cur"):
        (bob_tmp.parent / sub).mkdir(parents=True)
    bob_tmp.write_bytes(b"")

    def client(msa: MSA) -> None:
        with starttls(msa, cert) as smtp:
            smtp.login(ALICE, ALICE_PW)
            with pytest.raises(smtplib.SMTPDataError) as failed:
                smtp.sendmail(ALICE, [ALICE, "bob@example.test"], MESSAGE)
            assert (failed.value.smtp_code, failed.value.smtp_error[:5]) == (451, b"4.3.0")
            # The client may retry; for alice alone it goes through.
            assert smtp.sendmail(ALICE, [ALICE], MESSAGE) == {}

    run_with_msa(cert, users, mail, client)
    assert len(maildir_files(mail, ALICE)) == 1  # the retry only: no copy of the failure
    assert maildir_files(mail, ALICE, "tmp") == []
    assert maildir_files(mail, ALICE, "cur") == []


def test_constructor_checks(cert: SelfSignedCertificate, users: PasswordFile) -> None:
    with pytest.raises(TypeError):
        MSA("h", users, local_domains="example.test", ssl_context=cert.server_context())
    msa = MSA("h", users, local_domains=["Example.TEST."], ssl_context=cert.server_context())
    assert msa.local_domains == frozenset({"example.test"})
    assert msa.config.require_auth and msa.config.hostname == "h"
    with pytest.raises(RuntimeError):
        assert msa.submission_port
    with pytest.raises(RuntimeError):
        assert msa.submissions_port


def test_serve_one_listener_only(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    async def main() -> None:
        msa = MSA("h", users, local_domains={"example.test"}, ssl_context=cert.server_context())
        async with msa:
            await msa.serve("127.0.0.1", submission_port=0, submissions_port=None)
            assert msa.submission_port > 0 and msa.submissions is None
            with pytest.raises(RuntimeError):
                await msa.serve("127.0.0.1", 0, 0)

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_both_listeners_count_failed_logins_together(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    # Regression: each listener had a throttle of its own, so a password guesser got a
    # second allowance of failures on the other port.
    async def main() -> None:
        msa = MSA("h", users, local_domains={"example.test"}, ssl_context=cert.server_context())
        async with msa:
            await msa.serve("127.0.0.1", 0, 0)
            assert msa.submission is not None and msa.submissions is not None
            assert msa.submission.throttle is msa.submissions.throttle
            failed = msa.submission.throttle.failed("192.0.2.1", 1)
            assert msa.submissions.throttle.failed("192.0.2.1", 1) != failed  # counted on

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


# -------------------------------------------------------------------------- the example


def test_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    PasswordFile("users", scrypt_n=2**8).set_password(ALICE, ALICE_PW)
    namespace = runpy.run_path(str(EXAMPLES / "msa.py"), run_name="example")
    main: Callable[[int, int], Awaitable[None]] = namespace["main"]

    async def scenario() -> None:
        task = asyncio.ensure_future(main(0, 0))
        try:
            out = ""
            for _ in range(100):
                out += capsys.readouterr().out
                if "MSA on ports" in out:
                    break
                await asyncio.sleep(0.05)
            match = re.search(r"MSA on ports (\d+) and (\d+)", out)
            assert match, out
            port = int(match.group(1))

            def client() -> None:
                with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                    smtp.starttls(context=context)
                    smtp.login(ALICE, ALICE_PW)
                    smtp.sendmail(ALICE, [ALICE], MESSAGE)

            await asyncio.to_thread(client)
            # The default delivery goes through the MSA's queue: wait for the copy.
            queued = tmp_path / "spool" / "queue" / "queue"
            for _ in range(200):
                if maildir_files(tmp_path / "mail", ALICE) and not list(queued.iterdir()):
                    break
                await asyncio.sleep(0.05)
            assert not task.done()
            assert not list(queued.iterdir())
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT))
    assert len(maildir_files(tmp_path / "mail", ALICE)) == 1


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["delivered", "delivered"], 250),
        (["delivered", "temporary"], 451),  # one reply after DATA: retry, none lost
        (["delivered", "permanent"], 451),  # a copy is out: no 5xx that would bounce it
        (["temporary", "permanent"], 451),
        (["permanent", "permanent"], 552),  # nothing delivered, nothing will be: the 5xx
    ],
)
def test_the_reply_after_data_follows_every_recipients_result(
    cert: SelfSignedCertificate,
    users: PasswordFile,
    mail: Path,
    statuses: list[str],
    expected: int,
) -> None:
    replies = {
        "delivered": Reply(code=250, enhanced="2.0.0", lines=("ok",)),
        "temporary": Reply(code=452, enhanced="4.2.2", lines=("Mailbox full",)),
        "permanent": Reply(code=552, enhanced="5.2.2", lines=("Mailbox full for good",)),
    }

    async def deliver(submission: Submission) -> list[RecipientResult]:
        return [
            RecipientResult(recipient=r, status=s, reply=replies[s])  # type: ignore[arg-type]
            for r, s in zip(submission.envelope.recipients, statuses, strict=True)
        ]

    def client(msa: MSA) -> None:
        with starttls(msa, cert) as smtp:
            smtp.login(ALICE, ALICE_PW)
            if expected == 250:
                assert smtp.sendmail(ALICE, [ALICE, "bob@example.test"], MESSAGE) == {}
                return
            with pytest.raises(smtplib.SMTPDataError) as failed:
                smtp.sendmail(ALICE, [ALICE, "bob@example.test"], MESSAGE)
            assert failed.value.smtp_code == expected

    run_with_msa(cert, users, mail, client, deliver=deliver)


def test_a_result_list_of_the_wrong_length_is_451(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    async def deliver(submission: Submission) -> list[RecipientResult]:
        return []

    def client(msa: MSA) -> None:
        with starttls(msa, cert) as smtp:
            smtp.login(ALICE, ALICE_PW)
            with pytest.raises(smtplib.SMTPDataError) as failed:
                smtp.sendmail(ALICE, [ALICE], MESSAGE)
            assert failed.value.smtp_code == 451

    run_with_msa(cert, users, mail, client, deliver=deliver)


def test_a_large_message_is_spooled_to_a_file_and_delivered_whole(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    seen: list[bool] = []
    body = "".join(f"line {i:06d} of a long message\r\n" for i in range(4000))

    async def deliver(submission: Submission) -> Sequence[RecipientResult]:
        seen.append(submission.message.in_memory)
        return await maildirs(submission)

    maildirs = MaildirDelivery(mail / "{user}" / "Maildir")

    def client(msa: MSA) -> None:
        with starttls(msa, cert) as smtp:
            smtp.login(ALICE, ALICE_PW)
            assert smtp.sendmail(ALICE, [ALICE, "bob@example.test"], MESSAGE + body) == {}

    try:
        run_with_msa(cert, users, mail, client, deliver=deliver, memory_limit=1000)
    finally:
        maildirs.close()
    assert seen == [False]
    for user in (ALICE, "bob@example.test"):
        [message] = delivered(mail, user)
        assert message.get_content().replace("\r\n", "\n") == ("Hello Bob.\r\n" + body).replace(
            "\r\n", "\n"
        )
        assert message["Received"] and message["Message-ID"] and message["Date"]


def test_a_header_section_past_the_limit_is_refused(
    cert: SelfSignedCertificate, users: PasswordFile, mail: Path
) -> None:
    long_header = "".join(f"X-Filler-{i}: {'y' * 70}\r\n" for i in range(4000))

    def client(msa: MSA) -> None:
        with starttls(msa, cert) as smtp:
            smtp.login(ALICE, ALICE_PW)
            with pytest.raises(smtplib.SMTPDataError) as failed:
                smtp.sendmail(ALICE, [ALICE], long_header + MESSAGE)
            assert (failed.value.smtp_code, failed.value.smtp_error[:5]) == (550, b"5.6.0")

    run_with_msa(cert, users, mail, client)
    assert delivered(mail, ALICE) == []
