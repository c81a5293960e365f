"""Tests of mailagents.imap.client: the IMAP client core, with bytes alone.

The server is played from canned response bytes; the exact bytes the client writes
are checked; every script is fed whole and one byte at a time.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents import sasl
from mailagents._protocol import NEED_DATA, LocalProtocolError, RemoteProtocolError
from mailagents.imap import _commands as c
from mailagents.imap._client import ClientConnection, ClientState
from mailagents.imap._client_events import (
    Bye,
    ClientEvent,
    Completed,
    ConnectionClosed,
    Greeting,
    IdleStarted,
    LiteralData,
    LiteralDone,
    LiteralStarted,
    Update,
)
from mailagents.imap._frame import Streamed
from mailagents.imap._search import FlagKey
from mailagents.imap._seqset import SequenceSet

GREETING = b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN STARTTLS] ready\r\n"
BYTEWISE = pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])


def feed(conn: ClientConnection, data: bytes, *, bytewise: bool) -> list[ClientEvent]:
    """Feed ``data`` whole or one byte at a time, draining events after each piece;
    consecutive LiteralData events are joined so that fragmentations compare equal."""
    pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    out: list[ClientEvent] = []
    for piece in pieces:
        conn.receive_data(piece)
        for event in conn.events():
            if isinstance(event, LiteralData) and out and isinstance(out[-1], LiteralData):
                out[-1] = LiteralData(index=event.index, data=out[-1].data + event.data)
            else:
                out.append(event)
    return out


def greeted(greeting: bytes = GREETING, **kwargs: object) -> ClientConnection:
    conn = ClientConnection(**kwargs)  # type: ignore[arg-type]
    conn.receive_data(greeting)
    [event] = conn.events()
    assert isinstance(event, Greeting)
    return conn


def only_completed(events: list[ClientEvent]) -> Completed:
    done = [e for e in events if isinstance(e, Completed)]
    assert len(done) == 1, events
    return done[0]


# --- greeting and capabilities ----------------------------------------------------------


@BYTEWISE
def test_the_greeting_s_capabilities_are_kept(bytewise: bool) -> None:
    conn = ClientConnection()
    assert conn.awaiting == "GREETING"
    [event] = feed(conn, GREETING, bytewise=bytewise)
    assert isinstance(event, Greeting) and event.status == "OK"
    assert conn.capabilities == {"IMAP4REV1", "SASL-IR", "AUTH=PLAIN", "STARTTLS"}
    assert conn.has("sasl-ir") and not conn.has("LITERAL+")
    assert conn.state is ClientState.NOT_AUTHENTICATED
    assert conn.awaiting is None


def test_a_greeting_without_capabilities_leaves_them_unknown() -> None:
    conn = greeted(b"* OK hello\r\n")
    assert conn.capabilities is None
    assert not conn.has("IMAP4REV1")


@BYTEWISE
def test_capability_command(bytewise: bool) -> None:
    conn = greeted(b"* OK hello\r\n")
    tag = conn.capability()
    assert tag == "A0001"
    assert conn.data_to_send() == b"A0001 CAPABILITY\r\n"
    assert conn.awaiting == "CAPABILITY"
    events = feed(
        conn, b"* CAPABILITY IMAP4rev2 LITERAL+ IDLE\r\nA0001 OK done\r\n", bytewise=bytewise
    )
    done = only_completed(events)
    assert done.tag == "A0001" and done.ok and done.command == "CAPABILITY"
    assert len(done.data) == 1
    assert conn.capabilities == {"IMAP4REV2", "LITERAL+", "IDLE"}


def test_a_bye_greeting_ends_the_session() -> None:
    conn = ClientConnection()
    events = feed(conn, b"* BYE too busy\r\n", bytewise=False)
    assert isinstance(events[0], Greeting) and events[0].status == "BYE"
    with pytest.raises(LocalProtocolError):
        conn.noop()
    assert feed(conn, b"", bytewise=False) == [ConnectionClosed()]
    assert conn.closed


@pytest.mark.parametrize(
    "greeting", [b"A1 OK hi\r\n", b"* NO nope\r\n", b"+ go\r\n", b"* 3 EXISTS\r\n"]
)
def test_a_greeting_that_is_none_is_a_protocol_error(greeting: bytes) -> None:
    conn = ClientConnection()
    conn.receive_data(greeting)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    with pytest.raises(RemoteProtocolError):
        conn.next_event()  # stays failed
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"x")
    with pytest.raises(RemoteProtocolError):
        conn.noop()


def test_preauth_is_authenticated() -> None:
    conn = greeted(b"* PREAUTH [CAPABILITY IMAP4rev1] welcome back\r\n")
    assert conn.state is ClientState.AUTHENTICATED


def test_preauth_in_the_clear_is_refused_when_tls_is_required() -> None:
    conn = ClientConnection(require_tls=True)
    conn.receive_data(b"* PREAUTH hi\r\n")
    with pytest.raises(RemoteProtocolError, match="PREAUTH"):
        conn.next_event()
    conn = ClientConnection(require_tls=True, tls_active=True)
    conn.receive_data(b"* PREAUTH hi\r\n")
    assert isinstance(conn.next_event(), Greeting)


# --- tags and routing -------------------------------------------------------------------


@BYTEWISE
def test_pipelined_commands_complete_by_tag(bytewise: bool) -> None:
    conn = greeted()
    t1, t2 = conn.noop(), conn.capability()
    assert conn.pending == (t1, t2)
    assert conn.data_to_send() == b"A0001 NOOP\r\nA0002 CAPABILITY\r\n"
    script = (
        b"* 4 EXISTS\r\n"
        b"* CAPABILITY IMAP4rev1 IDLE\r\n"
        b"A0002 OK capability done\r\n"
        b"A0001 NO [ALERT] not now\r\n"
    )
    events = feed(conn, script, bytewise=bytewise)
    assert [type(e) for e in events] == [Update, Completed, Completed]
    second, first = events[1], events[2]
    assert isinstance(second, Completed) and second.tag == t2 and len(second.data) == 1
    assert isinstance(first, Completed) and first.tag == t1 and first.status == "NO"
    assert not first.ok and first.data == ()
    assert conn.pending == ()


def test_a_tag_nothing_was_sent_with_is_a_protocol_error() -> None:
    conn = greeted()
    conn.noop()
    conn.receive_data(b"B1 OK what\r\n")
    with pytest.raises(RemoteProtocolError, match="tag"):
        conn.next_event()


def test_a_tagged_bye_is_a_protocol_error() -> None:
    conn = greeted()
    conn.noop()
    conn.receive_data(b"A0001 BYE what\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_a_malformed_response_is_a_protocol_error() -> None:
    conn = greeted()
    conn.noop()
    conn.receive_data(b"* 3 EXISTS junk (\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_a_tag_in_use_is_refused() -> None:
    conn = greeted()
    conn.send(c.Noop(tag="X1"))
    with pytest.raises(LocalProtocolError):
        conn.send(c.Noop(tag="X1"))


def test_tag_prefix() -> None:
    conn = greeted(tag_prefix="zz")
    assert conn.noop() == "zz0001"
    with pytest.raises(LocalProtocolError):
        ClientConnection(tag_prefix="a+b")
    with pytest.raises(LocalProtocolError):
        ClientConnection(tag_prefix="")


@BYTEWISE
def test_untagged_responses_go_to_the_command_that_asked(bytewise: bool) -> None:
    conn = greeted()
    select = conn.send(c.Select(tag=conn.new_tag(), mailbox="INBOX"))
    conn.data_to_send()
    script = (
        b"* 172 EXISTS\r\n"
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
        b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
        b"* OK [UIDNEXT 4392] Predicted next UID\r\n"
        b"A0001 OK [READ-WRITE] SELECT completed\r\n"
    )
    done = only_completed(feed(conn, script, bytewise=bytewise))
    assert done.tag == select and len(done.data) == 4
    assert conn.state is ClientState.SELECTED and conn.selected == "INBOX"
    assert not conn.read_only
    fetch = conn.send(
        c.Fetch(tag=conn.new_tag(), sequence_set=SequenceSet.parse("1:2"), items="FAST")
    )
    assert conn.data_to_send() == b"A0002 FETCH 1:2 FAST\r\n"
    script = (
        b'* 1 FETCH (FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE 4286)\r\n'
        b"* 173 EXISTS\r\n"
        b'* 2 FETCH (FLAGS () INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE 1)\r\n'
        b"A0002 OK done\r\n"
    )
    events = feed(conn, script, bytewise=bytewise)
    assert [type(e) for e in events] == [Update, Completed]
    done = events[1]
    assert isinstance(done, Completed) and done.tag == fetch and len(done.data) == 2


def test_a_failed_select_leaves_no_mailbox_selected() -> None:
    conn = greeted(b"* PREAUTH hi\r\n")
    conn.send(c.Examine(tag=conn.new_tag(), mailbox="a"))
    conn.receive_data(b"A0001 OK [READ-ONLY] done\r\n")
    list(conn.events())
    assert conn.selected == "a" and conn.read_only
    conn.send(c.Select(tag=conn.new_tag(), mailbox="nope"))
    conn.receive_data(b"A0002 NO no such mailbox\r\n")
    list(conn.events())
    assert conn.state is ClientState.AUTHENTICATED and conn.selected is None


def test_esearch_goes_to_the_tag_it_names() -> None:
    conn = greeted(b"* PREAUTH hi\r\n")
    t1 = conn.send(c.Search(tag=conn.new_tag(), criteria=(FlagKey(name="ALL"),)))
    t2 = conn.send(c.Search(tag=conn.new_tag(), criteria=(FlagKey(name="SEEN"),)))
    conn.data_to_send()
    events = feed(
        conn,
        b'* ESEARCH (TAG "A0002") COUNT 1\r\n* ESEARCH (TAG "A0001") COUNT 5\r\n'
        b"A0001 OK a\r\nA0002 OK b\r\n",
        bytewise=False,
    )
    first, second = events
    assert isinstance(first, Completed) and first.tag == t1 and len(first.data) == 1
    assert isinstance(second, Completed) and second.tag == t2 and len(second.data) == 1


# --- literals, both ways ----------------------------------------------------------------


@BYTEWISE
def test_a_synchronising_literal_waits_for_the_go_ahead(bytewise: bool) -> None:
    conn = greeted()
    tag = conn.login("joe", "pass\r\nA2 LOGOUT")
    assert conn.data_to_send() == b"A0001 LOGIN joe {15}\r\n"
    conn.noop()
    assert conn.data_to_send() == b""  # held behind the literal
    assert feed(conn, b"+ go ahead\r\n", bytewise=bytewise) == []
    assert conn.data_to_send() == b"pass\r\nA2 LOGOUT\r\nA0002 NOOP\r\n"
    done = only_completed(feed(conn, b"A0001 OK logged in\r\n", bytewise=bytewise))
    assert done.tag == tag and done.ok
    assert conn.state is ClientState.AUTHENTICATED


def test_literal_plus_sends_at_once() -> None:
    conn = greeted(b"* OK [CAPABILITY IMAP4rev1 LITERAL+] hi\r\n")
    conn.login("joe", "a\nb")
    assert conn.data_to_send() == b"A0001 LOGIN joe {3+}\r\na\nb\r\n"


def test_literal_minus_only_up_to_4096() -> None:
    conn = greeted(b"* OK [CAPABILITY IMAP4rev1 LITERAL-] hi\r\n")
    conn.login("joe", "a\nb")
    assert conn.data_to_send() == b"A0001 LOGIN joe {3+}\r\na\nb\r\n"
    conn.login("joe", "x\n" * 2049)
    assert conn.data_to_send() == b"A0002 LOGIN joe {4098}\r\n"


def test_a_tagged_refusal_instead_of_the_go_ahead_drops_the_literal() -> None:
    conn = greeted()
    conn.login("joe", "a\nb")
    conn.noop()
    assert conn.data_to_send() == b"A0001 LOGIN joe {3}\r\n"
    events = feed(conn, b"A0001 BAD no literals here\r\n", bytewise=False)
    assert only_completed(events).status == "BAD"
    assert conn.data_to_send() == b"A0002 NOOP\r\n"
    assert conn.state is ClientState.NOT_AUTHENTICATED


def test_a_continuation_nothing_waits_for_is_a_protocol_error() -> None:
    conn = greeted()
    conn.noop()
    conn.receive_data(b"+ hello\r\n")
    with pytest.raises(RemoteProtocolError, match="continuation"):
        conn.next_event()


@BYTEWISE
def test_append_of_a_streamed_message(bytewise: bool) -> None:
    conn = greeted(b"* PREAUTH hi\r\n")
    message = c.AppendMessage(data=Streamed(size=11), flags=("\\Seen",))
    tag = conn.send(c.Append(tag=conn.new_tag(), mailbox="INBOX", messages=(message,)))
    assert conn.data_to_send() == b"A0001 APPEND INBOX (\\Seen) {11}\r\n"
    assert conn.literal_wanted is None
    feed(conn, b"+ Ready\r\n", bytewise=bytewise)
    wanted = conn.literal_wanted
    assert wanted is not None and wanted.tag == tag and wanted.remaining == 11
    conn.send_literal_data(b"Hello")
    conn.send_literal_data(b" world")
    assert conn.literal_wanted is None
    assert conn.data_to_send() == b"Hello world\r\n"
    done = only_completed(
        feed(conn, b"A0001 OK [APPENDUID 38505 3955] APPEND completed\r\n", bytewise=bytewise)
    )
    assert done.ok


@BYTEWISE
def test_a_big_literal_streams_out(bytewise: bool) -> None:
    conn = greeted(b"* PREAUTH hi\r\n", inline_max=4)
    conn.noop()
    conn.data_to_send()
    body = b"0123456789"
    script = b"* 1 FETCH (UID 7 BODY[] {10}\r\n" + body + b")\r\nA0001 OK done\r\n"
    events = feed(conn, script, bytewise=bytewise)
    assert [type(e) for e in events] == [
        LiteralStarted,
        LiteralData,
        LiteralDone,
        Update,
        Completed,
    ]
    started = events[0]
    assert isinstance(started, LiteralStarted) and started.size == 10 and started.index == 0
    assert started.head.lines == (b"* 1 FETCH (UID 7 BODY[] {10}",)
    assert events[1] == LiteralData(index=0, data=body)


# --- STARTTLS ---------------------------------------------------------------------------


@BYTEWISE
def test_starttls_forgets_the_capabilities(bytewise: bool) -> None:
    conn = greeted()
    tag = conn.starttls()
    assert conn.data_to_send() == b"A0001 STARTTLS\r\n"
    with pytest.raises(LocalProtocolError):
        conn.noop()  # nothing may follow STARTTLS
    done = only_completed(feed(conn, b"A0001 OK Begin TLS now\r\n", bytewise=bytewise))
    assert done.tag == tag and done.ok
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"* OK more")
    with pytest.raises(LocalProtocolError):
        conn.noop()
    conn.tls_started()
    assert conn.tls_active and conn.capabilities is None
    with pytest.raises(LocalProtocolError):
        conn.starttls()
    with pytest.raises(LocalProtocolError):
        conn.tls_started()
    conn.capability()
    assert conn.data_to_send() == b"A0002 CAPABILITY\r\n"


def test_bytes_after_the_starttls_ok_are_an_attack() -> None:
    conn = greeted()
    conn.starttls()
    conn.receive_data(b"A0001 OK Begin TLS\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
    with pytest.raises(RemoteProtocolError, match="STARTTLS"):
        list(conn.events())


def test_starttls_needs_nothing_pending_and_no_login() -> None:
    conn = greeted()
    conn.noop()
    with pytest.raises(LocalProtocolError):
        conn.starttls()
    conn = greeted(b"* PREAUTH hi\r\n")
    with pytest.raises(LocalProtocolError):
        conn.starttls()
    conn = greeted(tls_active=True)
    with pytest.raises(LocalProtocolError):
        conn.starttls()


def test_a_refused_starttls_goes_on_in_the_clear() -> None:
    conn = greeted()
    conn.starttls()
    done = only_completed(feed(conn, b"A0001 NO not today\r\n", bytewise=False))
    assert done.status == "NO"
    conn.noop()
    assert conn.data_to_send().endswith(b"A0002 NOOP\r\n")


# --- logins -----------------------------------------------------------------------------


def test_login_forgets_capabilities_unless_sent_with_it() -> None:
    conn = greeted()
    conn.login("joe", "pw")
    feed(conn, b"A0001 OK done\r\n", bytewise=False)
    assert conn.capabilities is None
    conn = greeted()
    conn.login("joe", "pw")
    feed(conn, b"A0001 OK [CAPABILITY IMAP4rev1 IDLE MOVE] done\r\n", bytewise=False)
    assert conn.capabilities == {"IMAP4REV1", "IDLE", "MOVE"}
    conn = greeted()
    conn.login("joe", "pw")
    feed(conn, b"* CAPABILITY IMAP4rev1 NAMESPACE\r\nA0001 OK done\r\n", bytewise=False)
    assert conn.capabilities == {"IMAP4REV1", "NAMESPACE"}


def test_a_failed_login_keeps_the_capabilities() -> None:
    conn = greeted()
    done = None
    conn.login("joe", "pw")
    done = only_completed(feed(conn, b"A0001 NO [AUTHENTICATIONFAILED] no\r\n", bytewise=False))
    assert not done.ok
    assert conn.has("AUTH=PLAIN")
    assert conn.state is ClientState.NOT_AUTHENTICATED


def test_logindisabled() -> None:
    conn = greeted(b"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED STARTTLS] hi\r\n")
    with pytest.raises(LocalProtocolError, match="LOGINDISABLED"):
        conn.login("joe", "pw")


@BYTEWISE
def test_authenticate_plain_with_sasl_ir(bytewise: bool) -> None:
    conn = greeted()
    tag = conn.authenticate(sasl.PlainClient("joe", "pw"))
    expected = base64.b64encode(b"\x00joe\x00pw")
    assert conn.data_to_send() == b"A0001 AUTHENTICATE PLAIN " + expected + b"\r\n"
    with pytest.raises(LocalProtocolError):
        conn.noop()
    done = only_completed(
        feed(conn, b"A0001 OK [CAPABILITY IMAP4rev2] welcome\r\n", bytewise=bytewise)
    )
    assert done.tag == tag and done.ok and done.command == "AUTHENTICATE"
    assert conn.state is ClientState.AUTHENTICATED
    assert conn.capabilities == {"IMAP4REV2"}


@BYTEWISE
def test_authenticate_without_sasl_ir_answers_the_empty_challenge(bytewise: bool) -> None:
    conn = greeted(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n")
    conn.authenticate(sasl.PlainClient("joe", "pw"))
    assert conn.data_to_send() == b"A0001 AUTHENTICATE PLAIN\r\n"
    assert feed(conn, b"+ \r\n", bytewise=bytewise) == []
    assert conn.data_to_send() == base64.b64encode(b"\x00joe\x00pw") + b"\r\n"
    done = only_completed(feed(conn, b"A0001 OK welcome\r\n", bytewise=bytewise))
    assert done.ok


def test_authenticate_cancels_on_a_bad_challenge() -> None:
    conn = greeted(b"* OK [CAPABILITY IMAP4rev1 AUTH=SCRAM-SHA-256 SASL-IR] hi\r\n")
    conn.authenticate(sasl.ScramSha256Client("joe", "pw"))
    conn.data_to_send()
    feed(conn, b"+ not base64 !!\r\n", bytewise=False)
    assert conn.data_to_send() == b"*\r\n"
    done = only_completed(feed(conn, b"A0001 BAD cancelled\r\n", bytewise=False))
    assert not done.ok and done.error is not None


def test_authenticate_a_server_that_does_not_prove_itself() -> None:
    conn = greeted(b"* OK [CAPABILITY IMAP4rev1 AUTH=SCRAM-SHA-256 SASL-IR] hi\r\n")
    conn.authenticate(sasl.ScramSha256Client("joe", "pw"))
    conn.data_to_send()
    done = only_completed(feed(conn, b"A0001 OK fine\r\n", bytewise=False))
    assert not done.ok and done.error
    assert conn.state is ClientState.NOT_AUTHENTICATED


def test_authenticate_needs_the_mechanism_offered() -> None:
    conn = greeted()
    with pytest.raises(LocalProtocolError, match="AUTH=LOGIN"):
        conn.authenticate(sasl.LoginClient("joe", "pw"))
    with pytest.raises(LocalProtocolError):
        conn.authenticate("PLAIN")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        conn.send(c.Authenticate(tag="X", mechanism="PLAIN"))


# --- IDLE -------------------------------------------------------------------------------


@BYTEWISE
def test_idle(bytewise: bool) -> None:
    conn = greeted(b"* PREAUTH [CAPABILITY IMAP4rev1 IDLE] hi\r\n")
    tag = conn.idle()
    assert conn.data_to_send() == b"A0001 IDLE\r\n"
    assert conn.idling
    with pytest.raises(LocalProtocolError):
        conn.noop()
    events = feed(conn, b"+ idling\r\n* 5 EXISTS\r\n* 2 EXPUNGE\r\n", bytewise=bytewise)
    assert [type(e) for e in events] == [IdleStarted, Update, Update]
    assert events[0] == IdleStarted(tag=tag)
    conn.idle_done()
    assert conn.data_to_send() == b"DONE\r\n"
    with pytest.raises(LocalProtocolError):
        conn.idle_done()
    done = only_completed(feed(conn, b"A0001 OK IDLE terminated\r\n", bytewise=bytewise))
    assert done.tag == tag and not conn.idling


def test_idle_done_before_the_go_ahead_waits_for_it() -> None:
    conn = greeted(b"* PREAUTH hi\r\n")
    conn.idle()
    conn.data_to_send()
    conn.idle_done()
    assert conn.data_to_send() == b""
    feed(conn, b"+ idling\r\n", bytewise=False)
    assert conn.data_to_send() == b"DONE\r\n"


def test_idle_done_without_idle_is_misuse() -> None:
    conn = greeted(b"* PREAUTH hi\r\n")
    with pytest.raises(LocalProtocolError):
        conn.idle_done()


# --- the end ----------------------------------------------------------------------------


@BYTEWISE
def test_logout(bytewise: bool) -> None:
    conn = greeted(b"* PREAUTH hi\r\n")
    tag = conn.logout()
    assert conn.data_to_send() == b"A0001 LOGOUT\r\n"
    with pytest.raises(LocalProtocolError):
        conn.noop()
    events = feed(conn, b"* BYE see you\r\nA0001 OK done\r\n", bytewise=bytewise)
    assert [type(e) for e in events] == [Bye, Completed, ConnectionClosed]
    done = events[1]
    assert isinstance(done, Completed) and done.tag == tag and len(done.data) == 1
    assert conn.closed and conn.state is ClientState.LOGOUT
    conn.receive_data(b"ignored")
    assert conn.next_event() is NEED_DATA


def test_the_server_closing_ends_the_session() -> None:
    conn = greeted(b"* PREAUTH hi\r\n")
    conn.noop()
    events = feed(conn, b"* BYE shutting down\r\n", bytewise=False)
    assert [type(e) for e in events] == [Bye]
    assert feed(conn, b"", bytewise=False) == [ConnectionClosed()]
    assert conn.pending == ()


def test_a_close_in_mid_response_is_a_protocol_error() -> None:
    conn = greeted(b"* PREAUTH hi\r\n")
    conn.noop()
    conn.receive_data(b"* 1 FETCH (BODY[] {10}\r\nabc")
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        list(conn.events())


# --- any input --------------------------------------------------------------------------

_PIECES = [
    b"* OK [CAPABILITY IMAP4rev1] x\r\n",
    b"* PREAUTH x\r\n",
    b"* BYE x\r\n",
    b"+ x\r\n",
    b"+ \r\n",
    b"A0001 OK x\r\n",
    b"A0002 NO [ALERT] x\r\n",
    b"A0003 BAD x\r\n",
    b"* 3 EXISTS\r\n",
    b"* 1 FETCH (FLAGS (\\Seen))\r\n",
    b"* 1 FETCH (BODY[] {3}\r\nabc)\r\n",
    b"* CAPABILITY IMAP4rev1\r\n",
    b"* OK [UIDVALIDITY 1] x\r\n",
    b"{5}\r\n",
    b"\r\n",
    b"garbage",
    b"\x00\xff",
    b"* 3 BYE x\r\n",
    b"* 2 CAPABILITY X\r\n",
    b"* 2 OK x\r\n",
    b'* ESEARCH (TAG "A0001") COUNT 1\r\n',
    b'* ESEARCH (TAG "nope") COUNT 1\r\n',
    b"* ENABLED UTF8=ACCEPT\r\n",
    b"* LIST () NIL INBOX\r\n",
]


@settings(max_examples=250, deadline=None)
@given(
    st.lists(st.sampled_from(_PIECES) | st.binary(max_size=12), max_size=10),
    st.lists(st.sampled_from(["noop", "login", "idle", "auth", "done"]), max_size=4),
)
def test_any_input_parses_or_raises_remote_protocol_error(
    pieces: list[bytes], actions: list[str]
) -> None:
    conn = ClientConnection(inline_max=2)
    do: dict[str, Callable[[], object]] = {
        "noop": conn.noop,
        "login": lambda: conn.login("joe", "a\nb"),
        "idle": conn.idle,
        "auth": lambda: conn.authenticate(sasl.PlainClient("joe", "pw"), initial=False),
        "done": conn.idle_done,
    }
    try:
        for i, piece in enumerate(pieces):
            if i < len(actions):
                try:
                    do[actions[i]]()
                except LocalProtocolError:
                    pass
            conn.receive_data(piece)
            list(conn.events())
            conn.data_to_send()
        conn.receive_data(b"")
        list(conn.events())
    except RemoteProtocolError:
        return
    except LocalProtocolError:
        assert conn._phase in ("tls", "compress")


# --- COMPRESS ---------------------------------------------------------------------------


def test_compress_hands_back_what_followed_the_ok() -> None:
    conn = greeted(b"* PREAUTH [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] hi\r\n")
    tag = conn.send(c.Compress(tag=conn.new_tag()))
    assert conn.data_to_send() == b"A0001 COMPRESS DEFLATE\r\n"
    conn.receive_data(b"A0001 OK DEFLATE active\r\n\x01\x02compressed")
    events = list(conn.events())
    assert only_completed(events).tag == tag
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"more")
    with pytest.raises(LocalProtocolError):
        conn.noop()
    assert conn.compression_started() == b"\x01\x02compressed"
    assert conn.compressed
    with pytest.raises(LocalProtocolError):
        conn.compression_started()
    with pytest.raises(LocalProtocolError):
        conn.send(c.Compress(tag=conn.new_tag()))
    conn.noop()
    assert conn.data_to_send() == b"A0002 NOOP\r\n"


def test_the_public_module() -> None:
    from mailagents.imap import client

    assert client.ClientConnection is ClientConnection
    assert set(client.__all__) <= set(dir(client))


# --- more of the session's bookkeeping --------------------------------------------------


def test_a_tagged_answer_to_a_command_not_yet_sent_is_a_protocol_error() -> None:
    conn = greeted()
    conn.login("joe", "a\nb")
    conn.noop()  # held behind LOGIN's literal: never sent
    conn.receive_data(b"A0002 OK what\r\n")
    with pytest.raises(RemoteProtocolError, match="A0002"):
        conn.next_event()


def test_enable_turns_on_utf8_mailbox_names() -> None:
    conn = greeted(b"* PREAUTH [CAPABILITY IMAP4rev1 ENABLE UTF8=ACCEPT] hi\r\n")
    assert not conn.utf8
    conn.send(c.Enable(tag=conn.new_tag(), capabilities=("UTF8=ACCEPT",)))
    done = only_completed(feed(conn, b"* ENABLED UTF8=ACCEPT\r\nA0001 OK\r\n", bytewise=False))
    assert len(done.data) == 1
    assert conn.enabled == {"UTF8=ACCEPT"} and conn.utf8
    conn.data_to_send()
    conn.send(c.Select(tag=conn.new_tag(), mailbox="Entwürfe"))
    assert conn.data_to_send() == 'A0002 SELECT "Entwürfe"\r\n'.encode()
    events = feed(conn, '* LIST () "/" "Entwürfe"\r\nA0002 OK done\r\n'.encode(), bytewise=False)
    assert only_completed(events).data[0].mailbox == "Entwürfe"  # type: ignore[union-attr]


def test_without_utf8_mailbox_names_are_modified_utf7() -> None:
    conn = greeted(b"* PREAUTH hi\r\n")
    conn.send(c.Select(tag=conn.new_tag(), mailbox="Entwürfe"))
    assert conn.data_to_send() == b"A0001 SELECT Entw&APw-rfe\r\n"


def test_close_and_unselect_leave_the_mailbox() -> None:
    for command in (c.Close, c.Unselect):
        conn = greeted(b"* PREAUTH hi\r\n")
        conn.send(c.Select(tag=conn.new_tag(), mailbox="INBOX"))
        feed(conn, b"A0001 OK done\r\n", bytewise=False)
        assert conn.state is ClientState.SELECTED
        conn.send(command(tag=conn.new_tag()))
        feed(conn, b"A0002 OK done\r\n", bytewise=False)
        assert conn.state is ClientState.AUTHENTICATED and conn.selected is None


def test_a_capability_code_on_any_answer_updates_them() -> None:
    conn = greeted()
    conn.noop()
    feed(conn, b"A0001 OK [CAPABILITY IMAP4rev1 MOVE] done\r\n", bytewise=False)
    assert conn.capabilities == {"IMAP4REV1", "MOVE"}
    conn.login("joe", "pw")
    feed(conn, b"A0002 NO [CAPABILITY IMAP4rev1 X] no\r\n", bytewise=False)
    assert conn.capabilities == {"IMAP4REV1", "X"}


@pytest.mark.parametrize(
    ("command", "name"),
    [
        (
            c.Fetch(tag="T", uid=True, sequence_set=SequenceSet.parse("1"), items="FAST"),
            "UID FETCH",
        ),
        (c.Expunge(tag="T", uid=True, sequence_set=SequenceSet.parse("1:3")), "UID EXPUNGE"),
        (c.Expunge(tag="T"), "EXPUNGE"),
        (c.Move(tag="T", sequence_set=SequenceSet.parse("1"), mailbox="x"), "MOVE"),
    ],
)
def test_command_names(command: c.Command, name: str) -> None:
    conn = greeted(b"* PREAUTH hi\r\n")
    conn.send(command)
    conn.receive_data(b"T OK\r\n")
    done = only_completed(list(conn.events()))
    assert done.command == name


def test_a_server_with_endless_challenges_is_cut_off() -> None:
    conn = greeted()
    conn.authenticate(sasl.PlainClient("joe", "pw"), initial=False)
    conn.receive_data(b"+ \r\n" * 40)
    with pytest.raises(RemoteProtocolError, match="challenges"):
        list(conn.events())


def test_send_literal_data_misuse() -> None:
    conn = greeted(b"* PREAUTH hi\r\n")
    with pytest.raises(LocalProtocolError):
        conn.send_literal_data(b"x")
    conn = greeted()
    conn.starttls()
    feed(conn, b"A0001 OK go\r\n", bytewise=False)
    with pytest.raises(LocalProtocolError):
        conn.send_literal_data(b"x")


_SCRIPT_COMMANDS = b"A0001 LOGIN joe {3}\r\n"
_SCRIPT = (
    b"+ go\r\n"
    b"* CAPABILITY IMAP4rev1 IDLE\r\n"
    b"A0001 OK [CAPABILITY IMAP4rev1 IDLE UIDPLUS] in\r\n"
    b"* 2 EXISTS\r\n"
    b"* 1 FETCH (UID 3 BODY[] {12}\r\nHello\r\nWorld FLAGS (\\Seen))\r\n"
    b"* OK [ALERT] maintenance tonight\r\n"
    b"A0002 OK [COPYUID 1 1:4294967295 1:4294967295] done\r\n"
    b"* BYE bye\r\nA0003 OK out\r\n"
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(_SCRIPT)), max_size=25), st.booleans())
def test_any_fragmentation_gives_the_same_events(cuts: list[int], small: bool) -> None:
    """The same script cut anywhere (the byte-at-a-time case among them) gives the same
    events and the same bytes written."""

    def play(pieces: list[bytes]) -> tuple[list[ClientEvent], bytes]:
        conn = greeted(inline_max=4 if small else 65_536)
        conn.login("joe", "a\nb")
        conn.noop()
        conn.logout()
        written = conn.data_to_send()
        events: list[ClientEvent] = []
        for piece in pieces:
            conn.receive_data(piece)
            for event in conn.events():
                if (
                    isinstance(event, LiteralData)
                    and events
                    and isinstance(events[-1], LiteralData)
                ):
                    events[-1] = LiteralData(index=event.index, data=events[-1].data + event.data)
                else:
                    events.append(event)
            written += conn.data_to_send()
        return events, written

    points = sorted(set(cuts))
    pieces = [_SCRIPT[a:b] for a, b in zip([0, *points], [*points, len(_SCRIPT)], strict=True)]
    whole = play([_SCRIPT])
    assert play([p for p in pieces if p]) == whole
    events, written = whole
    assert written.startswith(_SCRIPT_COMMANDS)
    assert isinstance(events[-1], ConnectionClosed)


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize("forged", [False, True], ids=["genuine", "forged"])
def test_authenticate_scram_against_a_real_server_exchange(bytewise: bool, forged: bool) -> None:
    """SCRAM-SHA-256 with SASL-IR against the library's own server mechanism; the
    server's final data comes as one more challenge, answered by an empty line
    (RFC 9051 §6.2.2), and its signature is checked on the tagged OK."""
    from mailagents.sasl._exchange import ServerExchange

    secrets = sasl.scram_secrets("pw", salt=b"imap-client-salt", iterations=4096)
    server = ServerExchange(sasl.ScramSha256Server())
    conn = greeted(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=SCRAM-SHA-256] hi\r\n")
    conn.authenticate(sasl.ScramSha256Client("joe", "pw"))
    line = conn.data_to_send()
    assert line.startswith(b"A0001 AUTHENTICATE SCRAM-SHA-256 ") and line.endswith(b"\r\n")
    step = server.start(server.decode_initial(line.split(b" ")[3].strip().decode()))
    while True:
        if isinstance(step, sasl.NeedCredentials):
            step = server.provide(secrets)
            continue
        if isinstance(step, sasl.Challenge):
            data = step.data
            if forged and data.startswith(b"v="):
                data = b"v=" + base64.b64encode(b"\x00" * 32)
            assert feed(conn, b"+ " + base64.b64encode(data) + b"\r\n", bytewise=bytewise) == []
            answer = conn.data_to_send()
            assert answer.endswith(b"\r\n")
            step = server.receive_line(answer[:-2].decode())
            continue
        break
    if forged:
        # The client refused the forged signature with "*" (the server cancels).
        assert not isinstance(step, sasl.Success)
        done = only_completed(feed(conn, b"A0001 BAD cancelled\r\n", bytewise=bytewise))
        assert not done.ok and done.error
        assert conn.state is ClientState.NOT_AUTHENTICATED
    else:
        assert isinstance(step, sasl.Success)
        done = only_completed(feed(conn, b"A0001 OK done\r\n", bytewise=bytewise))
        assert done.ok and done.error is None
        assert conn.state is ClientState.AUTHENTICATED
