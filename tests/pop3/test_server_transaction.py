"""TRANSACTION and UPDATE states of the POP3 server core (RFC 1939 §5-§7), with the
RFC's example dialogues as tables."""

from __future__ import annotations

import pytest

from mailagents.pop3 import (
    PAUSED,
    Accept,
    CommandRejected,
    ConnectionClosed,
    LocalProtocolError,
    MessageChunk,
    MessageEnd,
    Quit,
    Reject,
    Response,
    Retrieve,
    ServerConnection,
    State,
    Update,
)

from .server_helpers import MSG1, MSG2, App, both_ways, logged_in, run

# (commands, expected output) after login with the RFC 1939 maildrop: 2 messages, 320
# octets. Adapted from the examples of RFC 1939 §5 and §7.
EXAMPLES: list[tuple[bytes, bytes]] = [
    (b"STAT\r\n", b"+OK 2 320\r\n"),
    (b"LIST\r\n", b"+OK 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n"),
    (b"LIST 2\r\n", b"+OK 2 200\r\n"),
    (b"LIST 3\r\n", b"-ERR No such message, only 2 messages in maildrop\r\n"),
    (b"UIDL\r\n", b"+OK\r\n1 uid-1\r\n2 uid-2\r\n.\r\n"),
    (b"UIDL 2\r\n", b"+OK 2 uid-2\r\n"),
    (b"UIDL 3\r\n", b"-ERR No such message, only 2 messages in maildrop\r\n"),
    (b"DELE 1\r\n", b"+OK Message 1 deleted\r\n"),
    (b"DELE 1\r\nDELE 1\r\n", b"+OK Message 1 deleted\r\n-ERR Message 1 already deleted\r\n"),
    (b"DELE 1\r\nSTAT\r\n", b"+OK Message 1 deleted\r\n+OK 1 200\r\n"),
    (b"DELE 1\r\nLIST\r\n",
     b"+OK Message 1 deleted\r\n+OK 1 message (200 octets)\r\n2 200\r\n.\r\n"),
    (b"DELE 1\r\nLIST 1\r\n", b"+OK Message 1 deleted\r\n-ERR Message 1 already deleted\r\n"),
    (b"DELE 1\r\nUIDL\r\n", b"+OK Message 1 deleted\r\n+OK\r\n2 uid-2\r\n.\r\n"),
    (b"DELE 1\r\nRETR 1\r\n", b"+OK Message 1 deleted\r\n-ERR Message 1 already deleted\r\n"),
    (b"DELE 1\r\nTOP 1 0\r\n", b"+OK Message 1 deleted\r\n-ERR Message 1 already deleted\r\n"),
    (b"DELE 1\r\nDELE 2\r\nRSET\r\nSTAT\r\n",
     b"+OK Message 1 deleted\r\n+OK Message 2 deleted\r\n"
     b"+OK maildrop has 2 messages (320 octets)\r\n+OK 2 320\r\n"),
    (b"NOOP\r\n", b"+OK\r\n"),
    (b"RETR 1\r\n", b"+OK 120 octets\r\n" + MSG1 + b".\r\n"),
    (b"RETR 2\r\n", b"+OK 200 octets\r\n" + MSG2.replace(b"\n.dot", b"\n..dot") + b".\r\n"),
    (b"TOP 1 0\r\n", b"+OK top of message follows\r\nFrom: a@b\r\nSubject: one\r\n\r\n.\r\n"),
    (b"TOP 2 1\r\n",
     b"+OK top of message follows\r\nFrom: c@d\r\nSubject: two\r\n\r\nline 1\r\n.\r\n"),
    (b"TOP 2 2\r\n",
     b"+OK top of message follows\r\nFrom: c@d\r\nSubject: two\r\n\r\nline 1\r\n..dot line\r\n"
     b".\r\n"),
    (b"TOP 2 99\r\n",
     b"+OK top of message follows\r\n" + MSG2.replace(b"\n.dot", b"\n..dot") + b".\r\n"),
    # lower case verbs (RFC 1939 §3: keywords are case-insensitive)
    (b"stat\r\nlist 1\r\n", b"+OK 2 320\r\n+OK 1 120\r\n"),
    # bare LF ends a command too (liberal)
    (b"STAT\n", b"+OK 2 320\r\n"),
]


@pytest.mark.parametrize(("commands", "expected"), EXAMPLES)
def test_rfc1939_examples(commands: bytes, expected: bytes) -> None:
    for result in both_ways(commands):
        assert result.out == expected
        assert not result.fatal


BAD_NUMBERS = [b"0", b"-1", b"+1", b"3", b"99999999999999", b"1a", b"x", b"\xc2\xb2", b"1.0",
               b"0x1", b"01a", b"1\t"]


@pytest.mark.parametrize("verb", [b"LIST", b"UIDL", b"DELE", b"RETR"])
@pytest.mark.parametrize("number", BAD_NUMBERS)
def test_numbers_out_of_range(verb: bytes, number: bytes) -> None:
    for result in both_ways(verb + b" " + number + b"\r\nSTAT\r\n"):
        first, second = result.lines
        assert first.startswith(b"-ERR "), (verb, number, first)
        assert second == b"+OK 2 320"  # the session goes on
        assert isinstance(result.events[0], CommandRejected)
        assert result.events[0].command == verb.decode()


def test_leading_zero_is_a_number() -> None:
    assert run(b"LIST 002\r\n", logged_in()).out == b"+OK 2 200\r\n"


@pytest.mark.parametrize(
    "command",
    [b"TOP 1", b"TOP", b"TOP 1 -1", b"TOP 1 +1", b"TOP 1 x", b"TOP 1 99999999999", b"TOP 0 1",
     b"TOP 3 1", b"TOP 1 1 1", b"RETR", b"RETR 1 2", b"DELE", b"LIST 1 2", b"STAT 1",
     b"NOOP x", b"RSET x", b"QUIT x", b"UIDL 1 2"],
)
def test_bad_arguments(command: bytes) -> None:
    result = run(command + b"\r\nNOOP\r\n", logged_in())
    assert result.lines[0].startswith(b"-ERR "), result.out
    assert result.lines[1] == b"+OK"
    assert [type(e) for e in result.events] == [CommandRejected]


def test_sizes_are_reported_as_the_application_gives_them() -> None:
    # The application knows the CRLF size; the core never measures the message.
    app = App(sizes=[5, 12345678901])
    server = logged_in(app)
    result = run(b"STAT\r\nLIST\r\nRETR 2\r\n", server, app)
    assert result.lines[0] == b"+OK 2 12345678906"
    assert result.lines[1:5] == [b"+OK 2 messages (12345678906 octets)", b"1 5",
                                 b"2 12345678901", b"."]
    assert result.lines[5] == b"+OK 12345678901 octets"


def test_empty_maildrop() -> None:
    server = logged_in(App(messages=()))
    result = run(b"STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nQUIT\r\n", server)
    assert result.lines == [
        b"+OK 0 0", b"+OK 0 messages (0 octets)", b".", b"+OK", b".",
        b"-ERR No such message, only 0 messages in maildrop",
        b"+OK localhost POP3 server signing off (maildrop empty)",
    ]


def test_retrieve_event_and_streaming_by_hand() -> None:
    server = logged_in()
    server.receive_data(b"RETR 2\r\nNOOP\r\n")
    event = server.next_event()
    assert event == Retrieve(number=2, uid="uid-2", lines=None)
    assert server.next_event() is PAUSED
    assert server.paused and not server.wants_more
    with pytest.raises(LocalProtocolError):
        server.send(MessageChunk(data=b"x"))  # Accept first
    server.send(Accept())
    assert server.wants_more
    assert server.data_to_send() == b"+OK 200 octets\r\n"
    assert server.next_event() is PAUSED  # still streaming: NOOP waits
    with pytest.raises(LocalProtocolError):
        server.send(Accept())
    server.send(MessageChunk(data=b".a\nb"))
    server.send(MessageChunk(data=b""))
    server.send(MessageEnd())
    assert not server.paused
    assert server.data_to_send() == b"..a\r\nb\r\n.\r\n"
    assert server.next_event() is not PAUSED
    assert server.data_to_send() == b"+OK\r\n"


def test_top_cut_stops_wanting_more() -> None:
    server = logged_in()
    server.receive_data(b"TOP 1 1\r\n")
    assert isinstance(server.next_event(), Retrieve)
    server.send(Accept())
    server.send(MessageChunk(data=b"H: 1\r\n\r\nbody 1\r\nbo"))
    assert not server.wants_more
    server.send(MessageChunk(data=b"dy 2\r\n"))  # ignored
    server.send(MessageEnd())
    assert server.data_to_send() == b"+OK top of message follows\r\nH: 1\r\n\r\nbody 1\r\n.\r\n"


def test_retrieve_rejected() -> None:
    reject = Reject(reply=Response(ok=False, code="SYS/TEMP", text="message vanished"))
    server = logged_in(App(retrieve_reject=reject))
    result = run(b"RETR 1\r\nNOOP\r\n", server, App(retrieve_reject=reject))
    assert result.out == b"-ERR [SYS/TEMP] message vanished\r\n+OK\r\n"


def test_update_accepted() -> None:
    app = App()
    server = logged_in(app)
    result = run(b"DELE 2\r\nQUIT\r\nNOOP\r\n", server, app)
    assert result.lines == [
        b"+OK Message 2 deleted",
        b"+OK localhost POP3 server signing off (1 message left)",
    ]
    update = app.log[0]
    assert isinstance(update, Update)
    assert update.numbers == (2,) and update.deleted[0].uid == "uid-2"
    assert [type(e) for e in result.events] == [Update, Quit]
    assert server.state is State.CLOSED


def test_update_all_deleted_and_rejected() -> None:
    reject = Reject(reply=Response(ok=False, code="SYS/TEMP",
                                      text="some deleted messages not removed"))
    app = App(update_reject=reject)
    server = logged_in(app)
    result = run(b"DELE 2\r\nDELE 1\r\nQUIT\r\n", server, app)
    assert result.lines[-1] == b"-ERR [SYS/TEMP] some deleted messages not removed"
    update = app.log[0]
    assert isinstance(update, Update) and update.numbers == (1, 2)
    assert isinstance(result.events[-1], Quit)


def test_update_by_hand_states() -> None:
    server = logged_in()
    server.receive_data(b"QUIT\r\n")
    event = server.next_event()
    assert event == Update(deleted=(), numbers=())
    assert server.state is State.UPDATE and server.paused
    with pytest.raises(LocalProtocolError):
        server.send(MessageEnd())
    server.send(Accept())
    assert server.next_event() == Quit()
    assert server.data_to_send() == b"+OK localhost POP3 server signing off (2 messages left)\r\n"


@pytest.mark.parametrize("pieces", [[b"DELE 1\r\n", b""], [b"DELE 1\r\nQU", b""]])
def test_peer_close_in_transaction_deletes_nothing(pieces: list[bytes]) -> None:
    app = App()
    server = logged_in(app)
    result = run(pieces, server, app)
    assert isinstance(result.events[-1], ConnectionClosed)
    assert not any(isinstance(e, Update) for e in result.events)
    assert app.log == []
    assert server.state is State.CLOSED


def test_timed_out_in_transaction() -> None:
    app = App()
    server = logged_in(app)
    run(b"DELE 1\r\n", server, app)
    server.timed_out()
    assert server.data_to_send() == b"-ERR Autologout; idle for too long\r\n"
    assert server.state is State.CLOSED
    server.receive_data(b"QUIT\r\n")  # ignored
    server.receive_data(b"")
    assert server.next_event() == ConnectionClosed()
    assert app.log == []  # no UPDATE: nothing deleted (RFC 1939 §3)
    server.timed_out()
    assert server.data_to_send() == b""


def test_shutdown_while_paused() -> None:
    server = logged_in()
    server.receive_data(b"RETR 1\r\n")
    assert isinstance(server.next_event(), Retrieve)
    server.shutdown("going down")
    assert server.data_to_send() == b"-ERR [SYS/TEMP] going down\r\n"
    assert not server.paused and server.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        server.send(Accept())


def test_messages_property() -> None:
    server = logged_in()
    assert server.messages == 2 and server.identity == "mrose"
    assert ServerConnection().messages == 0


def test_commands_pipelined_while_streaming_are_bounded() -> None:
    server = logged_in()
    server.receive_data(b"RETR 1\r\n")
    assert isinstance(server.next_event(), Retrieve)
    from mailagents.pop3 import RemoteProtocolError

    with pytest.raises(RemoteProtocolError):
        server.receive_data(b"NOOP\r\n" * 20_000)
    assert server.data_to_send().endswith(b"-ERR [SYS/PERM] Too much pipelined input, closing "
                                          b"connection\r\n")


@pytest.mark.parametrize(
    "kw",
    [{"size": -1, "uid": "a"}, {"size": 1, "uid": ""}, {"size": 1, "uid": "a b"},
     {"size": 1, "uid": "x" * 71}, {"size": 1, "uid": "\u00e9"}],
)
def test_maildrop_entry_validation(kw: dict[str, object]) -> None:
    from mailagents.pop3 import MaildropEntry

    with pytest.raises(LocalProtocolError):
        MaildropEntry(**kw)  # type: ignore[arg-type]
    MaildropEntry(size=0, uid="!" + "~" * 69)  # the limits themselves are fine


def test_reject_needs_err() -> None:
    with pytest.raises(LocalProtocolError):
        Reject(reply=Response(ok=True, text="fine"))
