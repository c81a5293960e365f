"""The IMAP server connection (mailagents/imap/_server.py and its parts): greeting,
tags, states, LOGIN/AUTHENTICATE, STARTTLS, IDLE, SELECT and the selected view, literals
and limits, bad commands; every case fed whole and one byte at a time."""

from __future__ import annotations

import inspect
from base64 import b64encode
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents import sasl
from mailagents._protocol import NEED_DATA, PAUSED, LocalProtocolError, RemoteProtocolError
from mailagents.imap._commands import Append, Examine, Fetch, Select
from mailagents.imap._config import ServerConfig
from mailagents.imap._events import (
    AppendChunk,
    AppendEnd,
    AppendStart,
    Authenticated,
    AuthenticationFailed,
    CommandReceived,
    CommandRejected,
    Complete,
    ConnectionClosed,
    Greeting,
    IdleEnded,
    IdleStarted,
    StartTLS,
    Untagged,
)
from mailagents.imap._frame import Frame, Streamed
from mailagents.imap._selected import SelectedMailbox
from mailagents.imap._server import ServerConnection
from mailagents.imap._state import COMMANDS, TRANSITIONS, State, valid_in
from mailagents.sasl._exchange import ClientExchange

PLAIN_IR = b64encode(b"\x00fred\x00secret").decode()


@dataclass
class App:
    """A scripted application: user fred/secret, INBOX with UIDs 1-5."""

    uids: tuple[int, ...] = (1, 2, 3, 4, 5)
    answer: Complete | None = None  # the answer to every other command
    log: list[object] = field(default_factory=list)
    appended: bytes = b""
    next_uid: int = 100

    def handle(self, server: ServerConnection, event: object) -> None:
        self.log.append(event)
        if isinstance(event, sasl.NeedCredentials):
            ok = event.authcid == "fred" and event.password == "secret"
            server.send(sasl.PasswordVerdict(valid=ok))
        elif isinstance(event, AppendChunk):
            self.appended += event.data
        elif isinstance(event, CommandReceived):
            command = event.command
            if isinstance(command, Select | Examine):
                if command.mailbox != "INBOX":
                    server.send(Complete(status="NO", text="No such mailbox", code="NONEXISTENT"))
                    return
                server.send(Untagged(frame=Frame(lines=(b"* %d EXISTS" % len(self.uids),))))
                if "CONDSTORE" in server.enabled:  # RFC 7162 §3.1.2
                    server.send(Untagged(frame=Frame(lines=(b"* OK [HIGHESTMODSEQ 1] Ok",))))
                server.send(Complete(code="READ-WRITE", selected=SelectedMailbox(self.uids)))
            elif isinstance(command, Append) and self.answer is None and server.mailbox:
                first, self.next_uid = self.next_uid, self.next_uid + len(command.messages)
                uids = f"{first}:{self.next_uid - 1}" if len(command.messages) > 1 else first
                server.send(Complete(code=f"APPENDUID 1 {uids}"))  # RFC 4315 §3
            else:
                server.send(self.answer or Complete())


@dataclass
class Result:
    out: bytes
    events: list[object]

    @property
    def lines(self) -> list[bytes]:
        return self.out.split(b"\r\n")[:-1]


def new(config: ServerConfig | None = None, greeting: Greeting | None = None) -> ServerConnection:
    server = ServerConnection(
        config or ServerConfig(allow_plaintext_login=True, tls_available=True)
    )
    server.send(greeting or Greeting())
    server.data_to_send()
    return server


def run(
    server: ServerConnection, data: bytes, app: App | None = None, *, bytewise: bool = False
) -> Result:
    app = app or App()
    events: list[object] = []
    pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for piece in pieces:
        server.receive_data(piece)
        while True:
            event = server.next_event()
            if event is NEED_DATA or event is PAUSED:
                break
            events.append(event)
            app.handle(server, event)
    return Result(out=server.data_to_send(), events=events)


def both(
    data: bytes, *, route: bytes = b"", config: ServerConfig | None = None, app: App | None = None
) -> tuple[Result, ServerConnection]:
    """Run ``data`` whole and byte by byte after ``route``; both must give the same."""
    results = []
    for bytewise in (False, True):
        server = new(config)
        if route:
            run(server, route, app)
        results.append((run(server, data, app, bytewise=bytewise), server))
    (whole, server), (single, server2) = results
    assert whole.out == single.out
    assert server.state is server2.state
    return whole, server


LOGIN = b"a0 LOGIN fred secret\r\n"
SELECT = LOGIN + b"a1 SELECT INBOX\r\n"


# --- greeting -------------------------------------------------------------------------


def test_greeting_ok_lists_capabilities() -> None:
    server = ServerConnection(ServerConfig(tls_available=True))
    assert server.next_event() is PAUSED  # nothing is read before the greeting
    server.send(Greeting(text="ready"))
    line = server.data_to_send()
    assert line.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 ")
    assert b" STARTTLS LOGINDISABLED AUTH=SCRAM-SHA-256 " in line
    assert b"AUTH=PLAIN" not in line  # no clear-text password before TLS
    assert line.endswith(b"] ready\r\n")
    assert server.state is State.NOT_AUTHENTICATED
    with pytest.raises(LocalProtocolError):
        server.send(Greeting())


def test_greeting_preauth_and_bye() -> None:
    server = new(greeting=Greeting(kind="PREAUTH", text="hi", identity="fred"))
    assert server.state is State.AUTHENTICATED and server.identity == "fred"
    server = ServerConnection()
    server.send(Greeting(kind="BYE", text="busy"))
    assert server.data_to_send() == b"* BYE busy\r\n"
    assert server.next_event() == ConnectionClosed(reason="refused at greeting")
    assert server.state is State.LOGOUT
    with pytest.raises(LocalProtocolError):
        Greeting(kind="PREAUTH")


# --- session commands --------------------------------------------------------------------


def test_capability_noop_id_logout() -> None:
    result, server = both(b"c1 CAPABILITY\r\nc2 NOOP\r\nc3 ID NIL\r\nc4 LOGOUT\r\n")
    lines = result.lines
    assert lines[0].startswith(b"* CAPABILITY IMAP4rev1 ")
    assert lines[1:] == [
        b"c1 OK CAPABILITY completed",
        b"c2 OK NOOP completed",
        b"* ID NIL",
        b"c3 OK ID completed",
        b"* BYE Logging out",
        b"c4 OK LOGOUT completed",
    ]
    assert result.events == [ConnectionClosed(reason="logout")]
    assert server.state is State.LOGOUT


def test_bad_syntax_unknown_and_out_of_state_commands() -> None:
    result, server = both(b"t1 FETCH 1 FLAGS\r\nt2 FROB\r\n", route=LOGIN)
    assert result.lines == [b"t1 BAD FETCH not valid in this state", b"t2 BAD Unknown command"]
    assert [type(e) for e in result.events] == [CommandRejected, CommandRejected]
    assert server.state is State.AUTHENTICATED


def test_three_bad_commands_before_login_end_the_session() -> None:
    server = new()
    with pytest.raises(RemoteProtocolError):
        run(server, b"a SELECT INBOX\r\nb FROB\r\nc LOGIN\r\nd NOOP\r\n")
    out = server.data_to_send().split(b"\r\n")
    assert out[:3] == [b"a BAD SELECT not valid in this state", b"b BAD Unknown command", out[2]]
    assert out[2].startswith(b"c BAD ") and out[3] == b"* BYE Too many invalid commands"
    assert server.state is State.LOGOUT
    with pytest.raises(RemoteProtocolError):
        server.next_event()


def test_bad_commands_after_login_do_not_end_the_session() -> None:
    result, server = both(b"a FROB\r\nb FROB\r\nc FROB\r\nd NOOP\r\n", route=LOGIN)
    assert result.lines[-1] == b"d OK NOOP completed"


def test_untagged_bad_without_a_tag() -> None:
    result, _ = both(b"+\r\n")
    assert result.lines[0].startswith(b"* BAD ")


# --- LOGIN, AUTHENTICATE -----------------------------------------------------------------


def test_login() -> None:
    result, server = both(LOGIN)
    assert result.lines[0].startswith(b"a0 OK [CAPABILITY IMAP4rev1 ")
    assert b"AUTH=" not in result.lines[0] and result.lines[0].endswith(b"] Logged in")
    assert server.state is State.AUTHENTICATED and server.identity == "fred"
    assert Authenticated(identity="fred", mechanism="LOGIN") in result.events


def test_login_wrong_password() -> None:
    result, server = both(b"a0 LOGIN fred nope\r\n")
    assert result.lines == [b"a0 NO [AUTHENTICATIONFAILED] Authentication failed"]
    assert server.state is State.NOT_AUTHENTICATED
    assert any(isinstance(e, AuthenticationFailed) for e in result.events)


def test_logindisabled_before_tls() -> None:
    result, server = both(LOGIN, config=ServerConfig(tls_available=True))
    assert result.lines == [b"a0 NO [PRIVACYREQUIRED] LOGIN needs TLS: use STARTTLS first"]
    assert server.state is State.NOT_AUTHENTICATED


def test_authenticate_plain_with_sasl_ir() -> None:
    result, server = both(f"a AUTHENTICATE PLAIN {PLAIN_IR}\r\n".encode())
    assert result.lines[0].startswith(b"a OK [CAPABILITY ")
    assert server.state is State.AUTHENTICATED


def test_authenticate_plain_with_a_challenge() -> None:
    result, server = both(f"a AUTHENTICATE PLAIN\r\n{PLAIN_IR}\r\n".encode())
    assert result.lines[0] == b"+ "
    assert result.lines[1].startswith(b"a OK [CAPABILITY ")
    assert server.state is State.AUTHENTICATED


@pytest.mark.parametrize(
    ("line", "answer"),
    [
        (b"*", b"a BAD Authentication cancelled"),  # RFC 9051 §6.2.2
        (b"!!!", b"a BAD Invalid base64 in response"),
        (b64encode(b"\x00fred\x00bad"), b"a NO [AUTHENTICATIONFAILED] Authentication failed"),
    ],
)
def test_authenticate_failures(line: bytes, answer: bytes) -> None:
    result, server = both(b"a AUTHENTICATE PLAIN\r\n" + line + b"\r\nb NOOP\r\n")
    assert result.lines[1:] == [answer, b"b OK NOOP completed"]
    assert server.state is State.NOT_AUTHENTICATED


def test_authenticate_unknown_mechanism() -> None:
    result, _ = both(b"a AUTHENTICATE X-NOPE\r\n")
    assert result.lines == [b"a NO [CANNOT] Unsupported authentication mechanism"]


def test_scram_full_exchange() -> None:
    secrets = sasl.scram_secrets("secret", salt=b"0123456789abcdef", iterations=4096)
    server = new()
    client = ClientExchange(sasl.ScramSha256Client("fred", "secret"))
    first = client.initial_argument(None)
    server.receive_data(f"s AUTHENTICATE SCRAM-SHA-256 {first}\r\n".encode())
    while True:
        event = server.next_event()
        if isinstance(event, sasl.NeedCredentials):
            server.send(secrets)
            continue
        if event is NEED_DATA:
            out = server.data_to_send()
            if out.startswith(b"+ "):
                server.receive_data(client.answer(out[2:-2].decode()))
                continue
            break
    assert out.startswith(b"s OK [CAPABILITY ") and server.state is State.AUTHENTICATED


# --- STARTTLS ----------------------------------------------------------------------------


def test_starttls_drops_input_and_starts_afresh() -> None:
    server = new(ServerConfig(tls_available=True))
    result = run(server, b"t STARTTLS\r\nx LOGIN fred secret\r\n")
    assert result.lines == [b"t OK Begin TLS negotiation now"]
    assert result.events == [StartTLS()]
    assert server.state is State.TLS_PENDING
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"y NOOP\r\n")
    server.tls_started()
    assert server.state is State.NOT_AUTHENTICATED and server.tls_active
    caps = run(server, b"c CAPABILITY\r\n").lines[0]
    assert b"STARTTLS" not in caps and b"LOGINDISABLED" not in caps and b"AUTH=PLAIN" in caps
    assert run(server, b"t2 STARTTLS\r\n").lines == [b"t2 BAD STARTTLS not available"]
    assert run(server, LOGIN).lines[0].startswith(b"a0 OK ")
    with pytest.raises(LocalProtocolError):
        server.tls_started()


# --- SELECT, the view, IDLE --------------------------------------------------------------


def test_select_and_fetch_go_to_the_application() -> None:
    app = App()
    result, server = both(SELECT + b"a2 FETCH 1:* FLAGS\r\n", app=app)
    assert result.lines[-3:] == [
        b"* 5 EXISTS",
        b"a1 OK [READ-WRITE] SELECT completed",
        b"a2 OK FETCH completed",
    ]
    assert server.state is State.SELECTED and server.mailbox is not None
    assert isinstance(app.log[-1], CommandReceived)
    assert isinstance(app.log[-1].command, Fetch)


def test_failed_select_deselects() -> None:
    result, server = both(b"a2 SELECT Nope\r\n", route=SELECT)
    assert result.lines == [
        b"* OK [CLOSED] Previous mailbox is now closed",
        b"a2 NO [NONEXISTENT] No such mailbox",
    ]
    assert server.state is State.AUTHENTICATED and server.mailbox is None


def test_updates_follow_rfc_9051_7_5_1() -> None:
    server = new(ServerConfig(allow_plaintext_login=True))
    run(server, SELECT)
    view = server.mailbox
    assert view is not None
    view.expunged([2])
    view.appended([6])
    server.refresh()  # no command in progress: EXISTS only
    assert server.data_to_send() == b"* 6 EXISTS\r\n"
    # A FETCH answer carries no EXPUNGE; a NOOP does.
    assert run(server, b"f FETCH 1 FLAGS\r\n").lines == [b"f OK FETCH completed"]
    assert run(server, b"u UID FETCH 1 FLAGS\r\n").lines == [
        b"* 2 EXPUNGE",
        b"u OK UID FETCH completed",
    ]
    view.flags_changed(3, ["\\Seen"])
    assert run(server, b"n NOOP\r\n").lines == [
        b"* 2 FETCH (FLAGS (\\Seen))",
        b"n OK NOOP completed",
    ]


def test_close_sends_no_expunge() -> None:
    server = new()
    run(server, SELECT)
    assert server.mailbox is not None
    server.mailbox.expunged([1])
    assert run(server, b"c CLOSE\r\n").lines == [b"c OK CLOSE completed"]
    assert server.state is State.AUTHENTICATED


def test_idle() -> None:
    server = new()
    run(server, SELECT)
    result = run(server, b"i IDLE\r\n")
    assert result.lines == [b"+ idling"] and result.events == [IdleStarted(tag="i")]
    assert server.state is State.IDLE_SELECTED
    assert server.mailbox is not None
    server.mailbox.expunged([5])
    server.refresh()
    assert server.data_to_send() == b"* 5 EXPUNGE\r\n"
    result = run(server, b"done\r\n")
    assert result.lines == [b"i OK IDLE terminated"] and result.events == [IdleEnded(tag="i")]
    assert server.state is State.SELECTED
    run(server, b"j IDLE\r\n")
    assert run(server, b"NOOP\r\n").lines == [b"j BAD Expected DONE"]
    assert server.state is State.SELECTED


def test_enable() -> None:
    result, server = both(b"e ENABLE QRESYNC X-NONE IMAP4rev2\r\n", route=LOGIN)
    # named as the capability list spells them (RFC 9051 §8: "* ENABLED IMAP4rev2")
    assert result.lines == [b"* ENABLED QRESYNC IMAP4rev2", b"e OK ENABLE completed"]
    assert server.enabled == {"QRESYNC", "CONDSTORE", "IMAP4REV2"}
    run(server, b"s SELECT INBOX\r\n")
    assert server.mailbox is not None and server.mailbox.qresync


def test_qresync_select_without_enable_is_bad() -> None:
    result, _ = both(b"s SELECT INBOX (QRESYNC (67890007 20050715194045000))\r\n", route=LOGIN)
    assert result.lines == [b"s BAD QRESYNC not enabled"]


# --- literals, APPEND, limits --------------------------------------------------------------


def test_synchronising_literal_gets_a_continuation() -> None:
    result, server = both(b"a0 LOGIN {4}\r\nfred {6}\r\nsecret\r\n")
    assert result.lines[:2] == [b"+ Ready for literal data"] * 2
    assert result.lines[2].startswith(b"a0 OK ")


def test_append_streams_the_message() -> None:
    message = b"Subject: hi\r\n\r\nbody\r\n"
    data = b"p APPEND INBOX (\\Seen) {%d}\r\n" % len(message) + message + b"\r\n"
    app = App(answer=Complete(code="APPENDUID 38505 3955"))
    result, _ = both(data, route=LOGIN, app=app)
    assert result.lines == [
        b"+ Ready for literal data",
        b"p OK [APPENDUID 38505 3955] APPEND completed",
    ]
    kinds = [type(e) for e in result.events]
    assert kinds[0] is AppendStart and kinds[-2] is AppendEnd
    assert result.events[0] == AppendStart(
        tag="p", mailbox="INBOX", size=len(message), binary=False, index=0
    )
    command = result.events[-1]
    assert isinstance(command, CommandReceived) and isinstance(command.command, Append)
    assert command.command.messages[0].data == Streamed(size=len(message), index=0)
    assert message in app.appended


def test_literal_too_big_is_toobig_and_the_session_goes_on() -> None:
    cfg = ServerConfig(allow_plaintext_login=True, max_literal=10)
    result, server = both(
        b"a LOGIN {100}\r\nb LOGIN {100+}\r\n" + b"x" * 100 + b" y\r\nc NOOP\r\n", config=cfg
    )
    assert result.lines == [
        b"a NO [TOOBIG] Literal too big",
        b"b NO [TOOBIG] Literal too big",
        b"c OK NOOP completed",
    ]


def test_oversized_non_synchronising_literal_with_bye() -> None:
    cfg = ServerConfig(allow_plaintext_login=True, max_literal=10, oversized_bye=True)
    server = new(cfg)
    with pytest.raises(RemoteProtocolError):
        run(server, b"b LOGIN {100+}\r\n")
    assert server.data_to_send() == b"* BYE Literal too big\r\n"


def test_line_too_long_is_bad() -> None:
    cfg = ServerConfig(allow_plaintext_login=True, max_line=1000)
    result, _ = both(b"a NOOP " + b"x" * 2000 + b"\r\nb NOOP\r\n", config=cfg)
    assert result.lines == [b"a BAD Line too long", b"b OK NOOP completed"]


def test_too_much_input_while_paused() -> None:
    server = new(ServerConfig(allow_plaintext_login=True, max_buffer=2000, max_line=1000))
    run(server, SELECT)
    server.receive_data(b"f FETCH 1 FLAGS\r\n")
    assert isinstance(server.next_event(), CommandReceived)
    assert server.next_event() is PAUSED
    with pytest.raises(RemoteProtocolError):
        server.receive_data(b"n NOOP\r\n" * 300)
    assert server.data_to_send().endswith(b"* BYE Too much input while busy\r\n")


def test_send_misuse() -> None:
    server = new()
    with pytest.raises(LocalProtocolError):
        server.send(Complete())
    run(server, LOGIN)
    server.receive_data(b"s SELECT INBOX\r\n")
    assert isinstance(server.next_event(), CommandReceived)
    with pytest.raises(LocalProtocolError):
        server.send(Complete())  # an OK to SELECT needs the view
    with pytest.raises(LocalProtocolError):
        Complete(status="NO", selected=SelectedMailbox([]))
    with pytest.raises(LocalProtocolError):
        Complete(text="a\r\nb")


def test_client_close() -> None:
    server = new()
    server.receive_data(b"")
    assert server.next_event() == ConnectionClosed(reason="connection closed by the client")
    assert server.state is State.LOGOUT and server.next_event() is NEED_DATA


def test_shutdown() -> None:
    server = new()
    server.shutdown()
    assert server.data_to_send() == b"* BYE Server shutting down\r\n"
    assert isinstance(server.next_event(), ConnectionClosed)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"a NOOP\r\n",
                LOGIN,
                b"s SELECT INBOX\r\n",
                b"f FETCH 1:* (FLAGS)\r\n",
                b"i IDLE\r\n",
                b"DONE\r\n",
                b"x FROB\r\n",
                b"l LOGIN {3}\r\n",
                b"abc def\r\n",
                b"\r\n",
                b"+\r\n",
                b"u AUTHENTICATE PLAIN\r\n",
                b"*\r\n",
                b"c CLOSE\r\n",
                b"o LOGOUT\r\n",
            ]
        )
        | st.binary(max_size=30),
        max_size=12,
    )
)
def test_any_input_is_answered_or_raises_remote_protocol_error(pieces: list[bytes]) -> None:
    server = new()
    try:
        for piece in pieces:
            run(server, piece)
    except RemoteProtocolError:
        assert b"* BYE" in server.data_to_send()


# --- the state table walked through the connection ------------------------------------

# A well-formed instance of each command.
ARGUMENTS = {
    "CAPABILITY": b"CAPABILITY", "NOOP": b"NOOP", "LOGOUT": b"LOGOUT", "ID": b"ID NIL",
    "STARTTLS": b"STARTTLS", "AUTHENTICATE": b"AUTHENTICATE PLAIN " + PLAIN_IR.encode(),
    "LOGIN": b"LOGIN fred secret", "ENABLE": b"ENABLE CONDSTORE",
    "SELECT": b"SELECT INBOX", "EXAMINE": b"EXAMINE INBOX", "CREATE": b"CREATE x",
    "DELETE": b"DELETE x", "RENAME": b"RENAME x y", "SUBSCRIBE": b"SUBSCRIBE x",
    "UNSUBSCRIBE": b"UNSUBSCRIBE x", "LIST": b'LIST "" *', "LSUB": b'LSUB "" *',
    "NAMESPACE": b"NAMESPACE", "STATUS": b"STATUS INBOX (MESSAGES)",
    "APPEND": b"APPEND INBOX {1+}\r\nx", "IDLE": b"IDLE", "COMPRESS": b"COMPRESS DEFLATE",
    "CLOSE": b"CLOSE", "UNSELECT": b"UNSELECT", "EXPUNGE": b"EXPUNGE",
    "SEARCH": b"SEARCH ALL", "FETCH": b"FETCH 1 FLAGS", "STORE": b"STORE 1 +FLAGS (\\Seen)",
    "COPY": b"COPY 1 x", "MOVE": b"MOVE 1 x", "UID": b"UID FETCH 1 FLAGS",
    "SORT": b"SORT (DATE) UTF-8 ALL", "THREAD": b"THREAD REFERENCES UTF-8 ALL",
    "CHECK": b"CHECK",
}  # fmt: skip

ROUTES = {State.NOT_AUTHENTICATED: b"", State.AUTHENTICATED: LOGIN, State.SELECTED: SELECT}


def test_every_command_has_an_instance() -> None:
    assert set(ARGUMENTS) == COMMANDS


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("state", list(ROUTES))
def test_every_state_and_command(state: State, command: str) -> None:
    server = new()
    if ROUTES[state]:
        run(server, ROUTES[state])
    assert server.state is state
    result = run(server, b"t " + ARGUMENTS[command] + b"\r\n")
    refused = b"t BAD %s not valid in this state" % command.encode()
    if not valid_in(state, command):
        assert result.lines == [refused]
        assert server.state is state  # a refused command changes nothing
        return
    assert refused not in result.lines, result.lines
    assert not any(line.startswith(b"t BAD") for line in result.lines) or command == "COMPRESS"
    row = TRANSITIONS[state]
    if command == "AUTHENTICATE":  # the exchange ends at once with the initial response
        assert server.state is TRANSITIONS[row[command]]["AUTH_OK"]
    elif command == "COMPRESS":  # valid here, but not offered by this configuration
        assert server.state is state
    else:
        assert server.state is row[command], (state, command)


def test_the_core_changes_state_only_through_the_table() -> None:
    from mailagents.imap import _server, _server_auth, _server_core

    source = "".join(inspect.getsource(m) for m in (_server_core, _server, _server_auth))
    assert source.count("self._state = ") == 1  # the first state, in the constructor
    assert source.count("self._state, self._row = move") == 1


# --- more paths -----------------------------------------------------------------------


def test_compress_when_offered() -> None:
    from mailagents.imap._config import DEFAULT_EXTENSIONS
    from mailagents.imap._events import CompressionStarted

    cfg = ServerConfig(
        allow_plaintext_login=True, extensions=(*DEFAULT_EXTENSIONS, "COMPRESS=DEFLATE")
    )
    server = new(cfg)
    run(server, LOGIN)
    # RFC 4978 §3: what follows the command is compressed already; the core reads
    # nothing more until the adapter's codec is in, and hands those octets back.
    result = run(server, b"z COMPRESS DEFLATE\r\n<compressed octets>")
    assert result.lines == [b"z OK DEFLATE active"]
    assert CompressionStarted() in result.events
    assert server.next_event() is NEED_DATA
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"more")
    assert server.compression_started() == b"<compressed octets>"
    with pytest.raises(LocalProtocolError):
        server.compression_started()
    # The adapter feeds back what its codec decoded.
    result = run(server, b"z2 COMPRESS DEFLATE\r\n")
    assert result.lines == [b"z2 NO [COMPRESSIONACTIVE] Compression already active"]


def test_untagged_answers_go_out_in_order() -> None:
    app = App(answer=None)
    server = new()
    run(server, LOGIN)
    server.receive_data(b'l LIST "" *\r\n')
    assert isinstance(server.next_event(), CommandReceived)
    server.send(Untagged(frame=Frame(lines=(b'* LIST () "/" {5}', b""), literals=(b"INBOX",))))
    server.send(Complete())
    assert server.data_to_send() == b'* LIST () "/" {5}\r\nINBOX\r\nl OK LIST completed\r\n'
    with pytest.raises(LocalProtocolError):
        Untagged(frame=Frame(lines=(b"l OK",)))
    assert app.log == []


def test_credentials_refused_by_the_application() -> None:
    server = new()
    server.receive_data(LOGIN)
    assert isinstance(server.next_event(), sasl.NeedCredentials)
    assert server.next_event() is PAUSED
    with pytest.raises(LocalProtocolError):
        server.send(Complete())
    server.send(Complete(status="NO", text="Account locked", code="CONTACTADMIN"))
    assert server.data_to_send() == b"a0 NO [CONTACTADMIN] Account locked\r\n"
    assert isinstance(server.next_event(), AuthenticationFailed)


def test_authenticate_empty_initial_response_and_long_line() -> None:
    result, server = both(b"a AUTHENTICATE PLAIN =\r\n")
    assert result.lines[0].startswith(b"a NO [AUTHENTICATIONFAILED]")
    cfg = ServerConfig(allow_plaintext_login=True, max_line=1000)
    result, server = both(b"a AUTHENTICATE PLAIN\r\n" + b"A" * 2000 + b"\r\nb NOOP\r\n", config=cfg)
    assert result.lines[1:] == [b"a BAD Response line too long", b"b OK NOOP completed"]
    assert server.state is State.NOT_AUTHENTICATED


def test_append_literal8_and_literal_mailbox() -> None:
    data = b"p APPEND {5}\r\nINBOX ~{3}\r\n\x00\x01\x02\r\n"
    app = App()
    result, _ = both(data, route=LOGIN, app=app)
    assert result.lines[:2] == [b"+ Ready for literal data"] * 2
    start = next(e for e in result.events if isinstance(e, AppendStart))
    assert start.mailbox == "INBOX" and start.binary
    assert app.appended.endswith(b"\x00\x01\x02")


def test_no_answers_do_not_count_as_bad_commands() -> None:
    server = new()
    for _ in range(5):
        assert run(server, b"a0 LOGIN fred nope\r\n").lines[0].startswith(b"a0 NO ")
    assert server.state is State.NOT_AUTHENTICATED


def test_qresync_updates_on_the_wire() -> None:
    server = new()
    run(server, LOGIN + b"e ENABLE QRESYNC\r\ns SELECT INBOX\r\n")
    view = server.mailbox
    assert view is not None and view.qresync and view.condstore
    view.expunged([2, 3])
    view.flags_changed(4, ["\\Seen", "$Junk"], modseq=91)
    assert run(server, b"n NOOP\r\n").lines == [
        b"* VANISHED 2:3",
        b"* 2 FETCH (FLAGS (\\Seen $Junk) UID 4 MODSEQ (91))",
        b"n OK NOOP completed",
    ]


def test_select_condstore_enables_it() -> None:
    server = new()
    run(server, LOGIN + b"s SELECT INBOX (CONDSTORE)\r\n")
    assert "CONDSTORE" in server.enabled
    assert server.mailbox is not None and server.mailbox.condstore


def test_events_iterator_and_failed_core() -> None:
    server = new(ServerConfig(allow_plaintext_login=True, max_bad_commands=1))
    server.receive_data(b"a FROB\r\n")
    with pytest.raises(RemoteProtocolError):
        list(server.events())
    for call in (
        lambda: server.receive_data(b"x"),
        lambda: server.send(Complete()),
        server.next_event,
    ):
        with pytest.raises(RemoteProtocolError):
            call()
    server = new()
    server.receive_data(b"c CAPABILITY\r\n")
    assert list(server.events()) == []
    with pytest.raises(LocalProtocolError):
        server.send(Greeting())


def test_streamed_literal_in_an_answer() -> None:
    from mailagents.imap._events import LiteralData

    server = new()
    run(server, SELECT)
    server.receive_data(b"f FETCH 1 BODY[]\r\n")
    assert isinstance(server.next_event(), CommandReceived)
    server.data_to_send()
    frame = Frame(lines=(b"* 1 FETCH (BODY[] {10}", b" UID 1)"), literals=(Streamed(size=10),))
    server.send(Untagged(frame=frame))
    assert server.mailbox is not None
    server.mailbox.appended([9])
    server.refresh()  # nothing may cut into the literal
    with pytest.raises(LocalProtocolError):
        server.send(Complete())
    server.send(LiteralData(data=b"01234"))
    with pytest.raises(LocalProtocolError):
        server.send(LiteralData(data=b"too long"))
    server.send(LiteralData(data=b"56789"))
    server.send(Complete())
    assert server.data_to_send() == (
        b"* 1 FETCH (BODY[] {10}\r\n0123456789 UID 1)\r\n* 6 EXISTS\r\nf OK FETCH completed\r\n"
    )
    empty = Frame(lines=(b"* 1 FETCH (BODY[] {0}", b")"), literals=(Streamed(size=0),))
    server.receive_data(b"g FETCH 1 BODY[]\r\n")
    assert isinstance(server.next_event(), CommandReceived)
    server.send(Untagged(frame=empty))
    server.send(Complete())
    assert server.data_to_send() == b"* 1 FETCH (BODY[] {0}\r\n)\r\ng OK FETCH completed\r\n"
    with pytest.raises(LocalProtocolError):
        server.send(LiteralData(data=b"x"))


def test_client_close_while_tls_is_pending() -> None:
    server = new()
    run(server, b"t STARTTLS\r\n")
    server.receive_data(b"")
    assert server.next_event() == ConnectionClosed(reason="connection closed by the client")
    assert server.state is State.LOGOUT


def test_confirm_append_refuses_before_the_octets() -> None:
    from mailagents.imap._events import AppendRequested, Continue

    cfg = ServerConfig(allow_plaintext_login=True, confirm_append=True)
    server = new(cfg)
    run(server, LOGIN)
    server.receive_data(b"p APPEND Nope {10}\r\nq NOOP\r\n")
    event = server.next_event()
    assert event == AppendRequested(tag="p", mailbox="Nope", size=10, binary=False, index=0)
    assert server.next_event() is PAUSED
    with pytest.raises(LocalProtocolError):
        server.send(Complete())
    server.send(Complete(status="NO", text="No such mailbox", code="TRYCREATE"))
    assert list(server.events()) == []
    assert server.data_to_send() == b"p NO [TRYCREATE] No such mailbox\r\nq OK NOOP completed\r\n"
    server.receive_data(b"r APPEND INBOX {2}\r\n")
    assert isinstance(server.next_event(), AppendRequested)
    server.send(Continue())
    assert server.data_to_send() == b"+ Ready for literal data\r\n"
    result = run(server, b"hi\r\n")
    assert result.lines == [b"r OK APPEND completed"]
    assert isinstance(result.events[0], AppendStart)


def test_unsolicited_untagged_and_the_view_guard() -> None:
    server = new()
    alert = Untagged(frame=Frame(lines=(b"* OK [ALERT] maintenance at noon",)))
    server.send(alert)  # RFC 9051 §5.3: allowed while no command is in progress
    assert server.data_to_send() == b"* OK [ALERT] maintenance at noon\r\n"
    run(server, SELECT)
    for line in (b"* 9 EXISTS", b"* 1 EXPUNGE", b"* VANISHED 1:3"):
        with pytest.raises(LocalProtocolError):
            server.send(Untagged(frame=Frame(lines=(line,))))
    server.send(Untagged(frame=Frame(lines=(b"* VANISHED (EARLIER) 1:3",))))
    server.send(Untagged(frame=Frame(lines=(b"* 1 FETCH (FLAGS ())",))))
    assert server.data_to_send() == b"* VANISHED (EARLIER) 1:3\r\n* 1 FETCH (FLAGS ())\r\n"
    run(server, b"i IDLE\r\n")
    server.send(alert)
    assert server.data_to_send() == b"* OK [ALERT] maintenance at noon\r\n"
    run(server, b"DONE\r\no LOGOUT\r\n")
    assert server.state is State.LOGOUT
    with pytest.raises(LocalProtocolError):
        server.send(alert)


class PollingApp(App):
    """Reads "the store" when NOOP or CHECK reaches it: message 2 was expunged and a
    new message 6 came meanwhile."""

    def handle(self, server: ServerConnection, event: object) -> None:
        if isinstance(event, CommandReceived) and type(event.command).__name__ in (
            "Noop",
            "Check",
        ):
            self.log.append(event)
            assert server.mailbox is not None
            server.mailbox.expunged([2])
            server.mailbox.appended([6])
            server.send(Complete())
            return
        super().handle(server, event)


@pytest.mark.parametrize("verb", [b"NOOP", b"CHECK"])
def test_poll_commands_let_the_application_read_the_store_first(verb: bytes) -> None:
    # RFC 9051 §6.1.2: NOOP is how a client polls. With poll_commands the core hands
    # NOOP/CHECK in the selected state to the application, which tells the view what
    # changed; the updates go out before the OK.
    config = ServerConfig(allow_plaintext_login=True, tls_available=True, poll_commands=True)
    app = PollingApp()
    result, _ = both(b"a2 " + verb + b"\r\n", route=SELECT, config=config, app=app)
    assert result.lines[-1].startswith(b"a2 OK")
    assert b"* 2 EXPUNGE" in result.lines and b"* 5 EXISTS" in result.lines
    assert isinstance(app.log[-1], CommandReceived)
    # Without it the core answers by itself: the application is not asked.
    plain = App()
    result, _ = both(b"a2 " + verb + b"\r\n", route=SELECT, app=plain)
    assert result.lines == [b"a2 OK " + verb + b" completed"]
    assert not any(
        isinstance(e, CommandReceived) and type(e.command).__name__ in ("Noop", "Check")
        for e in plain.log
    )


def test_poll_commands_before_select_are_answered_by_the_core() -> None:
    config = ServerConfig(allow_plaintext_login=True, tls_available=True, poll_commands=True)
    result, _ = both(b"a1 NOOP\r\n", route=LOGIN, config=config, app=PollingApp())
    assert result.lines == [b"a1 OK NOOP completed"]
