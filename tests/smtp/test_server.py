"""The SMTP/LMTP server core, driven with bytes alone (no sockets)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents import sasl
from mailagents.smtp import (
    NEED_DATA,
    PAUSED,
    Accept,
    Authenticated,
    AuthenticationFailed,
    BareLineEndPolicy,
    CommandRejected,
    ConnectionClosed,
    DataChunk,
    Hello,
    LMTPReplies,
    LocalProtocolError,
    MailFrom,
    MessageComplete,
    MessageRejected,
    Quit,
    RcptTo,
    Reject,
    RemoteProtocolError,
    Reply,
    Reset,
    ServerConfig,
    ServerConnection,
    StartTLS,
    State,
)

from .helpers import Policy, accept_all, codes, credentials_policy, feed, pump, run

EHLO = b"EHLO client.test\r\n"
TXN = b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"


def body_of(events: list[object]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, DataChunk))


def last_reply(out: bytes) -> bytes:
    return out.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1]


# --- greeting and EHLO -----------------------------------------------------------------


def test_greeting_and_ehlo_lists_enabled_extensions() -> None:
    cfg = ServerConfig(hostname="mx.test", max_message_size=1000)
    events, out, _ = run(EHLO, ServerConnection(cfg))
    assert events == [Hello(command="EHLO", domain="client.test")]
    lines = out.split(b"\r\n")
    assert lines[0] == b"220 mx.test ESMTP mailagents"
    assert lines[1] == b"250-mx.test Hello client.test"
    ext = {line[4:] for line in lines[2:] if line}
    assert {b"SIZE 1000", b"PIPELINING", b"8BITMIME", b"SMTPUTF8", b"ENHANCEDSTATUSCODES",
            b"CHUNKING", b"DSN"} <= ext
    assert b"STARTTLS" not in ext and not any(e.startswith(b"AUTH") for e in ext)
    assert b"REQUIRETLS" not in ext


def test_extensions_are_announced_only_when_enabled() -> None:
    cfg = ServerConfig(pipelining=False, eightbitmime=False, chunking=False, dsn=False,
                       enhanced_status_codes=False, max_message_size=None)
    _, out, _ = run(EHLO, ServerConnection(cfg))
    ext = [line[4:] for line in out.split(b"\r\n")[2:] if line]
    # SMTPUTF8 is never offered without 8BITMIME (RFC 6531 §3.1).
    assert ext == [b"SIZE"]


def test_helo_gets_no_extensions_and_no_enhanced_code() -> None:
    _, out, _ = run(b"HELO client.test\r\nMAIL FROM:<a@b.test> SIZE=10\r\n")
    assert b"250 localhost\r\n" in out
    # Without EHLO no extension parameter is known: 555 (RFC 5321 §4.1.1.11).
    assert last_reply(out).startswith(b"555 5.5.4")


def test_refused_greeting_allows_only_quit() -> None:
    server = ServerConnection(greeting=Reply(code=554, lines=("No SMTP service here",)))
    events, out, _ = run(EHLO + b"NOOP\r\nQUIT\r\n", server)
    assert out.startswith(b"554 No SMTP service here\r\n")
    assert codes(out)[1:] == [503, 503, 221]
    assert isinstance(events[-1], Quit)


def test_rejected_hello_leaves_session_unready() -> None:
    def policy(event: object) -> Accept | Reject | None:
        if isinstance(event, Hello) and event.domain == "bad":
            return Reject(reply=Reply(code=550, enhanced="5.7.1", lines=("go away",)))
        return accept_all(event)  # type: ignore[arg-type]

    _, out, _ = run(b"EHLO bad\r\nMAIL FROM:<a@b.test>\r\nEHLO good\r\n", policy=policy)
    assert codes(out) == [220, 550, 503, 250]
    # RFC 2034 §4: no enhanced code in the EHLO reply, rejection included.
    assert b"550 go away" in out


# --- the command table ----------------------------------------------------------------

# (input after the greeting, expected codes of the replies after EHLO's 250)
MALFORMED = [
    (b"FOO\r\n", [500]),
    (b"MAILFROM:<a@b.test>\r\n", [500]),
    (b"MAIL TO:<a@b.test>\r\n", [501]),
    (b"MAIL FROM:a@b.test\r\n", [501]),  # brackets are required (aiosmtpd #563)
    (b"MAIL FROM:<a@b.test> FOO=1\r\n", [555]),
    (b"MAIL FROM:<a@b.test> SIZE=abc\r\n", [501]),
    (b"MAIL FROM:<a@b.test> BODY=9BIT\r\n", [501]),
    (b"MAIL FROM:<a..b@b.test>\r\n", [501]),
    (b"MAIL FROM:<>\r\nMAIL FROM:<>\r\n", [250, 503]),
    (b"RCPT TO:<a@b.test>\r\n", [503]),
    (b"DATA\r\n", [503]),
    (b"MAIL FROM:<>\r\nDATA\r\n", [250, 554]),
    (b"MAIL FROM:<>\r\nRCPT TO:<a@b.test> NOTIFY=SOMETIMES\r\n", [250, 501]),
    (b"MAIL FROM:<>\r\nRCPT TO:<a@>\r\n", [250, 501]),
    (b"MAIL FROM:<>\r\nRCPT TO:<>\r\n", [250, 501]),
    (b"MAIL FROM:<>\r\nRCPT TO:<postmaster>\r\n", [250, 250]),
    (b"MAIL FROM:<>\r\nRCPT TO:<a@b.test>\r\nDATA x\r\n", [250, 250, 501]),
    (b"RSET x\r\n", [501]),
    (b"QUIT now\r\n", [501]),
    (b"VRFY\r\n", [501]),
    (b"VRFY someone\r\n", [252]),
    (b"EXPN list\r\n", [502]),
    (b"HELP\r\n", [214]),
    (b"NOOP anything at all\r\n", [250]),
    (b"STARTTLS\r\n", [502]),
    (b"AUTH PLAIN\r\n", [502]),
    (b"LHLO client.test\r\n", [500]),
    (b"EHLO\r\n", [501]),
    (b"EHLO two words\r\n", [501]),
    (b"BDAT x\r\n", [501]),
    (b"BDAT 3\r\nabc", [503]),
    (b"MAIL FROM:<a@b.test> SIZE=999999999999\r\n", [552]),
    (b"MAIL FROM:<\xc3\xa9@b.test>\r\n", [553]),
    (b"MAIL FROM:<a@b.test>\x00\r\n", [500]),
    (b"MAIL FROM:<a@b.test>\n", [500]),
    (b"\xff\xfe\r\n", [500]),
    (b"X" * 2000 + b"\r\nNOOP\r\n", [500, 250]),
]


@pytest.mark.parametrize(("data", "expected"), MALFORMED)
def test_malformed_commands_get_the_rfc_reply(data: bytes, expected: list[int]) -> None:
    events, out, _ = run(EHLO + data)
    assert codes(out)[2:] == expected
    # The same whole and one byte at a time.
    pieces = [EHLO] + [data[i : i + 1] for i in range(len(data))]
    _, out2, _ = run(pieces)
    assert out2 == out


@pytest.mark.parametrize(
    ("verb", "before"),
    [("MAIL", b""), ("RCPT", b""), ("DATA", b""), ("RSET", b""), ("NOOP", b""),
     ("VRFY", b""), ("AUTH", b""), ("STARTTLS", b"")],
)
def test_commands_before_ehlo(verb: str, before: bytes) -> None:
    _, out, _ = run(before + verb.encode() + b" x\r\n")
    code = codes(out)[1]
    if verb in ("NOOP", "VRFY", "RSET"):
        assert code in (250, 252, 501)
    else:
        assert code == 503


def test_state_table_is_walked_for_every_state_and_command() -> None:
    from mailagents.smtp._state import COMMANDS, in_sequence

    for state in State:
        for command in COMMANDS:
            allowed = in_sequence(state, command)
            if state in (State.DATA, State.BDAT_CHUNK, State.AUTH, State.TLS_PENDING,
                         State.CLOSED):
                assert not allowed
            if state is State.REFUSED:
                assert allowed == (command == "QUIT")


# --- a transaction, pipelined -----------------------------------------------------------


def test_pipelined_transaction_replies_in_order_whatever_the_fragmentation() -> None:
    session = (
        EHLO
        + b"MAIL FROM:<a@example.test> SIZE=20\r\n"
        + b"RCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test> NOTIFY=SUCCESS,FAILURE\r\n"
        + b"DATA\r\n"
        + b"Subject: x\r\n\r\n..leading dot\r\n.\r\n"
        + b"RSET\r\nQUIT\r\n"
    )
    events, out, _ = run(session)
    assert codes(out) == [220, 250, 250, 250, 250, 354, 250, 250, 221]
    assert body_of(events) == b"Subject: x\r\n\r\n.leading dot\r\n"
    complete = next(e for e in events if isinstance(e, MessageComplete))
    env = complete.envelope
    assert str(env.mail_from) == "<a@example.test>"
    assert [str(r.path) for r in env.recipients] == ["<b@example.test>", "<c@example.test>"]
    assert env.recipients[1].parameters.notify == frozenset({"SUCCESS", "FAILURE"})
    assert env.size == len(b"Subject: x\r\n\r\n.leading dot\r\n")
    for step in (1, 2, 3, 7):
        pieces = [session[i : i + step] for i in range(0, len(session), step)]
        events2, out2, _ = run(pieces)
        assert out2 == out
        assert body_of(events2) == body_of(events)


def test_policy_rejections_are_sent_in_order() -> None:
    def policy(event: object) -> Accept | Reject | None:
        if isinstance(event, RcptTo) and event.path.mailbox is not None \
                and event.path.mailbox.local_part == "nobody":
            return Reject(reply=Reply(code=550, enhanced="5.1.1", lines=("no such user",)))
        return accept_all(event)  # type: ignore[arg-type]

    data = EHLO + b"MAIL FROM:<>\r\nRCPT TO:<nobody@x.test>\r\nRCPT TO:<ok@x.test>\r\nDATA\r\n"
    _, out, _ = run(data + b"hi\r\n.\r\n", policy=policy)
    assert codes(out) == [220, 250, 250, 550, 250, 354, 250]
    assert b"550 5.1.1 no such user" in out


def test_paused_connection_buffers_and_resumes() -> None:
    server = ServerConnection()
    server.receive_data(EHLO + b"MAIL FROM:<>\r\nNOOP\r\n")
    assert server.next_event() == Hello(command="EHLO", domain="client.test")
    assert server.next_event() is PAUSED
    assert server.paused
    server.send(Accept())
    assert isinstance(server.next_event(), MailFrom)
    assert server.next_event() is PAUSED
    server.send(Reject(reply=Reply(code=451, enhanced="4.3.0", lines=("try later",))))
    assert server.next_event() is NEED_DATA
    assert codes(server.data_to_send()) == [220, 250, 451, 250]
    with pytest.raises(LocalProtocolError):
        server.send(Accept())


def test_accept_with_own_reply_and_misuse() -> None:
    server = ServerConnection()
    server.receive_data(EHLO)
    server.next_event()
    with pytest.raises(LocalProtocolError):
        server.send(Accept(reply=Reply(code=250, lines=("x",))))
    server.send(Accept())
    feed(server, TXN + b"x\r\n.\r\n",
         lambda e: None if isinstance(e, MessageComplete) else accept_all(e))
    assert server.paused
    with pytest.raises(LocalProtocolError):
        server.send(LMTPReplies(replies=(Reply(code=250),)))
    with pytest.raises(LocalProtocolError):
        server.send(Accept(reply=Reply(code=450, enhanced="4.0.0")))
    server.send(Accept(reply=Reply(code=250, enhanced="2.0.0", lines=("queued as X1",))))
    assert server.data_to_send().endswith(b"250 2.0.0 queued as X1\r\n")
    with pytest.raises(LocalProtocolError):
        Reject(reply=Reply(code=250))


def test_new_ehlo_resets_transaction() -> None:
    events, out, _ = run(EHLO + b"MAIL FROM:<>\r\n" + EHLO + b"RCPT TO:<a@b.test>\r\n")
    assert any(isinstance(e, Reset) for e in events)
    assert codes(out)[-1] == 503


def test_rset_clears_transaction() -> None:
    events, out, _ = run(EHLO + b"MAIL FROM:<>\r\nRCPT TO:<a@b.test>\r\nRSET\r\nDATA\r\n")
    assert isinstance(events[-1], CommandRejected) and events[-1].command == "DATA"
    assert any(isinstance(e, Reset) for e in events)


def test_too_many_recipients_get_452() -> None:
    rcpts = b"".join(b"RCPT TO:<u%d@b.test>\r\n" % i for i in range(101))
    _, out, _ = run(EHLO + b"MAIL FROM:<>\r\n" + rcpts)
    assert codes(out)[-1] == 452
    assert b"452 4.5.3" in out
    assert codes(out).count(250) == 102


# --- DATA: limits and smuggling -----------------------------------------------------------


def test_message_over_size_is_consumed_then_rejected_and_session_goes_on() -> None:
    server = ServerConnection(ServerConfig(max_message_size=100))
    big = b"x" * 78 + b"\r\n"
    events, out, _ = run(EHLO + TXN + big * 5 + b".\r\nNOOP\r\n", server)
    assert codes(out)[-2:] == [552, 250]
    assert b"552 5.3.4" in out
    assert any(isinstance(e, MessageRejected) for e in events)
    assert not any(isinstance(e, MessageComplete) for e in events)


def test_long_lines_accepted_by_default_and_rejected_when_configured() -> None:
    line = b"y" * 5000 + b"\r\n"
    events, out, _ = run(EHLO + TXN + line + b".\r\n")
    assert codes(out)[-1] == 250 and body_of(events) == line
    strict = ServerConnection(ServerConfig(max_text_line=1000))
    events, out, _ = run(EHLO + TXN + line + b".\r\nNOOP\r\n", strict)
    assert codes(out)[-2:] == [500, 250]


SMUGGLED = [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n", b"\r\n\x00.\r\n",
            b"\r\n.\n", b"\n.\r", b"\r\n .\r\n", b"\n..\n", b"\r\n.\r\r\n"]


@pytest.mark.parametrize("marker", SMUGGLED)
@pytest.mark.parametrize("policy", list(BareLineEndPolicy))
def test_smuggled_end_of_data_never_ends_the_message(
    marker: bytes, policy: BareLineEndPolicy
) -> None:
    smuggled = b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@x.test>\r\nDATA\r\nspoof\r\n"
    content = b"Subject: hi\r\n\r\nbody" + marker + smuggled
    server = ServerConnection(ServerConfig(bare_line_ends=policy))
    events, out, _ = run(EHLO + TXN + content + b"\r\n.\r\nQUIT\r\n", server)
    mails = [e for e in events if isinstance(e, MailFrom)]
    assert len(mails) == 1, "a smuggled command was executed"
    has_bare = marker not in (b"\r\n .\r\n", b"\r\n\x00.\r\n")
    if policy is BareLineEndPolicy.REJECT and has_bare:
        assert any(isinstance(e, MessageRejected) for e in events)
        assert codes(out)[-2:] == [550, 221]
    else:
        assert codes(out)[-2:] == [250, 221]
        assert b"evil@x.test" in body_of(events)


def test_empty_message_and_dot_handling() -> None:
    events, out, _ = run(EHLO + TXN + b".\r\n")
    assert codes(out)[-1] == 250
    complete = next(e for e in events if isinstance(e, MessageComplete))
    assert complete.envelope.size == 0


def test_close_in_the_middle_of_data() -> None:
    server = ServerConnection()
    events, _, _ = run([EHLO + TXN + b"partial", b""], server)
    assert isinstance(events[-1], ConnectionClosed)
    assert server.state is State.CLOSED
    assert server.next_event() is NEED_DATA


# --- BDAT (RFC 3030) -----------------------------------------------------------------------


def test_bdat_chunks_and_last() -> None:
    head = EHLO + b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n"
    data = head + b"BDAT 5\r\nhello" + b"BDAT 7 LAST\r\n world\n" + b"NOOP\r\n"
    events, out, _ = run(data)
    assert codes(out) == [220, 250, 250, 250, 250, 250, 250]
    assert b"250 2.0.0 5 octets received" in out
    assert body_of(events) == b"hello world\n"  # BDAT content is binary: no policy
    complete = next(e for e in events if isinstance(e, MessageComplete))
    assert complete.envelope.chunked and complete.envelope.size == 12
    for step in (1, 4):
        pieces = [data[i : i + step] for i in range(0, len(data), step)]
        _, out2, _ = run(pieces)
        assert out2 == out


def test_bdat_zero_last_and_mixing_rules() -> None:
    head = EHLO + b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n"
    _, out, _ = run(head + b"BDAT 0 LAST\r\n")
    assert codes(out)[-1] == 250
    _, out, _ = run(head + b"BDAT 2\r\nab" + b"DATA\r\n" + b"RCPT TO:<x@d.test>\r\n")
    assert codes(out)[-2:] == [503, 503]
    # BDAT octets of a refused command are consumed, never read as commands.
    _, out, _ = run(EHLO + b"BDAT 12 LAST\r\nQUIT\r\nQUIT\r\nNOOP\r\n")
    assert codes(out)[-2:] == [503, 250]


def test_bdat_too_big_consumes_octets() -> None:
    server = ServerConnection(ServerConfig(max_message_size=10))
    head = EHLO + b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n"
    events, out, _ = run(head + b"BDAT 20 LAST\r\n" + b"z" * 20 + b"NOOP\r\n", server)
    assert codes(out)[-2:] == [552, 250]
    assert not any(isinstance(e, MessageComplete) for e in events)


def test_bdat_bad_size_closes_session() -> None:
    head = EHLO + b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n"
    _, out, fatal = run(head + b"BDAT -5\r\nxxxx")
    assert fatal
    assert codes(out)[-2:] == [250, 501]  # the 501 is the last reply: then close


def test_binarymime_requires_bdat() -> None:
    server = ServerConnection(ServerConfig(binarymime=True))
    data = b"MAIL FROM:<a@b.test> BODY=BINARYMIME\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
    _, out, _ = run(EHLO + data, server)
    assert codes(out)[-1] == 503


# --- LMTP (RFC 2033) -------------------------------------------------------------------------


def lmtp_server(**kw: object) -> ServerConnection:
    return ServerConnection(ServerConfig(lmtp=True, pipelining=False,
                                         enhanced_status_codes=False, **kw))  # type: ignore[arg-type]


def test_lmtp_one_reply_per_recipient() -> None:
    data = (b"LHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u1@d.test>\r\n"
            b"RCPT TO:<u2@d.test>\r\nRCPT TO:<u3@d.test>\r\nDATA\r\nhi\r\n.\r\n")

    def policy(event: object) -> object:
        if isinstance(event, MessageComplete):
            return LMTPReplies(replies=(
                Reply(code=250, enhanced="2.0.0", lines=("u1 ok",)),
                Reply(code=452, enhanced="4.2.2", lines=("u2 over quota",)),
                Reply(code=250, enhanced="2.0.0", lines=("u3 ok",)),
            ))
        return accept_all(event)  # type: ignore[arg-type]

    _, out, _ = run(data, lmtp_server(), policy=policy)  # type: ignore[arg-type]
    # PIPELINING and ENHANCEDSTATUSCODES are always on in LMTP.
    assert b"250-PIPELINING" in out and b"ENHANCEDSTATUSCODES" in out
    assert codes(out)[-3:] == [250, 452, 250]
    assert b"452 4.2.2 u2 over quota" in out


def test_lmtp_reject_and_accept_apply_to_every_recipient_and_helo_is_refused() -> None:
    data = (b"HELO x\r\nEHLO x\r\nLHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u1@d.test>\r\n"
            b"RCPT TO:<u2@d.test>\r\nDATA\r\nhi\r\n.\r\n")
    _, out, _ = run(data, lmtp_server())
    assert codes(out) == [220, 500, 500, 250, 250, 250, 250, 354, 250, 250]
    server = lmtp_server()
    feed(server, data)
    with pytest.raises(LocalProtocolError):
        server.send(LMTPReplies(replies=(Reply(code=250),)))


def test_lmtp_rejected_content_gets_one_reply_per_recipient() -> None:
    data = (b"LHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u1@d.test>\r\n"
            b"RCPT TO:<u2@d.test>\r\nDATA\r\nbare\nlf\r\n.\r\n")
    _, out, _ = run(data, lmtp_server())
    assert codes(out)[-2:] == [550, 550]


# --- STARTTLS (RFC 3207) -------------------------------------------------------------------


def test_starttls_discards_injected_commands_and_restarts_session() -> None:
    server = ServerConnection(ServerConfig(starttls=True))
    injected = b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<v@x.test>\r\n"
    events, out, _ = run(EHLO + injected, server)
    assert isinstance(events[-1], StartTLS)
    assert not any(isinstance(e, MailFrom) for e in events)
    assert out.endswith(b"220 2.0.0 Ready to start TLS\r\n")
    assert server.state is State.TLS_PENDING
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"EHLO again\r\n")
    server.tls_started()
    assert server.tls_active
    events, out, _ = run(b"MAIL FROM:<a@b.test>\r\n" + EHLO + b"STARTTLS\r\n", server)
    assert codes(out)[0] == 503  # EHLO first after TLS
    assert b"STARTTLS" not in out.split(b"\r\n", 2)[1]
    assert codes(out)[-1] == 503  # never offered again
    with pytest.raises(LocalProtocolError):
        server.tls_started()


def test_require_tls() -> None:
    server = ServerConnection(ServerConfig(starttls=True, require_tls=True))
    _, out, _ = run(EHLO + b"MAIL FROM:<a@b.test>\r\nNOOP\r\n", server)
    assert codes(out)[-2:] == [530, 250]


def test_requiretls_offered_only_over_tls() -> None:
    plain = ServerConnection(ServerConfig(requiretls=True))
    _, out, _ = run(EHLO + b"MAIL FROM:<a@b.test> REQUIRETLS\r\n", plain)
    assert b"REQUIRETLS" not in out.split(b"\r\n555")[0] and codes(out)[-1] == 555
    tls = ServerConnection(ServerConfig(requiretls=True, tls_active=True))
    events, out, _ = run(EHLO + b"MAIL FROM:<a@b.test> REQUIRETLS\r\n", tls)
    assert b"250-REQUIRETLS" in out or b"250 REQUIRETLS" in out
    mail = next(e for e in events if isinstance(e, MailFrom))
    assert mail.parameters.requiretls


# --- AUTH (RFC 4954) -------------------------------------------------------------------------


def auth_server(**kw: object) -> ServerConnection:
    return ServerConnection(ServerConfig(auth_mechanisms=("SCRAM-SHA-256", "PLAIN"),
                                         tls_active=True, **kw))  # type: ignore[arg-type]


USERS = {"alice": "wonderland", "bob": "builder"}


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_auth_plain_with_initial_response() -> None:
    server = auth_server(require_auth=True)
    policy = credentials_policy(USERS)
    data = EHLO + b"MAIL FROM:<a@b.test>\r\nAUTH PLAIN " + b64(b"\0alice\0wonderland") + b"\r\n"
    events, out, _ = run(data + b"AUTH PLAIN =\r\nMAIL FROM:<a@b.test> AUTH=<>\r\n", server,
                         policy=policy)
    assert b"250-AUTH SCRAM-SHA-256 PLAIN" in out
    assert codes(out)[2:] == [530, 235, 503, 250]
    auth = next(e for e in events if isinstance(e, Authenticated))
    assert auth.identity == "alice" and auth.mechanism == "PLAIN"
    assert server.identity == "alice"
    mail = [e for e in events if isinstance(e, MailFrom)][-1]
    assert mail.parameters.auth == "<>"


def test_auth_plain_without_initial_response_and_failures() -> None:
    policy = credentials_policy(USERS)
    data = (EHLO + b"AUTH PLAIN\r\n" + b64(b"\0alice\0wrong") + b"\r\n"
            + b"AUTH PLAIN\r\n*\r\n"
            + b"AUTH PLAIN !!!\r\n"
            + b"AUTH KERBEROS_V4\r\n"
            + b"AUTH PLAIN\r\n" + b64(b"\0bob\0builder") + b"\r\n")
    events, out, _ = run(data, auth_server(), policy=policy)
    assert codes(out)[2:] == [334, 535, 334, 501, 501, 504, 334, 235]
    assert b"334 \r\n" in out or b"334\r\n" in out
    failed = [e for e in events if isinstance(e, AuthenticationFailed)]
    assert len(failed) == 2
    assert b"535 5.7.8" in out


def test_auth_refused_without_tls_unless_allowed() -> None:
    server = ServerConnection(ServerConfig(auth_mechanisms=("PLAIN",)))
    _, out, _ = run(EHLO + b"AUTH PLAIN =\r\n", server)
    assert b"AUTH" not in out.split(b"\r\n538")[0].split(b"\r\n", 1)[1]
    assert b"538 5.7.11" in out
    server = ServerConnection(ServerConfig(auth_mechanisms=("PLAIN",), auth_without_tls=True))
    _, out, _ = run(EHLO + b"AUTH PLAIN " + b64(b"\0bob\0builder") + b"\r\n", server,
                    policy=credentials_policy(USERS))
    assert codes(out)[-1] == 235


def test_auth_not_inside_a_transaction() -> None:
    _, out, _ = run(EHLO + b"MAIL FROM:<>\r\nAUTH PLAIN =\r\n", auth_server())
    assert codes(out)[-1] == 503


def test_auth_scram_sha256_full_exchange_with_final_data() -> None:
    server = auth_server()
    policy = credentials_policy(USERS)
    client = sasl.ScramSha256Client("alice", "wonderland")
    first = client.initial_response()
    assert first is not None
    server.receive_data(EHLO + b"AUTH SCRAM-SHA-256 " + b64(first) + b"\r\n")
    pump(server, policy)
    out = server.data_to_send()
    challenge = base64.b64decode(out.rstrip(b"\r\n").rsplit(b"334 ", 1)[1])
    server.receive_data(b64(client.respond(challenge)) + b"\r\n")
    pump(server, policy)
    out = server.data_to_send()
    # RFC 4954 §4: the server's final SCRAM data comes as one more 334 challenge.
    final = base64.b64decode(out.rstrip(b"\r\n").rsplit(b"334 ", 1)[1])
    client.verify_success(final)
    server.receive_data(b"\r\n")
    events = pump(server, policy)
    assert isinstance(events[-1], Authenticated)
    assert codes(server.data_to_send()) == [235]


def test_credentials_reject_and_misuse() -> None:
    server = auth_server()
    server.receive_data(EHLO + b"AUTH PLAIN " + b64(b"\0alice\0x") + b"\r\n")
    pump(server)
    assert isinstance(server.next_event(), sasl.NeedCredentials) or server.paused
    with pytest.raises(LocalProtocolError):
        server.send(Accept())
    server.send(Reject(reply=Reply(code=454, enhanced="4.7.0", lines=("user store down",))))
    assert codes(server.data_to_send())[-1] == 454
    with pytest.raises(LocalProtocolError):
        server.send(sasl.NoSuchUser())


# --- SMTPUTF8 (RFC 6531) ---------------------------------------------------------------------


def test_utf8_addresses_only_with_smtputf8() -> None:
    utf8 = "MAIL FROM:<jörg@bücher.test> SMTPUTF8\r\nRCPT TO:<用户@例子.test>\r\n".encode()
    events, out, _ = run(EHLO + utf8)
    assert codes(out)[-2:] == [250, 250]
    rcpt = next(e for e in events if isinstance(e, RcptTo))
    assert rcpt.path.mailbox is not None and rcpt.path.mailbox.is_utf8
    plain = "MAIL FROM:<a@b.test>\r\nRCPT TO:<用户@例子.test>\r\n".encode()
    _, out, _ = run(EHLO + plain)
    assert b"553 5.6.7" in out


# --- limits and hostile input -------------------------------------------------------------------


def test_enhanced_codes_can_be_turned_off() -> None:
    server = ServerConnection(ServerConfig(enhanced_status_codes=False))
    _, out, _ = run(EHLO + TXN + b"x\r\n.\r\nFOO\r\n", server)
    assert b"ENHANCEDSTATUSCODES" not in out
    assert b"2.1.0" not in out and b"5.5.1" not in out


def test_every_reply_carries_an_enhanced_code() -> None:
    data = (TXN + b"x\r\n.\r\nRSET\r\nNOOP\r\nVRFY x\r\nFOO\r\nMAIL FROM:<a>\r\n"
            b"HELP\r\nQUIT\r\n")
    server = ServerConnection()
    run(EHLO, server)  # greeting and EHLO reply carry none (RFC 2034 §4)
    _, out, _ = run(data, server)
    lines = [line for line in out.split(b"\r\n") if line and not line.startswith(b"354")]
    assert len(lines) == 10
    for line in lines:
        assert line[4:5] == line[:1] and line[5:6] == b".", line


def test_too_many_bad_commands_end_the_session() -> None:
    server = ServerConnection(ServerConfig(max_bad_commands=5))
    events, out, fatal = run(b"FOO\r\n" * 10, server)
    assert fatal
    assert codes(out) == [220, 500, 500, 500, 500, 500, 421]
    assert server.state is State.CLOSED


def test_buffer_bound_while_paused() -> None:
    server = ServerConnection(ServerConfig(max_buffer=1000))
    server.receive_data(EHLO)
    assert isinstance(server.next_event(), Hello)
    with pytest.raises(RemoteProtocolError):
        server.receive_data(b"NOOP\r\n" * 500)
    assert codes(server.data_to_send())[-1] == 421


def test_overlong_line_is_discarded_with_bounded_buffer() -> None:
    server = ServerConnection()
    server.receive_data(EHLO)
    pump(server)
    for _ in range(100):
        server.receive_data(b"A" * 10_000)
        pump(server)
        assert len(server._in) < 20_000
    server.receive_data(b"\r\nNOOP\r\n")
    pump(server)
    assert codes(server.data_to_send())[-2:] == [500, 250]


def _line(verb: bytes, total: int) -> bytes:
    """A command line of exactly ``total`` octets, CRLF included."""
    return verb + b" " + b"x" * (total - len(verb) - 3) + b"\r\n"


def _mail_line(total: int) -> bytes:
    head = b"MAIL FROM:<a@example.org>"
    return head + b" X-PAD=" + b"y" * (total - len(head) - 9) + b"\r\n"


# RFC 5321 §4.5.3.1.4: "The maximum total length of a command line including the
# command word and the <CRLF> is 512 octets." Extensions raise it for MAIL and RCPT
# only (RFC 1870 §3 SIZE +26, RFC 3461 §4, RFC 4954 §5), never for other commands.
@pytest.mark.parametrize(
    ("line", "config", "code"),
    [
        (_line(b"NOOP", 512), ServerConfig(), 250),
        (_line(b"NOOP", 513), ServerConfig(), 500),
        (_line(b"noop", 513), ServerConfig(), 500),
        (_line(b"HELP", 513), ServerConfig(), 500),
        (_line(b"RSET", 600), ServerConfig(), 500),
        (_line(b"XYZW", 513), ServerConfig(), 500),
        # The knob for leniency: max_line raises the bound for every command.
        (_line(b"NOOP", 513), ServerConfig(max_line=1000), 250),
        (_line(b"NOOP", 1000), ServerConfig(max_line=1000), 250),
        (_line(b"NOOP", 1001), ServerConfig(max_line=1000), 500),
    ],
)
def test_command_line_is_at_most_512_octets(line: bytes, config: ServerConfig, code: int) -> None:
    _, out, fatal = run(EHLO + line, ServerConnection(config))
    assert not fatal
    assert codes(out)[-1] == code
    if code == 500:
        assert b"500 5.5.2" in out


def test_mail_and_rcpt_lines_get_the_extensions_allowance() -> None:
    config = ServerConfig()
    limit = config.command_line_limit
    assert limit > 512
    for total, expected in ((513, 555), (limit, 555), (limit + 1, 500)):
        line = _mail_line(total)
        assert len(line) == total
        _, out, _ = run(EHLO + line, ServerConnection(config))
        # 555: the line was parsed (the padding parameter is unknown), not refused as long.
        assert codes(out)[-1] == expected, (total, out)
    rcpt = b"RCPT TO:<b@example.test> X-PAD=" + b"y" * 600 + b"\r\n"
    assert 512 < len(rcpt) <= limit
    _, out, _ = run(EHLO + b"MAIL FROM:<a@example.org>\r\n" + rcpt, ServerConnection(config))
    assert codes(out)[-1] == 555


def test_a_long_line_is_answered_and_the_session_goes_on() -> None:
    _, out, fatal = run(EHLO + _line(b"NOOP", 513) + b"NOOP\r\n")
    assert not fatal
    assert codes(out)[-2:] == [500, 250]


def test_auth_line_limit_is_12288() -> None:
    server = auth_server()
    long_response = b"A" * 12_000
    _, out, _ = run(EHLO + b"AUTH PLAIN " + long_response + b"\r\n", server)
    assert codes(out)[-1] in (501, 535)  # parsed, not "line too long"
    _, out, _ = run(EHLO + b"AUTH PLAIN " + b"A" * 13_000 + b"\r\n", auth_server())
    assert codes(out)[-1] == 500


def test_data_after_quit_is_ignored() -> None:
    server = ServerConnection()
    events, out, _ = run(EHLO + b"QUIT\r\nNOOP\r\n", server)
    assert isinstance(events[-1], Quit)
    server.receive_data(b"MORE\r\n")
    assert server.next_event() is NEED_DATA
    assert server.data_to_send() == b""


def test_greeting_must_be_220_421_or_554() -> None:
    with pytest.raises(LocalProtocolError):
        ServerConnection(greeting=Reply(code=250))


@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise_anything_but_remote_protocol_error(data: bytes) -> None:
    for prefix in (b"", EHLO, EHLO + TXN, EHLO + b"AUTH PLAIN\r\n"):
        server = auth_server(max_bad_commands=1000) if prefix else ServerConnection()
        try:
            run([prefix + data, b""], server, policy=credentials_policy(USERS))
        except RemoteProtocolError:  # pragma: no cover - run() catches it
            pass


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_fragmentation_never_changes_the_outcome(sizes: list[int]) -> None:
    session = (EHLO + b"MAIL FROM:<a@b.test> BODY=8BITMIME\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
               b"line\r\n..dots\r\n\r\n.x\r\n.\r\nBDAT 3\r\nabcMAIL FROM:<>\r\n"
               b"RCPT TO:<e@d.test>\r\nBDAT 4 LAST\r\nwxyzQUIT\r\n")
    whole_events, whole_out, _ = run(session)
    pieces, i = [], 0
    for size in sizes * (len(session) // sum(sizes) + 1):
        if i >= len(session):
            break
        pieces.append(session[i : i + size])
        i += size
    events, out, _ = run(pieces)
    assert out == whole_out
    assert body_of(events) == body_of(whole_events)
    assert [type(e) for e in events if not isinstance(e, DataChunk)] == [
        type(e) for e in whole_events if not isinstance(e, DataChunk)
    ]


def test_application_replies_get_a_generic_enhanced_code() -> None:
    def policy(event: object) -> Accept | Reject | None:
        if isinstance(event, MailFrom):
            return Reject(reply=Reply(code=451, lines=("greylisted",)))
        return accept_all(event)  # type: ignore[arg-type]

    _, out, _ = run(EHLO + b"MAIL FROM:<a@b.test>\r\n", policy=policy)
    assert out.endswith(b"451 4.0.0 greylisted\r\n")


def test_shutdown_sends_421_and_ends_the_session() -> None:
    server = ServerConnection()
    run(EHLO + b"MAIL FROM:<a@b.test>\r\n", server)
    server.shutdown()
    assert server.data_to_send() == b"421 4.3.2 localhost Service shutting down\r\n"
    assert server.state is State.CLOSED
    server.receive_data(b"RCPT TO:<x@y.test>\r\n")
    assert server.next_event() is NEED_DATA
    server.shutdown()
    assert server.data_to_send() == b""


# --- odd corners -------------------------------------------------------------------------


def test_421_greeting_closes_and_properties() -> None:
    server = ServerConnection(greeting=Reply(code=421, enhanced="4.3.2", lines=("busy",)))
    assert server.data_to_send() == b"421 busy\r\n"
    assert server.state is State.CLOSED
    server = ServerConnection()
    run(EHLO, server)
    assert server.helo_domain == "client.test"
    assert "PIPELINING" in server.extensions and "AUTH" not in server.extensions
    assert server.identity is None and not server.tls_active


def test_bare_lf_commands_accepted_when_policy_allows() -> None:
    server = ServerConnection(ServerConfig(bare_line_ends=BareLineEndPolicy.ACCEPT))
    _, out, _ = run(b"EHLO c.test\nNOOP\n", server)
    assert codes(out)[-1] == 250


def test_rcpt_syntax_errors() -> None:
    _, out, _ = run(EHLO + b"MAIL FROM:<>\r\nRCPT FROM:<a@b.test>\r\nRCPT TO:a@b.test\r\n")
    assert codes(out)[-2:] == [501, 501]
    assert b"501 5.1.3" in out


def test_message_rejected_by_application() -> None:
    def policy(event: object) -> Accept | Reject | None:
        if isinstance(event, MessageComplete):
            return Reject(reply=Reply(code=554, enhanced="5.7.1", lines=("spam",)))
        return accept_all(event)  # type: ignore[arg-type]

    _, out, _ = run(EHLO + TXN + b"x\r\n.\r\n", policy=policy)
    assert out.endswith(b"554 5.7.1 spam\r\n")


def test_bdat_when_chunking_is_off_or_tls_is_missing() -> None:
    server = ServerConnection(ServerConfig(chunking=False))
    data = b"MAIL FROM:<>\r\nRCPT TO:<a@b.test>\r\nBDAT x\r\nBDAT 1\r\nzNOOP\r\n"
    _, out, fatal = run(EHLO + data, server)
    assert not fatal
    assert codes(out)[-3:] == [502, 502, 250]
    server = ServerConnection(ServerConfig(starttls=True, require_tls=True))
    _, out, _ = run(EHLO + b"MAIL FROM:<>\r\nBDAT 1\r\nzNOOP\r\n", server)
    assert codes(out)[-3:] == [530, 503, 250]  # no transaction can start without TLS


def test_starttls_with_parameters_and_lmtp_reply_count() -> None:
    server = ServerConnection(ServerConfig(starttls=True))
    _, out, _ = run(EHLO + b"STARTTLS now\r\n", server)
    assert codes(out)[-1] == 501
    server = lmtp_server()
    feed(server, b"LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.test>\r\nDATA\r\nx\r\n.\r\n",
         lambda e: None if isinstance(e, MessageComplete) else accept_all(e))
    with pytest.raises(LocalProtocolError):
        server.send(LMTPReplies(replies=(Reply(code=250), Reply(code=250))))
    with pytest.raises(LocalProtocolError):
        server.send(sasl.NoSuchUser())
    server.send(LMTPReplies(replies=(Reply(code=250, enhanced="2.0.0", lines=("ok",)),)))
    assert server.data_to_send().endswith(b"250 2.0.0 ok\r\n")


def test_auth_mechanism_without_implementation_and_bad_responses() -> None:
    server = ServerConnection(ServerConfig(auth_mechanisms=("GSSAPI",), tls_active=True))
    _, out, _ = run(EHLO + b"AUTH GSSAPI\r\n", server)
    assert codes(out)[-1] == 504
    _, out, _ = run(EHLO + b"AUTH PLAIN\r\n%%%\r\n", auth_server())
    assert codes(out)[-2:] == [334, 501]
    # SCRAM: the client's answer to the server's final data must be empty.
    server = auth_server()
    policy = credentials_policy(USERS)
    client = sasl.ScramSha256Client("alice", "wonderland")
    first = client.initial_response()
    assert first is not None
    server.receive_data(EHLO + b"AUTH SCRAM-SHA-256 " + b64(first) + b"\r\n")
    pump(server, policy)
    challenge = base64.b64decode(server.data_to_send().rstrip(b"\r\n").rsplit(b"334 ", 1)[1])
    server.receive_data(b64(client.respond(challenge)) + b"\r\nbm9pc2U=\r\n")
    events = pump(server, policy)
    assert isinstance(events[-1], AuthenticationFailed)
    assert codes(server.data_to_send())[-1] == 535


def test_lmtp_failed_bdat_chunk_gets_one_reply_and_last_gets_one_per_recipient() -> None:
    head = b"LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.test>\r\nRCPT TO:<c@b.test>\r\n"
    _, out, _ = run(head + b"BDAT 20\r\n" + b"z" * 20 + b"NOOP\r\n",
                    lmtp_server(chunking=True, max_message_size=10))
    assert codes(out)[-2:] == [552, 250] and codes(out).count(552) == 1
    _, out, _ = run(head + b"BDAT 20 LAST\r\n" + b"z" * 20,
                    lmtp_server(chunking=True, max_message_size=10))
    assert codes(out)[-2:] == [552, 552]


def test_timed_out_sends_421_442() -> None:
    server = ServerConnection()
    server.data_to_send()
    server.timed_out()
    assert server.data_to_send() == b"421 4.4.2 localhost Timeout waiting for command, closing\r\n"


# --- the other SASL mechanisms through the SMTP core ---------------------------------------


def test_auth_login_and_oauthbearer_and_legacy_cram_md5() -> None:
    def policy(event: object) -> object:
        if isinstance(event, sasl.NeedTokenCheck):
            ok = event.token == "good-token"
            return sasl.TokenVerdict(valid=ok, identity="alice" if ok else None)
        if isinstance(event, sasl.NeedCredentials) and event.mechanism == "CRAM-MD5":
            return sasl.LegacySecret(secret="wonderland")
        return credentials_policy(USERS)(event)  # type: ignore[arg-type]

    def modern() -> ServerConnection:
        return ServerConnection(ServerConfig(auth_mechanisms=("LOGIN", "OAUTHBEARER"),
                                             tls_active=True))

    server = modern()
    data = (EHLO + b"AUTH LOGIN\r\n" + b64(b"alice") + b"\r\n" + b64(b"wonderland") + b"\r\n")
    events, out, _ = run(data, server, policy=policy)  # type: ignore[arg-type]
    assert b"334 VXNlcm5hbWU6" in out and codes(out)[-1] == 235  # "Username:" prompt
    token = sasl.OAuthBearerClient("good-token", host="mx.test", port=25).initial_response()
    assert token is not None
    events, out, _ = run(EHLO + b"AUTH OAUTHBEARER " + b64(token) + b"\r\n", modern(),
                         policy=policy)  # type: ignore[arg-type]
    assert codes(out)[-1] == 235
    bad = sasl.OAuthBearerClient("bad-token").initial_response()
    assert bad is not None
    # RFC 7628 §3.2.3: the error comes as a challenge, the client answers 0x01.
    _, out, _ = run(EHLO + b"AUTH OAUTHBEARER " + b64(bad) + b"\r\nAQ==\r\n", modern(),
                    policy=policy)  # type: ignore[arg-type]
    assert codes(out)[-2:] == [334, 535]
    with pytest.raises(LocalProtocolError):
        ServerConfig(auth_mechanisms=("CRAM-MD5",))
    legacy = ServerConnection(ServerConfig(auth_mechanisms=("CRAM-MD5",), tls_active=True,
                                           allow_legacy_auth=True))
    _, out, _ = run(EHLO + b"AUTH CRAM-MD5\r\n", legacy, policy=policy)  # type: ignore[arg-type]
    challenge = base64.b64decode(out.rstrip(b"\r\n").rsplit(b"334 ", 1)[1])
    client = sasl.CramMd5Client("alice", "wonderland")
    _, out, _ = run(b64(client.respond(challenge)) + b"\r\n", legacy,
                    policy=policy)  # type: ignore[arg-type]
    assert codes(out)[-1] == 235


# --- input behind DATA before its 354 (RFC 2920 §3.1) -----------------------------------


def _refuse_rcpt(event: object) -> Accept | Reject | None:
    if isinstance(event, RcptTo):
        return Reject(reply=Reply(code=550, enhanced="5.1.1", lines=("no such user",)))
    return accept_all(event)  # type: ignore[arg-type]


EARLY = [
    # (what follows DATA in the same feed, policy, codes before the 554)
    (b"Subject: x\r\n\r\nhi\r\n.\r\n", accept_all, [220, 250, 250, 250]),
    (b"x", accept_all, [220, 250, 250, 250]),
    (b"\r\n", accept_all, [220, 250, 250, 250]),
    # DATA refused (no valid recipient): the content would be read as commands.
    (b"RCPT TO:<victim@example.test>\r\nDATA\r\nevil\r\n.\r\n", _refuse_rcpt, [220, 250, 250, 550]),
]


@pytest.mark.parametrize(("behind", "policy", "before"), EARLY)
def test_input_behind_data_before_its_reply_ends_the_session(
    behind: bytes, policy: Policy, before: list[int]
) -> None:
    server = ServerConnection()
    server.receive_data(EHLO + TXN + behind)
    events: list[object] = []
    with pytest.raises(RemoteProtocolError):
        while True:
            event = server.next_event()
            assert event is not NEED_DATA and event is not PAUSED
            events.append(event)
            decision = policy(event)  # type: ignore[arg-type]
            if decision is not None:
                server.send(decision)
    out = server.data_to_send()
    assert codes(out) == [*before, 554]
    assert out.endswith(
        b"554 5.5.0 localhost Improper pipelining after DATA, closing connection\r\n"
    )
    # Nothing behind DATA was read: no content, no second RCPT.
    assert not any(isinstance(e, DataChunk | MessageComplete) for e in events)
    assert sum(isinstance(e, RcptTo) for e in events) == 1
    assert server.state is State.CLOSED
    # The core stays failed: every later call raises the same error, nothing more is sent.
    with pytest.raises(RemoteProtocolError):
        server.receive_data(b"QUIT\r\n")
    with pytest.raises(RemoteProtocolError):
        server.next_event()
    assert server.data_to_send() == b""


def test_input_behind_data_is_the_message_when_allowed() -> None:
    server = ServerConnection(ServerConfig(forbid_early_data=False))
    server.receive_data(EHLO + TXN + b"hi\r\n.\r\nQUIT\r\n")
    events = pump(server)
    assert codes(server.data_to_send()) == [220, 250, 250, 250, 354, 250, 221]
    assert body_of(events) == b"hi\r\n"


def test_lmtp_forbids_input_behind_data_too() -> None:
    server = lmtp_server()
    _, out, fatal = run(
        [b"LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.test>\r\nDATA\r\nhi\r\n.\r\n"], server
    )
    # run() cuts after DATA (a client that waits); fed whole, it is refused.
    assert not fatal and codes(out)[-2:] == [354, 250]
    server = lmtp_server()
    server.receive_data(b"LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.test>\r\nDATA\r\nhi\r\n.\r\n")
    with pytest.raises(RemoteProtocolError):
        pump(server)
    assert codes(server.data_to_send())[-1] == 554


def test_the_next_transaction_may_follow_the_end_of_data_in_one_feed() -> None:
    # RFC 2920 §3.1: the content may be the first "command" of a group: MAIL etc.
    # behind its final dot are fine.
    first = EHLO + TXN
    second = b"hi\r\n.\r\nRSET\r\nMAIL FROM:<>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n"
    events, out, fatal = run([first, second, b"again\r\n.\r\nQUIT\r\n"])
    assert not fatal
    assert codes(out) == [220, 250, 250, 250, 354, 250, 250, 250, 250, 354, 250, 221]


# --- the uniform core surface: errors in a row, at_boundary, refuse, events ----------


def test_max_errors_counts_errors_in_a_row_and_max_bad_commands_the_total() -> None:
    cfg = ServerConfig(max_errors=3, max_bad_commands=100)
    # Two errors, a good command, two errors: never three in a row, the session goes on.
    _, out, fatal = run(b"EHLO c\r\nBOGUS\r\nBOGUS\r\nNOOP\r\nBOGUS\r\nBOGUS\r\nNOOP\r\n",
                        ServerConnection(cfg))
    assert not fatal and codes(out)[-1] == 250
    # Three in a row end it.
    _, out, fatal = run(b"EHLO c\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\nNOOP\r\n", ServerConnection(cfg))
    assert fatal and out.endswith(b"421 4.7.0 localhost Too many errors\r\n")
    # The session total counts errors whether in a row or not.
    total = ServerConfig(max_errors=100, max_bad_commands=4)
    _, out, fatal = run(b"EHLO c\r\n" + b"BOGUS\r\nNOOP\r\n" * 4, ServerConnection(total))
    assert fatal and codes(out).count(500) == 4


def test_a_policy_refusal_is_not_an_error() -> None:
    def refuse_mail(event: object) -> object:
        if isinstance(event, MailFrom):
            return Reject(reply=Reply(code=550, enhanced="5.7.1", lines=("no",)))
        return accept_all(event)  # type: ignore[arg-type]

    cfg = ServerConfig(max_errors=2, max_bad_commands=2)
    _, out, fatal = run(b"EHLO c\r\n" + b"MAIL FROM:<a@b.test>\r\n" * 5,
                        ServerConnection(cfg), refuse_mail)  # type: ignore[arg-type]
    assert not fatal and codes(out).count(550) == 5


def test_failure_events_say_whether_they_are_temporary() -> None:
    events, _, _ = run(b"EHLO c\r\nBOGUS\r\n" + b"RCPT TO:<x@y.test>\r\n")
    rejected = [e for e in events if isinstance(e, CommandRejected)]
    assert [e.temporary for e in rejected] == [False, False]
    assert CommandRejected(command="RCPT", reply=Reply(code=452, enhanced="4.5.3")).temporary
    assert MessageRejected(reply=Reply(code=451)).temporary
    assert not MessageRejected(reply=Reply(code=552)).temporary
    assert AuthenticationFailed(mechanism="PLAIN", reply=Reply(code=454)).temporary
    assert not AuthenticationFailed(mechanism="PLAIN", reply=Reply(code=535)).temporary


def test_at_boundary_only_between_transactions() -> None:
    server = ServerConnection()
    assert server.at_boundary  # greeted
    run(b"EHLO c\r\n", server)
    assert server.at_boundary
    server.receive_data(b"MAIL FROM:<a@b.test>\r\n")
    assert isinstance(server.next_event(), MailFrom)
    assert not server.at_boundary  # a decision is pending
    server.send(Accept())
    assert not server.at_boundary  # inside a transaction
    run(b"RSET\r\n", server)
    assert server.at_boundary
    run(b"AUTH PLAIN\r\n", ServerConnection())
    auth = ServerConnection(ServerConfig(auth_mechanisms=("PLAIN",), auth_without_tls=True))
    run(b"EHLO c\r\nAUTH PLAIN\r\n", auth)
    assert auth.state is State.AUTH and not auth.at_boundary


def test_refuse_replaces_the_greeting() -> None:
    server = ServerConnection(ServerConfig(hostname="mx.test"))
    server.refuse("Too many connections")
    assert server.data_to_send() == b"421 mx.test Too many connections\r\n"
    assert server.state is State.CLOSED
    server.receive_data(b"EHLO c\r\n")
    assert server.next_event() is NEED_DATA and server.data_to_send() == b""
    greeted = ServerConnection()
    greeted.data_to_send()
    with pytest.raises(LocalProtocolError):
        greeted.refuse()


def test_events_iterates_until_a_sentinel() -> None:
    server = ServerConnection()
    server.receive_data(b"EHLO c\r\n")
    first = list(server.events())
    assert [type(e) for e in first] == [Hello]  # then PAUSED
    server.send(Accept())
    server.receive_data(b"NOOP\r\nQUIT\r\n")
    assert [type(e) for e in server.events()] == [Quit]
