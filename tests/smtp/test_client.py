"""Tests of mailagents.smtp.client: the SMTP/LMTP client core.

Most tests play the server from a script (canned reply bytes) and check the exact bytes
the client writes; a few wire the client to the ServerConnection in memory.
"""

from __future__ import annotations

import contextlib
from base64 import b64decode, b64encode
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents import sasl
from mailagents._protocol import LocalProtocolError, RemoteProtocolError
from mailagents.smtp._address import Mailbox, Path
from mailagents.smtp._config import ServerConfig
from mailagents.smtp._data import DataReader, normalize_line_ends
from mailagents.smtp._events import NEED_DATA, LMTPReplies, MessageComplete, RcptTo, Reject
from mailagents.smtp._params import MailParameters, RcptParameters
from mailagents.smtp._reply import Reply
from mailagents.smtp._server import Decision, ServerConnection, ServerEvent
from mailagents.smtp.client import (
    AuthResult,
    ClientConnection,
    ClientEvent,
    ConnectionClosed,
    Greeting,
    Response,
    TransactionResult,
)

from .helpers import accept_all, credentials_policy, pump

GREETING = b"220 mx.example.net ESMTP ready\r\n"
FULL = (
    "PIPELINING",
    "SIZE 10000",
    "8BITMIME",
    "SMTPUTF8",
    "ENHANCEDSTATUSCODES",
    "DSN",
    "AUTH PLAIN SCRAM-SHA-256",
)
MESSAGE = b"Subject: hi\r\n\r\nHello\r\n"


def P(text: str) -> Path:
    local, _, domain = text.partition("@")
    return Path(Mailbox(local, domain))


def ehlo_reply(*extensions: str) -> bytes:
    lines = ["mx.example.net Hello client.example", *extensions]
    return Reply(code=250, lines=tuple(lines)).to_bytes()


def events(conn: ClientConnection) -> list[ClientEvent]:
    return list(conn.events())


def greeted(*, lmtp: bool = False) -> ClientConnection:
    conn = ClientConnection(lmtp=lmtp)
    conn.receive_data(GREETING)
    assert events(conn) == [Greeting(reply=Reply(code=220, lines=("mx.example.net ESMTP ready",)))]
    return conn


def ready(*extensions: str, lmtp: bool = False) -> ClientConnection:
    """A client past the greeting and EHLO (LHLO), with the given extensions offered."""
    conn = greeted(lmtp=lmtp)
    conn.hello("client.example")
    verb = "LHLO" if lmtp else "EHLO"
    assert conn.data_to_send() == f"{verb} client.example\r\n".encode()
    conn.receive_data(ehlo_reply(*extensions))
    [event] = events(conn)
    assert isinstance(event, Response) and event.command == verb and event.reply.code == 250
    return conn


def r(code: int, enhanced: str | None = None, text: str = "") -> Reply:
    return Reply(code=code, enhanced=enhanced, lines=(text,))


# --- greeting -------------------------------------------------------------------------


def test_greeting_multiline_and_commands_before_it() -> None:
    conn = ClientConnection()
    with pytest.raises(LocalProtocolError):
        conn.ehlo("client.example")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"220-mx.example.net ESMTP\r\n220 second line\r\n")
    assert events(conn) == [
        Greeting(reply=Reply(code=220, lines=("mx.example.net ESMTP", "second line")))
    ]
    assert conn.data_to_send() == b""


def test_greeting_554_allows_only_quit() -> None:
    conn = ClientConnection()
    conn.receive_data(b"554 no service\r\n")
    assert events(conn) == [Greeting(reply=r(554, None, "no service"))]
    calls: list[Callable[[], None]] = [lambda: conn.ehlo("a.example"), conn.noop, conn.rset]
    for call in calls:
        with pytest.raises(LocalProtocolError):
            call()
    conn.quit()
    assert conn.data_to_send() == b"QUIT\r\n"
    conn.receive_data(b"221 bye\r\n")
    assert events(conn) == [Response(command="QUIT", reply=r(221, None, "bye")), ConnectionClosed()]
    assert conn.closed


def test_greeting_421_then_close() -> None:
    conn = ClientConnection()
    conn.receive_data(b"421 4.3.2 busy\r\n250 ignored\r\n")
    assert events(conn) == [Greeting(reply=r(421, "4.3.2", "busy"))]
    with pytest.raises(LocalProtocolError):
        conn.quit()
    conn.receive_data(b"")
    assert events(conn) == [ConnectionClosed()]


# --- EHLO -----------------------------------------------------------------------------


def test_ehlo_extensions() -> None:
    conn = ready(
        "PIPELINING",
        "SIZE 35882577",
        "auth=LOGIN PLAIN",
        "8bitmime",
        "X-EXPS  GSSAPI   NTLM",
        "-bad line",
        "ENHANCEDSTATUSCODES",
    )
    assert dict(conn.extensions) == {
        "PIPELINING": "",
        "SIZE": "35882577",
        "AUTH": "LOGIN PLAIN",
        "8BITMIME": "",
        "X-EXPS": "GSSAPI NTLM",
        "ENHANCEDSTATUSCODES": "",
    }
    assert conn.max_size == 35882577
    assert conn.can_pipeline


def test_ehlo_standard_auth_line_wins_over_old_style() -> None:
    conn = ready("AUTH=LOGIN", "AUTH PLAIN SCRAM-SHA-256", "SIZE")
    assert conn.extensions["AUTH"] == "PLAIN SCRAM-SHA-256"
    assert conn.max_size is None
    assert not conn.can_pipeline


def test_ehlo_size_zero_means_no_limit() -> None:
    assert ready("SIZE 0").max_size is None


def test_hello_falls_back_to_helo_by_itself() -> None:
    # RFC 5321 §3.2: a server that refuses EHLO with a 5xx gets HELO; one Response.
    conn = greeted()
    conn.hello("client.example")
    assert conn.data_to_send() == b"EHLO client.example\r\n"
    conn.receive_data(b"502 5.5.1 what?\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b"HELO client.example\r\n"
    conn.receive_data(b"250 mx.example.net\r\n")
    assert events(conn) == [Response(command="HELO", reply=r(250, None, "mx.example.net"))]
    assert dict(conn.extensions) == {}
    conn.send_mail("a@b.example", ["c@d.example"], MESSAGE)
    assert conn.data_to_send() == b"MAIL FROM:<a@b.example>\r\n"


def test_hello_does_not_fall_back_on_a_temporary_failure() -> None:
    conn = greeted()
    conn.hello("client.example")
    conn.data_to_send()
    conn.receive_data(b"421 4.3.2 busy\r\n")
    [event] = events(conn)
    assert isinstance(event, Response) and event.command == "EHLO" and event.reply.code == 421
    assert conn.data_to_send() == b""


def test_ehlo_refused_then_helo() -> None:
    conn = greeted()
    conn.ehlo("client.example")
    conn.data_to_send()
    conn.receive_data(b"502 5.5.1 what?\r\n")
    assert events(conn) == [Response(command="EHLO", reply=r(502, "5.5.1", "what?"))]
    with pytest.raises(LocalProtocolError):
        conn.send_mail("a@b.example", ["c@d.example"], MESSAGE)
    conn.helo("client.example")
    assert conn.data_to_send() == b"HELO client.example\r\n"
    conn.receive_data(b"250 mx.example.net\r\n")
    assert events(conn) == [Response(command="HELO", reply=r(250, None, "mx.example.net"))]
    assert dict(conn.extensions) == {}
    conn.send_mail("a@b.example", ["c@d.example"], MESSAGE)
    assert conn.data_to_send() == b"MAIL FROM:<a@b.example>\r\n"


def test_lmtp_verbs() -> None:
    conn = greeted(lmtp=True)
    for call in (conn.ehlo, conn.helo):
        with pytest.raises(LocalProtocolError):
            call("client.example")
    smtp = greeted()
    with pytest.raises(LocalProtocolError):
        smtp.lhlo("client.example")
    conn.lhlo("client.example")
    assert conn.data_to_send() == b"LHLO client.example\r\n"


def test_enhanced_codes_parsed_on_every_line() -> None:
    conn = ready("ENHANCEDSTATUSCODES")
    conn.noop()
    conn.data_to_send()
    conn.receive_data(b"250-2.0.0 first\r\n250-2.0.0 second\r\n250 2.0.0\r\n")
    assert events(conn) == [
        Response(
            command="NOOP", reply=Reply(code=250, enhanced="2.0.0", lines=("first", "second", ""))
        )
    ]
    # A code of another class, or a malformed one, stays in the text.
    conn.noop()
    conn.receive_data(b"250 5.1.1 odd\r\n")
    assert events(conn) == [Response(command="NOOP", reply=r(250, None, "5.1.1 odd"))]
    conn.noop()
    conn.receive_data(b"550 5.01.1 odd\r\n")
    assert events(conn) == [Response(command="NOOP", reply=r(550, None, "5.01.1 odd"))]


def test_simple_commands_run_one_after_the_other() -> None:
    conn = ready("PIPELINING")
    conn.noop()
    conn.rset()
    conn.vrfy("postmaster")
    assert conn.data_to_send() == b"NOOP\r\n"
    conn.receive_data(b"250 ok\r\n")
    assert events(conn) == [Response(command="NOOP", reply=r(250, None, "ok"))]
    assert conn.data_to_send() == b"RSET\r\n"
    conn.receive_data(b"250 reset\r\n252 2.5.0 maybe\r\n")
    assert events(conn) == [
        Response(command="RSET", reply=r(250, None, "reset")),
        Response(command="VRFY", reply=r(252, "2.5.0", "maybe")),
    ]
    assert conn.data_to_send() == b"VRFY postmaster\r\n"


def test_vrfy_non_ascii_needs_smtputf8() -> None:
    conn = ready("PIPELINING")
    with pytest.raises(LocalProtocolError):
        conn.vrfy("jörg")
    conn = ready("SMTPUTF8")
    conn.vrfy("jörg")
    assert conn.data_to_send() == "VRFY jörg SMTPUTF8\r\n".encode()


# --- transactions ---------------------------------------------------------------------


def test_pipelined_transaction_one_write() -> None:
    conn = ready(*FULL)
    conn.send_mail("a@example.com", ["b@example.org", "c@example.org"], MESSAGE)
    assert conn.data_to_send() == (
        b"MAIL FROM:<a@example.com> SIZE=22\r\n"
        b"RCPT TO:<b@example.org>\r\n"
        b"RCPT TO:<c@example.org>\r\n"
        b"DATA\r\n"
    )
    conn.receive_data(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n")
    assert events(conn) == []
    conn.receive_data(b"354 go ahead\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == MESSAGE + b".\r\n"
    conn.receive_data(b"250 2.0.0 queued as X\r\n")
    assert events(conn) == [
        TransactionResult(
            mail_reply=r(250, "2.1.0", "ok"),
            recipient_replies=(
                (P("b@example.org"), r(250, "2.1.5", "ok")),
                (P("c@example.org"), r(550, "5.1.1", "no such user")),
            ),
            data_replies=(r(250, "2.0.0", "queued as X"),),
            accepted=(P("b@example.org"),),
        )
    ]
    result = TransactionResult(
        mail_reply=r(250),
        recipient_replies=((P("c@example.org"), r(550)),),
        data_replies=(),
        accepted=(),
    )
    assert not result.success and result.refused == (P("c@example.org"),)


def test_one_command_per_reply_without_pipelining() -> None:
    conn = ready("SIZE", "8BITMIME")
    conn.send_mail(Mailbox("a", "example.com"), [P("b@example.org"), "<c@example.org>"], b"x")
    assert conn.data_to_send() == b"MAIL FROM:<a@example.com> SIZE=3\r\n"
    conn.receive_data(b"250 ok\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b"RCPT TO:<b@example.org>\r\n"
    conn.receive_data(b"451 later\r\n")
    assert conn.data_to_send() == b"" and events(conn) == []
    assert conn.data_to_send() == b"RCPT TO:<c@example.org>\r\n"
    conn.receive_data(b"250 ok\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b"DATA\r\n"
    conn.receive_data(b"354 go\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b"x\r\n.\r\n"
    conn.receive_data(b"250 done\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult)
    assert result.accepted == (P("c@example.org"),)
    assert result.refused == (P("b@example.org"),)


def test_mail_refused_without_pipelining_stops() -> None:
    conn = ready()
    conn.send_mail("a@example.com", ["b@example.org"], MESSAGE)
    assert conn.data_to_send() == b"MAIL FROM:<a@example.com>\r\n"
    conn.receive_data(b"550 go away\r\n")
    assert events(conn) == [
        TransactionResult(
            mail_reply=r(550, None, "go away"), recipient_replies=(), data_replies=(), accepted=()
        )
    ]
    assert conn.data_to_send() == b""


def test_mail_refused_with_pipelining() -> None:
    conn = ready("PIPELINING")
    conn.send_mail("a@example.com", ["b@example.org"], MESSAGE)
    conn.data_to_send()
    conn.receive_data(b"550 no\r\n503 need MAIL\r\n503 need MAIL\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult)
    assert result.data_replies == (r(503, None, "need MAIL"),) and result.accepted == ()
    assert conn.data_to_send() == b""


def test_all_recipients_refused_pipelined_no_body() -> None:
    conn = ready("PIPELINING")
    conn.send_mail("a@example.com", ["b@example.org", "c@example.org"], MESSAGE)
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n550 no\r\n550 no\r\n554 5.5.1 no valid recipients\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult)
    assert result.data_replies == (r(554, "5.5.1", "no valid recipients"),)
    assert result.accepted == () and not result.success
    assert conn.data_to_send() == b""


def test_all_recipients_refused_but_354_sends_empty_message() -> None:
    conn = ready("PIPELINING")
    conn.send_mail("a@example.com", ["b@example.org"], MESSAGE)
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n550 no\r\n354 go\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b".\r\n"  # RFC 2920 §3.1: no content to nobody
    conn.receive_data(b"554 no recipients\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult) and result.accepted == ()


def test_all_recipients_refused_without_pipelining_resets() -> None:
    conn = ready()
    conn.send_mail("a@example.com", ["b@example.org"], MESSAGE)
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n")
    events(conn)
    conn.data_to_send()
    conn.receive_data(b"550 no\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b"RSET\r\n"
    conn.receive_data(b"250 reset\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult)
    assert result.data_replies == () and result.accepted == ()


def test_data_refused_after_354_final() -> None:
    conn = ready("PIPELINING")
    conn.send_mail("a@example.com", ["b@example.org"], MESSAGE)
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n552 too big\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult)
    assert result.data_replies == (r(552, None, "too big"),) and result.accepted == ()


def test_null_sender_and_postmaster() -> None:
    conn = ready("PIPELINING")
    conn.send_mail("", ["Postmaster"], b"")
    assert conn.data_to_send() == b"MAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nDATA\r\n"
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    events(conn)
    assert conn.data_to_send() == b".\r\n"
    conn2 = ready("PIPELINING")
    conn2.send_mail("<>", [Path(Mailbox("postmaster", ""))], b"x")
    assert conn2.data_to_send().startswith(b"MAIL FROM:<>\r\nRCPT TO:<postmaster>\r\n")


def test_body_is_normalised_and_dot_stuffed() -> None:
    conn = ready("PIPELINING")
    conn.send_mail("a@example.com", ["b@example.org"], b".start\nmid\r.\r\n..two\nend")
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    events(conn)
    assert conn.data_to_send() == b"..start\r\nmid\r\n..\r\n...two\r\nend\r\n.\r\n"


def test_two_transactions_and_misuse() -> None:
    conn = greeted()
    with pytest.raises(LocalProtocolError):
        conn.send_mail("a@example.com", ["b@example.org"], MESSAGE)  # before EHLO
    conn.ehlo("client.example")
    with pytest.raises(LocalProtocolError):
        conn.send_mail("a@example.com", ["b@example.org"], MESSAGE)  # EHLO not answered
    conn.receive_data(ehlo_reply("PIPELINING"))
    events(conn)
    conn.data_to_send()
    conn.send_mail("a@example.com", ["b@example.org"], MESSAGE)
    out = conn.data_to_send()
    with pytest.raises(LocalProtocolError):
        conn.send_mail("a@example.com", ["b@example.org"], MESSAGE)
    bad_calls: list[Callable[[], None]] = [
        conn.starttls,
        lambda: conn.authenticate(sasl.PlainClient("u", "p")),
    ]
    for bad in bad_calls:
        with pytest.raises(LocalProtocolError):
            bad()
    assert conn.data_to_send() == b"" and out


@pytest.mark.parametrize(
    ("recipients", "message"),
    [
        ([], MESSAGE),
        ("b@example.org", MESSAGE),
        (["<>"], MESSAGE),
        (["not an address"], MESSAGE),
        (["b@example.org"], "text"),
    ],
)
def test_send_mail_bad_arguments(recipients: object, message: object) -> None:
    conn = ready("PIPELINING")
    with pytest.raises(LocalProtocolError):
        conn.send_mail("a@example.com", recipients, message)  # type: ignore[arg-type]
    assert conn.data_to_send() == b""


def test_send_mail_bad_sender_and_options() -> None:
    conn = ready("PIPELINING", "CHUNKING")
    cases: list[dict[str, object]] = [
        {"sender": "<postmaster>"},
        {"sender": Path(Mailbox("postmaster", ""))},
        {"sender": 42},
        {"chunk_size": 0},
        {"recipient_parameters": [RcptParameters(), RcptParameters()]},
        {"parameters": MailParameters(body="QUUX")},
    ]
    for kwargs in cases:
        args: dict[str, object] = {"sender": "a@example.com", **kwargs}
        sender = args.pop("sender")
        with pytest.raises(LocalProtocolError):
            conn.send_mail(sender, ["b@example.org"], MESSAGE, **args)  # type: ignore[arg-type]
    assert conn.data_to_send() == b""


# --- SIZE, 8BITMIME, SMTPUTF8, other parameters ---------------------------------------


def test_size_limit_refused_before_anything_is_sent() -> None:
    conn = ready("PIPELINING", "SIZE 20")
    with pytest.raises(LocalProtocolError, match="SIZE"):
        conn.send_mail("a@example.com", ["b@example.org"], b"x" * 30)
    assert conn.data_to_send() == b""
    conn.send_mail("a@example.com", ["b@example.org"], b"x" * 18)  # 18 + CRLF = 20
    assert conn.data_to_send().startswith(b"MAIL FROM:<a@example.com> SIZE=20\r\n")


def test_size_parameter_needs_size() -> None:
    conn = ready("PIPELINING")
    with pytest.raises(LocalProtocolError):
        conn.send_mail("a@example.com", ["b@example.org"], b"x", parameters=MailParameters(size=1))


def test_explicit_size_is_kept() -> None:
    conn = ready("SIZE")
    conn.send_mail("a@example.com", ["b@example.org"], b"x", parameters=MailParameters(size=99))
    assert conn.data_to_send() == b"MAIL FROM:<a@example.com> SIZE=99\r\n"


def test_8bit_body() -> None:
    conn = ready("PIPELINING")
    with pytest.raises(LocalProtocolError, match="8BITMIME"):
        conn.send_mail("a@example.com", ["b@example.org"], "Grüße\r\n".encode())
    assert conn.data_to_send() == b""
    conn = ready("PIPELINING", "8BITMIME")
    conn.send_mail("a@example.com", ["b@example.org"], "Grüße\r\n".encode())
    assert conn.data_to_send().startswith(b"MAIL FROM:<a@example.com> BODY=8BITMIME\r\n")
    conn = ready("8BITMIME")
    with pytest.raises(LocalProtocolError, match="7BIT"):
        conn.send_mail(
            "a@example.com", ["b@example.org"], b"\xff", parameters=MailParameters(body="7bit")
        )
    conn = ready()
    with pytest.raises(LocalProtocolError):
        conn.send_mail(
            "a@example.com", ["b@example.org"], b"x", parameters=MailParameters(body="8BITMIME")
        )


def test_8bit_body_over_binarymime() -> None:
    conn = ready("CHUNKING", "BINARYMIME")
    conn.send_mail("a@example.com", ["b@example.org"], b"\xff\x00\rraw\n")
    assert conn.data_to_send() == b"MAIL FROM:<a@example.com> BODY=BINARYMIME\r\n"
    conn.receive_data(b"250 ok\r\n")
    events(conn)
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n")
    events(conn)
    # BINARYMIME content goes as it is: no line-end normalisation.
    assert conn.data_to_send() == b"BDAT 7 LAST\r\n\xff\x00\rraw\n"
    conn = ready("CHUNKING", "BINARYMIME")
    with pytest.raises(LocalProtocolError):
        conn.send_mail(
            "a@example.com",
            ["b@example.org"],
            b"x",
            parameters=MailParameters(body="BINARYMIME"),
            use_bdat=False,
        )


def test_smtputf8() -> None:
    conn = ready("PIPELINING", "8BITMIME")
    with pytest.raises(LocalProtocolError, match="SMTPUTF8"):
        conn.send_mail("a@example.com", ["jörg@bücher.example"], MESSAGE)
    with pytest.raises(LocalProtocolError, match="SMTPUTF8"):
        conn.send_mail("jörg@example.com", ["b@example.org"], MESSAGE)
    assert conn.data_to_send() == b""
    conn = ready("PIPELINING", "8BITMIME", "SMTPUTF8")
    conn.send_mail("a@example.com", ["jörg@bücher.example"], MESSAGE)
    assert (
        conn.data_to_send()
        == (
            "MAIL FROM:<a@example.com> BODY=8BITMIME SMTPUTF8\r\n"
            "RCPT TO:<jörg@bücher.example>\r\nDATA\r\n"
        ).encode()
    )


def test_dsn_auth_requiretls_parameters() -> None:
    params = MailParameters(ret="HDRS", envid="id+1")
    rparams = [RcptParameters(notify=frozenset({"FAILURE", "DELAY"}), orcpt=("rfc822", "b@x.org"))]
    conn = ready("PIPELINING")
    cases: list[dict[str, object]] = [
        {"parameters": params},
        {"recipient_parameters": rparams},
        {"parameters": MailParameters(auth="<>")},
        {"parameters": MailParameters(requiretls=True)},
        {"parameters": MailParameters(smtputf8=True)},
    ]
    for kwargs in cases:
        with pytest.raises(LocalProtocolError):
            conn.send_mail("a@example.com", ["b@example.org"], MESSAGE, **kwargs)  # type: ignore[arg-type]
    assert conn.data_to_send() == b""
    conn = ready("PIPELINING", "DSN", "AUTH PLAIN", "REQUIRETLS")
    conn.send_mail(
        "a@example.com",
        ["b@example.org"],
        MESSAGE,
        parameters=MailParameters(ret="HDRS", envid="id+1", auth="a@example.com", requiretls=True),
        recipient_parameters=rparams,
    )
    assert conn.data_to_send() == (
        b"MAIL FROM:<a@example.com> AUTH=a@example.com RET=HDRS ENVID=id+2B1 REQUIRETLS\r\n"
        b"RCPT TO:<b@example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;b@x.org\r\n"
        b"DATA\r\n"
    )


# --- injection: nothing is queued -----------------------------------------------------

BAD = ["\r", "\n", "\x00", "\r\nRSET", "x\r\nMAIL FROM:<evil@example>"]


def _injections(bad: str) -> list[Callable[[ClientConnection], None]]:
    return [
        lambda c: c.ehlo("client" + bad),
        lambda c: c.helo(bad),
        lambda c: c.vrfy("user" + bad),
        lambda c: c.send_mail("a@example.com" + bad, ["b@example.org"], b"x"),
        lambda c: c.send_mail("<a@example.com>" + bad, ["b@example.org"], b"x"),
        lambda c: c.send_mail("a@example.com", ["b@example.org", bad + "c@example.org"], b"x"),
        lambda c: c.send_mail("a@example.com", ["b@example.org" + bad], b"x"),
        lambda c: c.send_mail(
            "a@example.com", ["b@example.org"], b"x", parameters=MailParameters(envid="id" + bad)
        ),
        lambda c: c.send_mail(
            "a@example.com", ["b@example.org"], b"x", parameters=MailParameters(auth="a" + bad)
        ),
        lambda c: c.send_mail(
            "a@example.com",
            ["b@example.org"],
            b"x",
            parameters=MailParameters(extra=(("X-TAG", "v" + bad),)),
        ),
        lambda c: c.send_mail(
            "a@example.com",
            ["b@example.org"],
            b"x",
            parameters=MailParameters(extra=(("X-TAG" + bad, None),)),
        ),
        lambda c: c.send_mail(
            "a@example.com",
            ["b@example.org"],
            b"x",
            recipient_parameters=[RcptParameters(orcpt=("rfc822", "b@x.org" + bad))],
        ),
        lambda c: c.send_mail(
            "a@example.com",
            ["b@example.org"],
            b"x",
            recipient_parameters=[RcptParameters(extra=(("X-R", bad),))],
        ),
        lambda c: c.authenticate(_named("PLAIN" + bad)),
    ]


class _Named(sasl.ClientMechanism):
    """A mechanism whose messages the test chooses (subclass it to choose the name)."""

    name = "PLAIN"

    def __init__(self, first: bytes | None = b"", answers: tuple[bytes, ...] = ()) -> None:
        self._first = first
        self._answers = list(answers)
        self.verified: list[bytes | None] = []

    def initial_response(self) -> bytes | None:
        return self._first

    def respond(self, challenge: bytes) -> bytes:
        return self._answers.pop(0)

    def verify_success(self, final_data: bytes | None) -> None:
        self.verified.append(final_data)

    @property
    def done(self) -> bool:
        return True


def _named(name: str) -> _Named:
    custom: type[_Named] = type("Custom", (_Named,), {"name": name})
    return custom()


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("index", range(len(_injections(""))))
def test_injection_raises_before_queueing(bad: str, index: int) -> None:
    conn = ready("PIPELINING", "DSN", "AUTH PLAIN", "8BITMIME", "SMTPUTF8")
    with pytest.raises(LocalProtocolError):
        _injections(bad)[index](conn)
    assert conn.data_to_send() == b""
    conn.noop()  # the session is intact
    assert conn.data_to_send() == b"NOOP\r\n"


# --- BDAT (RFC 3030) ------------------------------------------------------------------


def test_bdat_pipelined_chunks() -> None:
    conn = ready("PIPELINING", "CHUNKING", "8BITMIME")
    conn.send_mail("a@example.com", ["b@example.org"], b"line1\nline2\n", chunk_size=5)
    assert conn.data_to_send() == b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n"
    conn.receive_data(b"250 ok\r\n250 ok\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == (b"BDAT 5\r\nline1BDAT 5\r\n\r\nlinBDAT 4 LAST\r\ne2\r\n")
    conn.receive_data(b"250 5 octets\r\n250 10 octets\r\n250 2.0.0 queued\r\n")
    assert events(conn) == [
        TransactionResult(
            mail_reply=r(250, None, "ok"),
            recipient_replies=((P("b@example.org"), r(250, None, "ok")),),
            data_replies=(r(250, "2.0.0", "queued"),),
            accepted=(P("b@example.org"),),
        )
    ]


def test_bdat_without_pipelining_one_chunk_per_reply() -> None:
    conn = ready("CHUNKING")
    conn.send_mail("a@example.com", ["b@example.org"], b"abcdef", chunk_size=4)
    assert conn.data_to_send() == b"MAIL FROM:<a@example.com>\r\n"
    conn.receive_data(b"250 ok\r\n")
    events(conn)
    assert conn.data_to_send() == b"RCPT TO:<b@example.org>\r\n"
    conn.receive_data(b"250 ok\r\n")
    events(conn)
    assert conn.data_to_send() == b"BDAT 4\r\nabcd"
    conn.receive_data(b"250 ok\r\n")
    events(conn)
    assert conn.data_to_send() == b"BDAT 2 LAST\r\nef"
    conn.receive_data(b"250 done\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult) and result.success


def test_bdat_empty_message_and_use_bdat_false() -> None:
    conn = ready("PIPELINING", "CHUNKING")
    conn.send_mail("a@example.com", ["b@example.org"], b"")
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n250 ok\r\n")
    events(conn)
    assert conn.data_to_send() == b"BDAT 0 LAST\r\n"
    conn = ready("PIPELINING", "CHUNKING")
    conn.send_mail("a@example.com", ["b@example.org"], b"x", use_bdat=False)
    assert conn.data_to_send().endswith(b"DATA\r\n")
    conn = ready("PIPELINING")
    with pytest.raises(LocalProtocolError, match="CHUNKING"):
        conn.send_mail("a@example.com", ["b@example.org"], b"x", use_bdat=True)


def test_bdat_all_recipients_refused_sends_rset() -> None:
    conn = ready("PIPELINING", "CHUNKING")
    conn.send_mail("a@example.com", ["b@example.org"], MESSAGE)
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n550 no\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b"RSET\r\n"
    conn.receive_data(b"250 ok\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult)
    assert result.data_replies == () and result.accepted == ()


def test_bdat_failed_chunk_stops_and_resets() -> None:
    conn = ready("PIPELINING", "CHUNKING")
    conn.send_mail("a@example.com", ["b@example.org"], b"abcdefgh", chunk_size=3)
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n250 ok\r\n")
    events(conn)
    assert conn.data_to_send() == b"BDAT 3\r\nabcBDAT 3\r\ndefBDAT 2 LAST\r\ngh"
    conn.receive_data(b"552 5.3.4 too big\r\n503 no transaction\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b""
    conn.receive_data(b"503 no transaction\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b"RSET\r\n"
    conn.receive_data(b"250 ok\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult)
    assert result.data_replies == (r(552, "5.3.4", "too big"),) and result.accepted == ()


def test_bdat_failed_chunk_without_pipelining() -> None:
    conn = ready("CHUNKING")
    conn.send_mail("a@example.com", ["b@example.org"], b"abcdefgh", chunk_size=3)
    for reply in (b"250 ok\r\n", b"250 ok\r\n"):
        conn.data_to_send()
        conn.receive_data(reply)
        events(conn)
    assert conn.data_to_send() == b"BDAT 3\r\nabc"
    conn.receive_data(b"451 oops\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b"RSET\r\n"
    conn.receive_data(b"250 ok\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult) and result.data_replies == (r(451, None, "oops"),)


# --- LMTP (RFC 2033) ------------------------------------------------------------------


def test_lmtp_one_reply_per_accepted_recipient() -> None:
    conn = ready("PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", lmtp=True)
    conn.send_mail("a@example.com", ["b@x.example", "c@x.example", "d@x.example"], MESSAGE)
    assert conn.data_to_send() == (
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\n"
        b"RCPT TO:<d@x.example>\r\nDATA\r\n"
    )
    conn.receive_data(b"250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n250 ok\r\n354 go\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == MESSAGE + b".\r\n"
    conn.receive_data(b"250 2.0.0 delivered to b\r\n")
    assert events(conn) == []  # one more reply to come
    conn.receive_data(b"452 4.2.2 d is over quota\r\n")
    [result] = events(conn)
    assert result == TransactionResult(
        mail_reply=r(250, None, "ok"),
        recipient_replies=(
            (P("b@x.example"), r(250, None, "ok")),
            (P("c@x.example"), r(550, "5.1.1", "unknown")),
            (P("d@x.example"), r(250, None, "ok")),
        ),
        data_replies=(r(250, "2.0.0", "delivered to b"), r(452, "4.2.2", "d is over quota")),
        accepted=(P("b@x.example"),),
    )


def test_lmtp_pipelines_without_the_keyword_and_bdat_last_per_recipient() -> None:
    conn = ready("CHUNKING", lmtp=True)
    assert conn.can_pipeline
    conn.send_mail("a@example.com", ["b@x.example", "c@x.example"], b"hi\r\n", chunk_size=2)
    assert conn.data_to_send() == (
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\n"
    )
    conn.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n")
    events(conn)
    assert conn.data_to_send() == b"BDAT 2\r\nhiBDAT 2 LAST\r\n\r\n"
    conn.receive_data(b"250 ok\r\n550 c failed\r\n")
    assert events(conn) == []
    conn.receive_data(b"250 b ok\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult)
    assert result.data_replies == (r(550, None, "c failed"), r(250, None, "b ok"))
    assert result.accepted == (P("c@x.example"),)


def test_lmtp_data_refused_single_reply() -> None:
    conn = ready(lmtp=True)
    conn.send_mail("a@example.com", ["b@x.example", "c@x.example"], MESSAGE)
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n451 not now\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult)
    assert result.data_replies == (r(451, None, "not now"),) and result.accepted == ()


# --- AUTH (RFC 4954) ------------------------------------------------------------------


def test_auth_plain_initial_response() -> None:
    conn = ready("AUTH PLAIN")
    conn.authenticate(sasl.PlainClient("user", "pencil"))
    assert conn.data_to_send() == b"AUTH PLAIN " + b64encode(b"\x00user\x00pencil") + b"\r\n"
    conn.receive_data(b"235 2.7.0 ok\r\n")
    assert events(conn) == [AuthResult(success=True, reply=r(235, "2.7.0", "ok"))]
    assert conn.authenticated
    with pytest.raises(LocalProtocolError):
        conn.authenticate(sasl.PlainClient("user", "pencil"))


def test_auth_plain_without_initial_response() -> None:
    conn = ready("AUTH=PLAIN")
    conn.authenticate(sasl.PlainClient("user", "pencil"), initial_response=False)
    assert conn.data_to_send() == b"AUTH PLAIN\r\n"
    conn.receive_data(b"334 \r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b64encode(b"\x00user\x00pencil") + b"\r\n"
    conn.receive_data(b"535 5.7.8 bad credentials\r\n")
    assert events(conn) == [AuthResult(success=False, reply=r(535, "5.7.8", "bad credentials"))]
    assert not conn.authenticated


def test_auth_empty_initial_response_is_equals_sign() -> None:
    conn = ready("AUTH PLAIN")
    mech = _Named(first=b"", answers=(b"",))
    conn.authenticate(mech)
    assert conn.data_to_send() == b"AUTH PLAIN =\r\n"
    conn.receive_data(b"334 \r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b"\r\n"
    conn.receive_data(b"235 ok\r\n")
    assert events(conn) == [AuthResult(success=True, reply=r(235, None, "ok"))]
    assert mech.verified == [None]


def test_auth_long_initial_response_waits_for_334() -> None:
    conn = ready("AUTH PLAIN")
    first = b"x" * 600
    conn.authenticate(_Named(first=first))
    assert conn.data_to_send() == b"AUTH PLAIN\r\n"
    conn.receive_data(b"334 \r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b64encode(first) + b"\r\n"
    conn.receive_data(b"235 ok\r\n")
    assert events(conn) == [AuthResult(success=True, reply=r(235, None, "ok"))]


def test_auth_not_offered_or_mechanism_not_listed() -> None:
    conn = ready("PIPELINING")
    with pytest.raises(LocalProtocolError, match="AUTH"):
        conn.authenticate(sasl.PlainClient("u", "p"))
    conn = ready("AUTH SCRAM-SHA-256")
    with pytest.raises(LocalProtocolError, match="PLAIN"):
        conn.authenticate(sasl.PlainClient("u", "p"))
    with pytest.raises(LocalProtocolError):
        conn.authenticate(object())  # type: ignore[arg-type]
    assert conn.data_to_send() == b""


def test_auth_malformed_challenge_cancels() -> None:
    conn = ready("AUTH PLAIN")
    conn.authenticate(sasl.PlainClient("u", "p"), initial_response=False)
    conn.data_to_send()
    conn.receive_data(b"334 !!!notbase64\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b"*\r\n"
    conn.receive_data(b"501 5.0.0 cancelled\r\n")
    [result] = events(conn)
    assert isinstance(result, AuthResult) and not result.success
    assert result.error is not None and "base64" in result.error


def test_auth_plain_challenge_after_initial_response_cancels() -> None:
    conn = ready("AUTH PLAIN")
    conn.authenticate(sasl.PlainClient("u", "p"))
    conn.data_to_send()
    conn.receive_data(b"334 \r\n")
    events(conn)
    assert conn.data_to_send() == b"*\r\n"
    conn.receive_data(b"235 ok anyway\r\n")
    [result] = events(conn)
    assert isinstance(result, AuthResult) and not result.success and not conn.authenticated


def test_auth_scram_against_canned_server() -> None:
    conn = ready("AUTH SCRAM-SHA-256 PLAIN")
    mech = sasl.ScramSha256Client("user", "pencil", nonce="clientnonce")
    conn.authenticate(mech)
    line = conn.data_to_send()
    assert line.startswith(b"AUTH SCRAM-SHA-256 ")
    client_first = b64decode(line.split(b" ")[2].strip())
    assert client_first == b"n,,n=user,r=clientnonce"
    server = sasl.ScramSha256Server(nonce="servernonce")
    step = server.start(client_first)
    assert isinstance(step, sasl.NeedCredentials)
    step = server.provide(sasl.scram_secrets("pencil", salt=b"salty-salt", iterations=4096))
    assert isinstance(step, sasl.Challenge)
    conn.receive_data(b"334 " + b64encode(step.data) + b"\r\n")
    assert events(conn) == []
    client_final = b64decode(conn.data_to_send().strip())
    step = server.receive(client_final)
    assert isinstance(step, sasl.Success) and step.final_data
    conn.receive_data(b"334 " + b64encode(step.final_data) + b"\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b"\r\n"  # RFC 4954 §4: empty answer to the final data
    conn.receive_data(b"235 2.7.0 ok\r\n")
    assert events(conn) == [AuthResult(success=True, reply=r(235, "2.7.0", "ok"))]
    assert conn.authenticated


def test_auth_scram_forged_server_signature() -> None:
    conn = ready("AUTH SCRAM-SHA-256")
    conn.authenticate(sasl.ScramSha256Client("user", "pencil", nonce="clientnonce"))
    conn.data_to_send()
    salt = b64encode(b"salty-salt").decode()
    conn.receive_data(b"334 " + b64encode(f"r=clientnonceSRV,s={salt},i=4096".encode()) + b"\r\n")
    events(conn)
    assert conn.data_to_send().endswith(b"\r\n")
    conn.receive_data(b"334 " + b64encode(b"v=" + b64encode(b"x" * 32)) + b"\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b"*\r\n"
    conn.receive_data(b"501 cancelled\r\n")
    [result] = events(conn)
    assert isinstance(result, AuthResult) and not result.success and result.error


def test_auth_235_without_server_proof_fails() -> None:
    conn = ready("AUTH SCRAM-SHA-256")
    conn.authenticate(sasl.ScramSha256Client("user", "pencil", nonce="clientnonce"))
    conn.data_to_send()
    conn.receive_data(b"235 trust me\r\n")
    [result] = events(conn)
    assert isinstance(result, AuthResult) and not result.success and result.error
    assert not conn.authenticated


# --- STARTTLS (RFC 3207) --------------------------------------------------------------


def test_starttls_then_tls_started_resets() -> None:
    conn = ready("PIPELINING", "STARTTLS", "AUTH PLAIN")
    with pytest.raises(LocalProtocolError):
        conn.tls_started()
    conn.starttls()
    assert conn.data_to_send() == b"STARTTLS\r\n"
    with pytest.raises(LocalProtocolError):
        conn.noop()  # nothing may follow STARTTLS
    conn.receive_data(b"220 2.0.0 go ahead\r\n250 injected\r\n")
    assert events(conn) == [Response(command="STARTTLS", reply=r(220, "2.0.0", "go ahead"))]
    assert conn.next_event() is NEED_DATA  # the injected reply was dropped
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"250 more\r\n")
    with pytest.raises(LocalProtocolError):
        conn.ehlo("client.example")
    conn.tls_started()
    assert conn.tls_active and dict(conn.extensions) == {}
    with pytest.raises(LocalProtocolError):
        conn.send_mail("a@example.com", ["b@example.org"], MESSAGE)
    conn.ehlo("client.example")
    assert conn.data_to_send() == b"EHLO client.example\r\n"
    conn.receive_data(ehlo_reply("AUTH PLAIN"))
    events(conn)
    assert dict(conn.extensions) == {"AUTH": "PLAIN"}
    with pytest.raises(LocalProtocolError):
        conn.starttls()


def test_starttls_refused_or_not_offered() -> None:
    conn = ready("PIPELINING")
    with pytest.raises(LocalProtocolError):
        conn.starttls()
    conn = ready("STARTTLS")
    conn.starttls()
    conn.data_to_send()
    conn.receive_data(b"454 4.7.0 TLS not available\r\n")
    assert events(conn) == [
        Response(command="STARTTLS", reply=r(454, "4.7.0", "TLS not available"))
    ]
    conn.noop()
    assert conn.data_to_send() == b"NOOP\r\n"


# --- closing --------------------------------------------------------------------------


def test_quit() -> None:
    conn = ready()
    conn.quit()
    assert conn.data_to_send() == b"QUIT\r\n"
    with pytest.raises(LocalProtocolError):
        conn.noop()
    conn.receive_data(b"221 2.0.0 bye\r\n")
    assert events(conn) == [
        Response(command="QUIT", reply=r(221, "2.0.0", "bye")),
        ConnectionClosed(),
    ]
    conn.receive_data(b"")
    assert events(conn) == []


def test_server_closes_mid_transaction() -> None:
    conn = ready("PIPELINING")
    conn.send_mail("a@example.com", ["b@example.org"], MESSAGE)
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n250 o")
    conn.receive_data(b"")
    assert events(conn) == [ConnectionClosed()]
    assert conn.closed
    with pytest.raises(LocalProtocolError):
        conn.noop()


def test_421_mid_transaction_ends_it() -> None:
    conn = ready("PIPELINING")
    conn.send_mail("a@example.com", ["b@example.org", "c@example.org"], MESSAGE)
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n421 4.3.0 shutting down\r\n")
    assert events(conn) == [
        TransactionResult(
            mail_reply=r(250, None, "ok"),
            recipient_replies=((P("b@example.org"), r(421, "4.3.0", "shutting down")),),
            data_replies=(),
            accepted=(),
        )
    ]
    with pytest.raises(LocalProtocolError):
        conn.rset()
    conn.receive_data(b"")
    assert events(conn) == [ConnectionClosed()]


def test_421_to_a_simple_command() -> None:
    conn = ready()
    conn.noop()
    conn.rset()
    conn.receive_data(b"421 closing\r\n")
    assert events(conn) == [Response(command="NOOP", reply=r(421, None, "closing"))]
    assert conn.data_to_send() == b"NOOP\r\n"  # RSET is never sent
    conn.receive_data(b"")
    assert events(conn) == [ConnectionClosed()]


# --- malformed replies ----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"250 unexpected\r\n",  # nothing asked
        b"25 short\r\n",
        b"abc text\r\n",
        b"150 preliminary\r\n",
        b"650 out of range\r\n",
        b"250x no separator\r\n",
        b"250-first\r\n251 mixed codes\r\n",
        b"250 " + b"x" * 3000 + b"\r\n",
        b"250 " + b"x" * 3000,  # no line end yet: still too long to buffer
        b"250-x\r\n" * 101 + b"250 end\r\n",
    ],
)
def test_malformed_replies(data: bytes) -> None:
    conn = ready()
    if not data.startswith(b"250 unexpected"):
        conn.noop()
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError) as first:
        events(conn)
    # The core stays failed: every later call raises the same error.
    for call in (conn.next_event, conn.noop, lambda: conn.receive_data(b"250 OK\r\n"),
                 lambda: conn.receive_data(b"")):
        with pytest.raises(RemoteProtocolError) as again:
            call()
        assert again.value is first.value
    assert conn.closed


def test_reply_limits_are_configurable() -> None:
    with pytest.raises(LocalProtocolError):
        ClientConnection(max_reply_line=100)
    conn = ClientConnection(max_reply_lines=2)
    conn.receive_data(b"220-a\r\n220-b\r\n220 c\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_lenient_line_ends_and_hostile_text() -> None:
    conn = ClientConnection()
    conn.receive_data(b"220 a\x00b\rc \xff\n")
    assert events(conn) == [Greeting(reply=r(220, None, "a\ufffdb\ufffdc \ufffd"))]


# --- property tests -------------------------------------------------------------------

SCRIPT_SMTP = (
    b"220-mx.example.net ESMTP\r\n220 hello\r\n"
    + ehlo_reply("PIPELINING", "SIZE 100000", "8BITMIME", "ENHANCEDSTATUSCODES")
    + b"250 2.1.0 ok\r\n250-2.1.5 ok\r\n250 2.1.5 still ok\r\n550 5.1.1 no\r\n"
    + b"354 go\r\n250 2.0.0 queued\r\n221 2.0.0 bye\r\n"
)
SCRIPT_LMTP = (
    GREETING
    + ehlo_reply("CHUNKING", "ENHANCEDSTATUSCODES")
    + b"250 ok\r\n250 ok\r\n250 ok\r\n"
    + b"250 chunk\r\n250 2.0.0 b ok\r\n452 4.2.2 c full\r\n221 bye\r\n"
)


def drive(chunks: list[bytes], *, lmtp: bool) -> tuple[list[ClientEvent], bytes]:
    """Play the client against scripted server bytes, acting on its events."""
    conn = ClientConnection(lmtp=lmtp)
    seen: list[ClientEvent] = []
    out = bytearray()
    for chunk in chunks:
        conn.receive_data(chunk)
        for event in conn.events():
            seen.append(event)
            if isinstance(event, Greeting):
                conn.hello("client.example")
            elif isinstance(event, Response) and event.command in ("EHLO", "LHLO"):
                conn.send_mail(
                    "a@example.com",
                    ["b@example.org", "c@example.org"],
                    b"Hello\n.dot\r\n",
                    chunk_size=8,
                )
            elif isinstance(event, TransactionResult):
                conn.quit()
        out += conn.data_to_send()
    conn.receive_data(b"")
    seen += events(conn)
    return seen, bytes(out)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = []
    last = 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return [piece for piece in pieces if piece]  # b"" would mean the server closed


@pytest.mark.parametrize("lmtp", [False, True])
def test_scripted_sessions_whole_and_bytewise(lmtp: bool) -> None:
    script = SCRIPT_LMTP if lmtp else SCRIPT_SMTP
    whole = drive([script], lmtp=lmtp)
    assert drive([script[i : i + 1] for i in range(len(script))], lmtp=lmtp) == whole
    seen, out = whole
    assert isinstance(seen[-1], ConnectionClosed)
    [result] = [e for e in seen if isinstance(e, TransactionResult)]
    if lmtp:
        assert result.accepted == (P("b@example.org"),)
        assert out.endswith(b"BDAT 8\r\nHello\r\n.BDAT 5 LAST\r\ndot\r\nQUIT\r\n")
    else:
        assert result.accepted == (P("b@example.org"),)
        assert out.endswith(b"DATA\r\nHello\r\n..dot\r\n.\r\nQUIT\r\n")


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=12), st.booleans())
def test_fragmentation_gives_same_events(cuts: list[int], lmtp: bool) -> None:
    script = SCRIPT_LMTP if lmtp else SCRIPT_SMTP
    assert drive(_split(script, cuts), lmtp=lmtp) == drive([script], lmtp=lmtp)


_LINES = st.sampled_from(
    [
        b"220 hi",
        b"220-hi",
        b"250 ok",
        b"250-PIPELINING",
        b"250-CHUNKING",
        b"250-SIZE 5",
        b"250 2.0.0 ok",
        b"354 go",
        b"334 ",
        b"421 bye",
        b"550 5.1.1 no",
        b"221 bye",
        b"999 x",
        b"",
        b"25",
    ]
)


@given(
    st.lists(st.one_of(_LINES, st.binary(max_size=20)), max_size=20),
    st.lists(st.integers(min_value=0, max_value=1000), max_size=5),
    st.booleans(),
)
def test_arbitrary_server_input_only_remote_errors(
    lines: list[bytes], cuts: list[int], lmtp: bool
) -> None:
    data = b"".join(line + b"\r\n" for line in lines)
    conn = ClientConnection(lmtp=lmtp)
    try:
        for chunk in [*_split(data, cuts), b""]:
            conn.receive_data(chunk)
            for event in conn.events():
                with contextlib.suppress(LocalProtocolError):
                    if isinstance(event, Greeting):
                        conn.hello("client.example")
                    elif isinstance(event, Response) and event.command in ("EHLO", "LHLO"):
                        conn.send_mail("a@example.com", ["b@example.org"], b"x\r\n")
                    elif isinstance(event, TransactionResult):
                        conn.noop()
            conn.data_to_send()
    except RemoteProtocolError:
        pass


@given(
    st.binary(max_size=500)
    | st.lists(st.sampled_from([b"\r", b"\n", b".", b"a", b"\xe9"])).map(b"".join)
)
def test_dot_stuffed_body_is_clean(message: bytes) -> None:
    conn = ready("PIPELINING", "8BITMIME")
    conn.send_mail("a@example.com", ["b@example.org"], message)
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    events(conn)
    wire = conn.data_to_send()
    assert b"\r" not in wire.replace(b"\r\n", b"") and b"\n" not in wire.replace(b"\r\n", b"")
    expected = normalize_line_ends(message)
    if expected:
        assert wire.endswith(b"\r\n.\r\n")
        if not expected.endswith(b"\r\n"):
            expected += b"\r\n"
    else:
        assert wire == b".\r\n"
    reader = DataReader()
    consumed, chunks = reader.feed(wire)
    assert reader.done and consumed == len(wire) and reader.error is None
    assert b"".join(chunks) == expected


# --- end to end with the ServerConnection ---------------------------------------------


def converse(
    client: ClientConnection,
    server: ServerConnection,
    on_event: Callable[[ClientEvent], None],
    policy: Callable[[ServerEvent], Decision | None] = accept_all,
) -> tuple[list[ClientEvent], list[ServerEvent]]:
    """Move bytes both ways until neither side has anything to say."""
    client_events: list[ClientEvent] = []
    server_events: list[ServerEvent] = []
    for _ in range(1000):
        to_client = server.data_to_send()
        if to_client:
            client.receive_data(to_client)
        for event in client.events():
            client_events.append(event)
            on_event(event)
        to_server = client.data_to_send()
        if to_server:
            server.receive_data(to_server)
        server_events += pump(server, policy)
        if not to_client and not to_server:
            return client_events, server_events
    raise AssertionError("the conversation does not end")


def test_end_to_end_pipelined_multi_recipient() -> None:
    server = ServerConnection(ServerConfig(hostname="mx.example.net"))
    client = ClientConnection()

    def policy(event: ServerEvent) -> Decision | None:
        mailbox = event.path.mailbox if isinstance(event, RcptTo) else None
        if mailbox is not None and mailbox.local_part == "nobody":
            return Reject(reply=Reply(code=550, enhanced="5.1.1", lines=("no such user",)))
        return accept_all(event)

    def on_event(event: ClientEvent) -> None:
        if isinstance(event, Greeting):
            client.ehlo("client.example")
        elif isinstance(event, Response) and event.command == "EHLO":
            assert client.can_pipeline and "CHUNKING" in client.extensions
            client.send_mail(
                "a@example.com",
                ["b@example.org", "nobody@example.org", "jörg@example.org"],
                "Subject: Grüße\n\n.hello\n".encode(),
                use_bdat=False,
            )
        elif isinstance(event, TransactionResult):
            client.quit()

    seen, server_seen = converse(client, server, on_event, policy)
    [result] = [e for e in seen if isinstance(e, TransactionResult)]
    assert result.accepted == (P("b@example.org"), P("jörg@example.org"))
    assert result.refused == (P("nobody@example.org"),)
    assert isinstance(seen[-1], ConnectionClosed)
    [complete] = [e for e in server_seen if isinstance(e, MessageComplete)]
    assert complete.envelope.mail_parameters.body == "8BITMIME"
    assert complete.envelope.smtputf8


def test_end_to_end_bdat() -> None:
    server = ServerConnection(ServerConfig())
    client = ClientConnection()
    message = b"Subject: chunks\r\n\r\n" + b"0123456789\r\n" * 50

    def on_event(event: ClientEvent) -> None:
        if isinstance(event, Greeting):
            client.ehlo("client.example")
        elif isinstance(event, Response) and event.command == "EHLO":
            client.send_mail("a@example.com", ["b@example.org"], message, chunk_size=100)

    seen, server_seen = converse(client, server, on_event)
    [result] = [e for e in seen if isinstance(e, TransactionResult)]
    assert result.success
    [complete] = [e for e in server_seen if isinstance(e, MessageComplete)]
    assert complete.envelope.chunked and complete.envelope.size == len(message)


@pytest.mark.parametrize("use_bdat", [False, True])
def test_end_to_end_lmtp(use_bdat: bool) -> None:
    server = ServerConnection(ServerConfig(lmtp=True))
    client = ClientConnection(lmtp=True)
    replies = (
        Reply(code=250, enhanced="2.0.0", lines=("delivered",)),
        Reply(code=552, enhanced="5.2.2", lines=("mailbox full",)),
    )

    def policy(event: ServerEvent) -> Decision | None:
        if isinstance(event, MessageComplete):
            assert event.envelope.chunked is use_bdat
            return LMTPReplies(replies=replies)
        return accept_all(event)

    def on_event(event: ClientEvent) -> None:
        if isinstance(event, Greeting):
            client.hello("client.example")
        elif isinstance(event, Response) and event.command == "LHLO":
            client.send_mail(
                "a@example.com", ["b@example.org", "c@example.org"], MESSAGE, use_bdat=use_bdat
            )

    seen, _ = converse(client, server, on_event, policy)
    [result] = [e for e in seen if isinstance(e, TransactionResult)]
    assert result.data_replies == replies
    assert result.accepted == (P("b@example.org"),)


@pytest.mark.parametrize(
    ("mech", "good"),
    [
        (sasl.ScramSha256Client("user", "pencil"), True),
        (sasl.PlainClient("user", "pencil"), True),
        (sasl.PlainClient("user", "wrong"), False),
        (sasl.ScramSha256Client("user", "wrong"), False),
    ],
)
def test_end_to_end_auth(mech: sasl.ClientMechanism, good: bool) -> None:
    config = ServerConfig(auth_mechanisms=("SCRAM-SHA-256", "PLAIN"), auth_without_tls=True)
    server = ServerConnection(config)
    client = ClientConnection()

    def on_event(event: ClientEvent) -> None:
        if isinstance(event, Greeting):
            client.ehlo("client.example")
        elif isinstance(event, Response) and event.command == "EHLO":
            client.authenticate(mech)

    seen, _ = converse(client, server, on_event, credentials_policy({"user": "pencil"}))
    [result] = [e for e in seen if isinstance(e, AuthResult)]
    assert result.success is good
    assert client.authenticated is good


def test_end_to_end_starttls() -> None:
    server = ServerConnection(ServerConfig(starttls=True))
    client = ClientConnection()
    hellos: list[Response] = []

    def on_event(event: ClientEvent) -> None:
        if isinstance(event, Greeting):
            client.ehlo("client.example")
        elif isinstance(event, Response) and event.command == "EHLO":
            hellos.append(event)
            if not client.tls_active:
                client.starttls()
        elif isinstance(event, Response) and event.command == "STARTTLS":
            assert event.reply.code == 220
            server.data_to_send()
            server.tls_started()
            client.tls_started()
            client.ehlo("client.example")

    converse(client, server, on_event)
    assert len(hellos) == 2 and client.tls_active and server.tls_active
    assert "STARTTLS" not in client.extensions


# --- more edges -----------------------------------------------------------------------


def test_bdat_pipelined_mail_refused_sends_nothing_more() -> None:
    conn = ready("PIPELINING", "CHUNKING")
    conn.send_mail("a@example.com", ["b@example.org"], MESSAGE)
    conn.data_to_send()
    conn.receive_data(b"550 no\r\n503 need MAIL\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult) and result.data_replies == ()
    assert conn.data_to_send() == b""


def test_421_to_mail() -> None:
    conn = ready()
    conn.send_mail("a@example.com", ["b@example.org"], MESSAGE)
    conn.data_to_send()
    conn.receive_data(b"421 bye\r\n")
    assert events(conn) == [
        TransactionResult(
            mail_reply=r(421, None, "bye"), recipient_replies=(), data_replies=(), accepted=()
        )
    ]


def test_421_among_lmtp_final_replies_keeps_earlier_deliveries() -> None:
    conn = ready(lmtp=True)
    conn.send_mail("a@example.com", ["b@x.example", "c@x.example"], MESSAGE)
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 b ok\r\n421 dying\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult)
    assert result.data_replies == (r(250, None, "b ok"), r(421, None, "dying"))
    assert result.accepted == (P("b@x.example"),)
    assert conn.lmtp


def test_auth_server_insists_after_cancel() -> None:
    conn = ready("AUTH PLAIN")
    conn.authenticate(sasl.PlainClient("u", "p"), initial_response=False)
    conn.data_to_send()
    conn.receive_data(b"334 %%%\r\n")
    events(conn)
    assert conn.data_to_send() == b"*\r\n"
    conn.receive_data(b"334 \r\n")
    events(conn)
    assert conn.data_to_send() == b"*\r\n"
    conn.receive_data(b"501 ok, cancelled\r\n")
    [result] = events(conn)
    assert isinstance(result, AuthResult) and not result.success


def test_implicit_tls_and_bad_domains() -> None:
    conn = ClientConnection(tls_active=True)
    assert conn.tls_active
    conn.receive_data(GREETING)
    events(conn)
    for domain in ("", "two words", "bücher.example"):
        with pytest.raises(LocalProtocolError):
            conn.ehlo(domain)
    assert conn.data_to_send() == b""
    conn.ehlo("[192.0.2.1]")
    assert conn.data_to_send() == b"EHLO [192.0.2.1]\r\n"


def test_awaiting_names_the_reply_the_client_waits_for() -> None:
    client = ClientConnection()
    assert client.awaiting == "GREETING" and client.replies_received == 0
    client.receive_data(b"220 mx.test ESMTP\r\n")
    list(client.events())
    assert client.awaiting is None and client.replies_received == 1
    client.ehlo("c.test")
    assert client.awaiting == "EHLO"
    client.receive_data(b"250-mx.test\r\n250 PIPELINING\r\n")
    list(client.events())
    client.send_mail("a@b.test", ["c@d.test", "e@d.test"], b"hi\r\n")
    seen = []
    for reply in (b"250 ok\r\n", b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n", b"250 done\r\n"):
        seen.append(client.awaiting)
        client.receive_data(reply)
        list(client.events())
    assert seen == ["MAIL", "RCPT", "RCPT", "DATA", "FINAL"]
    assert client.awaiting is None and client.replies_received == 7
