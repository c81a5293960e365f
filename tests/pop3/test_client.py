"""Tests of mailagents.pop3.client: the POP3 client core.

The server is played from a script (canned response bytes) and the exact bytes the
client writes are checked; every response is fed whole and one byte at a time.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents import sasl
from mailagents._protocol import LocalProtocolError, RemoteProtocolError
from mailagents.pop3._client import ClientConnection, apop_digest
from mailagents.pop3._client_events import (
    AuthResult,
    Capabilities,
    ClientEvent,
    ConnectionClosed,
    Greeting,
    Listing,
    MessageChunk,
    MessageEnd,
    MessageStart,
    Reply,
    Stat,
    UniqueIds,
)
from mailagents.pop3._response import NEED_DATA, Response

CHALLENGE = "<1896.697170952@dbc.mtview.ca.us>"
GREETING = f"+OK POP3 server ready {CHALLENGE}\r\n".encode()
CAPA_FULL = (
    b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN SCRAM-SHA-256\r\n"
    b"RESP-CODES\r\nPIPELINING\r\nSTLS\r\n.\r\n"
)
CAPA_PLAIN = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN SCRAM-SHA-256\r\nSTLS\r\n.\r\n"
OK = Response(ok=True)


def events(conn: ClientConnection) -> list[ClientEvent]:
    return list(conn.events())


def feed(conn: ClientConnection, data: bytes, *, bytewise: bool) -> list[ClientEvent]:
    """Feed ``data`` whole or one byte at a time, draining events after each piece."""
    if not bytewise:
        conn.receive_data(data)
        return events(conn)
    out: list[ClientEvent] = []
    for i in range(len(data)):
        conn.receive_data(data[i : i + 1])
        out += events(conn)
    return out


def merged(evs: list[ClientEvent]) -> list[ClientEvent]:
    """Join consecutive MessageChunk events so that fragmentations compare equal."""
    out: list[ClientEvent] = []
    for ev in evs:
        if isinstance(ev, MessageChunk) and out and isinstance(out[-1], MessageChunk):
            out[-1] = MessageChunk(number=ev.number, data=out[-1].data + ev.data)
        else:
            out.append(ev)
    return out


def greeted(greeting: bytes = GREETING, **kwargs: int) -> ClientConnection:
    conn = ClientConnection(**kwargs)  # type: ignore[arg-type]
    conn.receive_data(greeting)
    [event] = events(conn)
    assert isinstance(event, Greeting) and event.reply.ok
    return conn


def ready(capa: bytes | None = CAPA_FULL) -> ClientConnection:
    """Greeted, and with the capabilities of ``capa`` known (None: CAPA not asked)."""
    conn = greeted()
    if capa is not None:
        conn.capa()
        assert conn.data_to_send() == b"CAPA\r\n"
        conn.receive_data(capa)
        [event] = events(conn)
        assert isinstance(event, Capabilities)
    return conn


bytewise = pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])


# --- greeting ---------------------------------------------------------------------------


@bytewise
def test_greeting_with_apop_timestamp(bytewise: bool) -> None:
    conn = ClientConnection()
    assert conn.awaiting == "GREETING"
    assert feed(conn, GREETING, bytewise=bytewise) == [
        Greeting(
            reply=Response(ok=True, text=f"POP3 server ready {CHALLENGE}"), challenge=CHALLENGE
        )
    ]
    assert conn.challenge == CHALLENGE
    assert conn.awaiting is None


@pytest.mark.parametrize(
    "line",
    [b"+OK ready\r\n", b"+OK <no-at-sign>\r\n", b"+OK <a@b c>\r\n", b"+OK\n"],
)
def test_greeting_without_timestamp(line: bytes) -> None:
    conn = ClientConnection()
    conn.receive_data(line)
    [event] = events(conn)
    assert isinstance(event, Greeting) and event.challenge is None
    with pytest.raises(LocalProtocolError, match="timestamp"):
        conn.apop("mrose", "tanstaaf")


def test_commands_before_the_greeting_wait_for_it() -> None:
    conn = ClientConnection()
    conn.capa()
    conn.stat()
    with pytest.raises(LocalProtocolError, match="greeting"):
        conn.apop("mrose", "tanstaaf")
    assert conn.data_to_send() == b""
    conn.receive_data(GREETING)
    assert isinstance(conn.next_event(), Greeting)
    assert conn.data_to_send() == b"CAPA\r\n"  # no PIPELINING known: one at a time
    assert conn.awaiting == "CAPA"


def test_err_greeting_closes() -> None:
    conn = ClientConnection()
    conn.stat()
    conn.receive_data(b"-ERR [SYS/TEMP] too busy\r\n+OK junk\r\n")
    [event] = events(conn)
    assert event == Greeting(reply=Response(ok=False, code="SYS/TEMP", text="too busy"))
    assert conn.data_to_send() == b""
    with pytest.raises(LocalProtocolError):
        conn.noop()
    conn.receive_data(b"more junk\r\n")  # ignored
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    assert events(conn) == [ConnectionClosed()]
    assert conn.closed


@pytest.mark.parametrize(
    "line", [b"HELLO\r\n", b"+OKAY\r\n", b"-ERROR\r\n", b"\r\n", b"220 smtp\r\n"]
)
def test_bad_greeting(line: bytes) -> None:
    conn = ClientConnection()
    conn.receive_data(line)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    with pytest.raises(RemoteProtocolError) as first:
        conn.next_event()
    # The core stays failed: every later call raises that same error.
    for call in (conn.next_event, lambda: conn.receive_data(b"+OK\r\n"), conn.noop,
                 lambda: conn.login("u", "p"), conn.quit):
        with pytest.raises(RemoteProtocolError) as again:
            call()
        assert again.value is first.value
    assert conn.closed


# --- APOP -------------------------------------------------------------------------------


def test_apop_digest_rfc1939_example() -> None:
    # RFC 1939 §7's example.
    assert apop_digest(CHALLENGE, "tanstaaf") == "c4c9334bac560ecc979e58001b3e22fb"


@bytewise
def test_apop(bytewise: bool) -> None:
    conn = greeted()
    conn.apop("mrose", "tanstaaf")
    assert conn.data_to_send() == b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"
    assert conn.awaiting == "APOP"
    ok = b"+OK mrose's maildrop has 2 messages (320 octets)\r\n"
    assert feed(conn, ok, bytewise=bytewise) == [
        AuthResult(
            success=True,
            reply=Response(ok=True, text="mrose's maildrop has 2 messages (320 octets)"),
            mechanism="APOP",
        )
    ]
    assert conn.authenticated
    with pytest.raises(LocalProtocolError, match="already"):
        conn.login("mrose", "x")


def test_apop_refused() -> None:
    conn = greeted()
    conn.apop("mrose", "wrong")
    conn.data_to_send()
    conn.receive_data(b"-ERR [AUTH] permission denied\r\n")
    [event] = events(conn)
    assert isinstance(event, AuthResult) and not event.success and event.reply.code == "AUTH"
    assert not conn.authenticated


# --- CAPA -------------------------------------------------------------------------------


@bytewise
def test_capa(bytewise: bool) -> None:
    conn = greeted()
    conn.capa()
    assert conn.data_to_send() == b"CAPA\r\n"
    data = (
        b"+OK Capability list follows\r\ntop\r\nSASL PLAIN  SCRAM-SHA-256\r\n"
        b"..DOTTED x\r\n\r\nIMPLEMENTATION Shlemazle Plotz v302\r\nEXPIRE NEVER\n.\r\n"
    )
    [event] = feed(conn, data, bytewise=bytewise)
    assert isinstance(event, Capabilities) and event.reply.text == "Capability list follows"
    expected = {
        "TOP": (),
        "SASL": ("PLAIN", "SCRAM-SHA-256"),
        ".DOTTED": ("x",),
        "IMPLEMENTATION": ("Shlemazle", "Plotz", "v302"),
        "EXPIRE": ("NEVER",),
    }
    assert dict(event.capabilities) == expected
    assert dict(conn.capabilities) == expected
    assert not conn.can_pipeline


def test_capa_refused_means_no_extensions() -> None:
    conn = greeted()
    conn.capa()
    conn.data_to_send()
    conn.receive_data(b"-ERR unknown command\r\n")
    assert events(conn) == [Capabilities(reply=Response(ok=False, text="unknown command"))]
    assert dict(conn.capabilities) == {}
    # Known now: STLS and SASL are refused locally.
    with pytest.raises(LocalProtocolError, match="STLS"):
        conn.stls()
    with pytest.raises(LocalProtocolError, match="SASL"):
        conn.authenticate(sasl.PlainClient("u", "p"))


def test_capa_too_many_lines() -> None:
    conn = greeted()
    conn.capa()
    conn.receive_data(b"+OK\r\n" + b"X-CAP\r\n" * 300)
    with pytest.raises(RemoteProtocolError, match="too many"):
        events(conn)


def test_capa_bad_tag() -> None:
    conn = greeted()
    conn.capa()
    conn.receive_data("+OK\r\nTÖP\r\n.\r\n".encode())
    with pytest.raises(RemoteProtocolError, match="capability"):
        events(conn)


# --- USER/PASS --------------------------------------------------------------------------


@bytewise
def test_login_without_pipelining(bytewise: bool) -> None:
    conn = ready(CAPA_PLAIN)
    conn.login("mrose", "tan staaf")
    assert conn.data_to_send() == b"USER mrose\r\n"
    assert conn.awaiting == "USER"
    assert feed(conn, b"+OK mrose is real\r\n", bytewise=bytewise) == []
    assert conn.data_to_send() == b"PASS tan staaf\r\n"
    assert conn.awaiting == "PASS"
    assert feed(conn, b"+OK maildrop locked and ready\r\n", bytewise=bytewise) == [
        AuthResult(
            success=True,
            reply=Response(ok=True, text="maildrop locked and ready"),
            mechanism="USER",
        )
    ]
    assert conn.authenticated


def test_login_user_refused_without_pipelining_sends_no_password() -> None:
    conn = ready(CAPA_PLAIN)
    conn.login("nobody", "secret")
    assert conn.data_to_send() == b"USER nobody\r\n"
    conn.receive_data(b"-ERR never heard of nobody\r\n")
    [event] = events(conn)
    assert event == AuthResult(
        success=False, reply=Response(ok=False, text="never heard of nobody"), mechanism="USER"
    )
    assert conn.data_to_send() == b""
    assert not conn.authenticated
    conn.login("mrose", "tanstaaf")  # may try again
    assert conn.data_to_send() == b"USER mrose\r\n"


@pytest.mark.parametrize(
    ("user_line", "pass_line", "success", "reported"),
    [
        (b"+OK\r\n", b"+OK ready\r\n", True, "ready"),
        (b"+OK\r\n", b"-ERR [AUTH] bad\r\n", False, "bad"),
        (b"-ERR no such user\r\n", b"-ERR no USER\r\n", False, "no such user"),
        (b"-ERR no such user\r\n", b"+OK odd\r\n", False, "no such user"),
    ],
)
def test_login_pipelined(user_line: bytes, pass_line: bytes, success: bool, reported: str) -> None:
    conn = ready(CAPA_FULL)
    conn.login("mrose", "tanstaaf")
    conn.stat()
    assert conn.data_to_send() == b"USER mrose\r\nPASS tanstaaf\r\nSTAT\r\n"
    conn.receive_data(user_line + pass_line + b"+OK 2 320\r\n")
    auth, stat = events(conn)
    assert isinstance(auth, AuthResult) and auth.success is success
    assert auth.reply.text == reported
    assert stat == Stat(reply=Response(ok=True, text="2 320"), count=2, size=320)


# --- SASL -------------------------------------------------------------------------------


@bytewise
def test_auth_plain_initial_response(bytewise: bool) -> None:
    conn = ready()
    conn.authenticate(sasl.PlainClient("mrose", "tanstaaf"))
    ir = base64.b64encode(b"\x00mrose\x00tanstaaf")
    assert conn.data_to_send() == b"AUTH PLAIN " + ir + b"\r\n"
    assert conn.awaiting == "AUTH"
    assert feed(conn, b"+OK maildrop locked and ready\r\n", bytewise=bytewise) == [
        AuthResult(
            success=True,
            reply=Response(ok=True, text="maildrop locked and ready"),
            mechanism="PLAIN",
        )
    ]
    assert conn.authenticated


@bytewise
def test_auth_plain_without_initial_response(bytewise: bool) -> None:
    conn = ready()
    conn.authenticate(sasl.PlainClient("mrose", "tanstaaf"), initial=False)
    assert conn.data_to_send() == b"AUTH PLAIN\r\n"
    assert feed(conn, b"+ \r\n", bytewise=bytewise) == []
    assert conn.data_to_send() == base64.b64encode(b"\x00mrose\x00tanstaaf") + b"\r\n"
    [event] = feed(conn, b"-ERR [AUTH] Authentication failed\r\n", bytewise=bytewise)
    assert event == AuthResult(
        success=False,
        reply=Response(ok=False, code="AUTH", text="Authentication failed"),
        mechanism="PLAIN",
    )
    assert not conn.authenticated


def test_auth_long_initial_response_waits_for_empty_challenge() -> None:
    conn = ready()
    user = "u" * 200  # the AUTH line would pass 255 octets (RFC 5034 §4)
    conn.authenticate(sasl.PlainClient(user, "p"))
    assert conn.data_to_send() == b"AUTH PLAIN\r\n"
    conn.receive_data(b"+\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == base64.b64encode(f"\x00{user}\x00p".encode()) + b"\r\n"


def test_auth_not_pipelined() -> None:
    conn = ready(CAPA_FULL)
    conn.noop()
    conn.authenticate(sasl.PlainClient("mrose", "tanstaaf"))
    conn.stat()
    assert conn.data_to_send() == b"NOOP\r\n"  # AUTH waits for the requests before it
    conn.receive_data(b"+OK\r\n")
    assert events(conn) == [Reply(command="NOOP", reply=OK)]
    assert conn.data_to_send().startswith(b"AUTH PLAIN ")  # STAT waits for AUTH's end
    conn.receive_data(b"+OK\r\n")
    assert isinstance(conn.next_event(), AuthResult)
    assert conn.data_to_send() == b"STAT\r\n"


class _ScramServer:
    """The server half of SCRAM-SHA-256 framed as RFC 5034 says, for scripted tests."""

    def __init__(self, password: str = "tanstaaf") -> None:
        self.secrets = sasl.scram_secrets(password, salt=b"saltsaltsalt", iterations=4096)
        self.mech = sasl.ScramSha256Server()

    def answer(self, line: bytes) -> bytes:
        """The server's line answering the client's line ``line``."""
        if line.startswith(b"AUTH "):
            parts = line.split()
            step = self.mech.start(base64.b64decode(parts[2]) if len(parts) > 2 else None)
        elif line == b"*":
            return b"-ERR [AUTH] cancelled\r\n"
        else:
            step = self.mech.receive(base64.b64decode(line))
        if isinstance(step, sasl.NeedCredentials):
            step = self.mech.provide(self.secrets)
        if isinstance(step, sasl.Challenge):
            return b"+ " + base64.b64encode(step.data) + b"\r\n"
        if isinstance(step, sasl.Success):
            # RFC 5034 §4: the additional data goes as a challenge, then +OK.
            assert step.final_data is not None
            self.final = b"+ " + base64.b64encode(step.final_data) + b"\r\n"
            return self.final
        return b"-ERR [AUTH] Authentication failed\r\n"


def _run_scram(
    conn: ClientConnection, server: _ScramServer, *, forge: bool = False
) -> list[ClientEvent]:
    got: list[ClientEvent] = []
    final_sent = False
    for _ in range(10):
        out = conn.data_to_send()
        if not out:
            break
        line = out.rstrip(b"\r\n")
        if final_sent:
            assert line in (b"", b"*")
            answer = b"+OK maildrop ready\r\n" if line == b"" else b"-ERR [AUTH] cancelled\r\n"
        else:
            answer = server.answer(line)
            if hasattr(server, "final") and answer == server.final:
                final_sent = True
                if forge:
                    answer = b"+ " + base64.b64encode(b"v=" + base64.b64encode(b"x" * 32)) + b"\r\n"
        conn.receive_data(answer)
        got += events(conn)
    return got


def test_auth_scram_sha_256() -> None:
    conn = ready()
    conn.authenticate(sasl.ScramSha256Client("mrose", "tanstaaf"))
    got = _run_scram(conn, _ScramServer())
    assert got == [
        AuthResult(
            success=True,
            reply=Response(ok=True, text="maildrop ready"),
            mechanism="SCRAM-SHA-256",
        )
    ]
    assert conn.authenticated


def test_auth_scram_forged_server_signature_cancels() -> None:
    conn = ready()
    conn.authenticate(sasl.ScramSha256Client("mrose", "tanstaaf"))
    [event] = _run_scram(conn, _ScramServer(), forge=True)
    assert isinstance(event, AuthResult) and not event.success
    assert event.error is not None and "SCRAM" in event.error
    assert not conn.authenticated


def test_auth_scram_wrong_password() -> None:
    conn = ready()
    conn.authenticate(sasl.ScramSha256Client("mrose", "wrong"))
    [event] = _run_scram(conn, _ScramServer())
    assert isinstance(event, AuthResult) and not event.success and event.error is None


def test_auth_success_without_server_proof_is_refused() -> None:
    conn = ready()
    conn.authenticate(sasl.ScramSha256Client("mrose", "tanstaaf"))
    conn.data_to_send()
    conn.receive_data(b"+OK\r\n")  # an impostor skipping the exchange
    [event] = events(conn)
    assert isinstance(event, AuthResult) and not event.success and event.error
    assert not conn.authenticated


@pytest.mark.parametrize(
    "challenge", [b"+ %%%notbase64\r\n", b"+ " + base64.b64encode(b"bogus") + b"\r\n"]
)
def test_auth_bad_challenge_cancels(challenge: bytes) -> None:
    conn = ready()
    conn.authenticate(sasl.ScramSha256Client("mrose", "tanstaaf"))
    conn.data_to_send()
    conn.receive_data(challenge)
    assert events(conn) == []
    assert conn.data_to_send() == b"*\r\n"
    conn.receive_data(b"+ more\r\n")  # a server that insists gets "*" again
    assert events(conn) == []
    assert conn.data_to_send() == b"*\r\n"
    conn.receive_data(b"-ERR [AUTH] cancelled\r\n")
    [event] = events(conn)
    assert isinstance(event, AuthResult) and not event.success and event.error


def test_auth_endless_challenges() -> None:
    conn = ready()
    conn.authenticate(sasl.PlainClient("a", "b"), initial=False)
    conn.receive_data(b"+ \r\n" * 40)
    with pytest.raises(RemoteProtocolError, match="without end"):
        events(conn)


def test_auth_garbage_line() -> None:
    conn = ready()
    conn.authenticate(sasl.PlainClient("a", "b"))
    conn.receive_data(b"+OKAY\r\n")
    with pytest.raises(RemoteProtocolError):
        events(conn)


def test_auth_mechanism_not_offered() -> None:
    conn = ready(b"+OK\r\nSASL SCRAM-SHA-256\r\n.\r\n")
    with pytest.raises(LocalProtocolError, match="PLAIN"):
        conn.authenticate(sasl.PlainClient("a", "b"))
    with pytest.raises(LocalProtocolError):
        conn.authenticate("PLAIN")  # type: ignore[arg-type]
    conn = ready(None)  # capabilities unknown: try
    conn.authenticate(sasl.PlainClient("a", "b"))
    assert conn.data_to_send().startswith(b"AUTH PLAIN ")
    with pytest.raises(LocalProtocolError, match="under way"):
        conn.login("a", "b")


class _EmptyFirst(sasl.ClientMechanism):
    """A test mechanism whose initial response is empty (sent as "=")."""

    name = "X-EMPTY"

    def initial_response(self) -> bytes | None:
        return b""

    def respond(self, challenge: bytes) -> bytes:
        return b"ok"

    def verify_success(self, final_data: bytes | None) -> None:
        pass

    @property
    def done(self) -> bool:
        return True


def test_auth_empty_initial_response_and_none() -> None:
    conn = ready(None)
    conn.authenticate(_EmptyFirst())
    assert conn.data_to_send() == b"AUTH X-EMPTY =\r\n"
    conn.receive_data(b"+ " + base64.b64encode(b"more?") + b"\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == base64.b64encode(b"ok") + b"\r\n"
    conn.receive_data(b"+OK\r\n")
    assert [e.success for e in events(conn) if isinstance(e, AuthResult)] == [True]
    conn = ready(None)
    conn.authenticate(sasl.LoginClient("mrose", "tanstaaf"))  # no initial response
    assert conn.data_to_send() == b"AUTH LOGIN\r\n"


def test_auth_invalid_mechanism_name() -> None:
    class Spaced(_EmptyFirst):
        name = "X EMPTY"

    with pytest.raises(LocalProtocolError, match="invalid SASL"):
        ready(None).authenticate(Spaced())


# --- STAT, LIST, UIDL -------------------------------------------------------------------


@bytewise
def test_stat(bytewise: bool) -> None:
    conn = ready()
    conn.stat()
    assert conn.data_to_send() == b"STAT\r\n"
    assert conn.awaiting == "STAT"
    assert feed(conn, b"+OK 2 320\r\n", bytewise=bytewise) == [
        Stat(reply=Response(ok=True, text="2 320"), count=2, size=320)
    ]


@bytewise
def test_list_all(bytewise: bool) -> None:
    conn = ready()
    conn.list()
    assert conn.data_to_send() == b"LIST\r\n"
    data = b"+OK 2 messages (320 octets)\r\n1 120\r\n2 200 extra info\n.\r\n"
    assert feed(conn, data, bytewise=bytewise) == [
        Listing(
            reply=Response(ok=True, text="2 messages (320 octets)"), entries=((1, 120), (2, 200))
        )
    ]


@bytewise
def test_list_one_and_empty(bytewise: bool) -> None:
    conn = ready()
    conn.list(2)
    conn.list()
    assert conn.data_to_send() == b"LIST 2\r\nLIST\r\n"
    assert feed(conn, b"+OK 2 200\r\n+OK\r\n.\r\n", bytewise=bytewise) == [
        Listing(reply=Response(ok=True, text="2 200"), entries=((2, 200),)),
        Listing(reply=OK, entries=()),
    ]


@bytewise
def test_uidl(bytewise: bool) -> None:
    conn = ready()
    conn.uidl()
    conn.uidl(2)
    assert conn.data_to_send() == b"UIDL\r\nUIDL 2\r\n"
    data = (
        b"+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n"
        b"+OK 2 QhdPYR:00WBw1Ph7x7\r\n"
    )
    assert feed(conn, data, bytewise=bytewise) == [
        UniqueIds(
            reply=OK, entries=((1, "whqtswO00WBw418f9t5JxYwZ"), (2, "QhdPYR:00WBw1Ph7x7"))
        ),
        UniqueIds(
            reply=Response(ok=True, text="2 QhdPYR:00WBw1Ph7x7"),
            entries=((2, "QhdPYR:00WBw1Ph7x7"),),
        ),
    ]


@pytest.mark.parametrize(
    ("command", "n"),
    [
        ("STAT", None),
        ("LIST", None),
        ("LIST", 3),
        ("UIDL", None),
        ("UIDL", 3),
        ("RETR", 3),
        ("TOP", 3),
    ],
)
def test_err_gives_reply(command: str, n: int | None) -> None:
    conn = ready()
    if command == "STAT":
        conn.stat()
    elif command == "LIST":
        conn.list(n)
    elif command == "UIDL":
        conn.uidl(n)
    elif command == "RETR":
        conn.retr(3)
    else:
        conn.top(3, 0)
    conn.data_to_send()
    conn.receive_data(b"-ERR no such message, only 2 messages in maildrop\r\n")
    assert events(conn) == [
        Reply(
            command=command,
            reply=Response(ok=False, text="no such message, only 2 messages in maildrop"),
        )
    ]
    conn.noop()  # the session goes on
    assert conn.data_to_send() == b"NOOP\r\n"


@pytest.mark.parametrize(
    ("request_", "data"),
    [
        ("stat", b"+OK two 320\r\n"),
        ("stat", b"+OK 2\r\n"),
        ("stat", b"+OK -2 320\r\n"),
        ("stat", b"+OK 2 " + b"9" * 40 + b"\r\n"),
        ("list1", b"+OK 3 200\r\n"),  # asked for 1
        ("list1", b"+OK 1\r\n"),
        ("list", b"+OK\r\n1 120\r\ngarbage\r\n.\r\n"),
        ("list", b"+OK\r\n0 120\r\n.\r\n"),
        ("list", b"+OK\r\n1\r\n.\r\n"),
        ("list", b"+OK\r\n99999999999 1\r\n.\r\n"),
        ("uidl", b"+OK\r\n1 " + b"u" * 71 + b"\r\n.\r\n"),
        ("uidl", b"+OK\r\n1 a b\r\n.\r\n"),
        ("uidl", "+OK\r\n1 üid\r\n.\r\n".encode()),
        ("uidl", b"+OK\r\n1\r\n.\r\n"),
        ("uidl1", b"+OK 2 abc\r\n"),
        ("uidl1", b"+OK 1\r\n"),
        ("stat", b"OK 1 2\r\n"),
    ],
)
def test_garbage_listing(request_: str, data: bytes) -> None:
    conn = ready()
    {"stat": conn.stat, "list": conn.list, "uidl": conn.uidl}.get(
        request_, lambda: conn.list(1) if request_ == "list1" else conn.uidl(1)
    )()
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError):
        events(conn)
    assert conn.closed
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_listing_entry_bound() -> None:
    conn = greeted(max_entries=3)
    conn.list()
    conn.receive_data(b"+OK\r\n1 1\r\n2 2\r\n3 3\r\n.\r\n")
    [event] = events(conn)
    assert isinstance(event, Listing) and len(event.entries) == 3
    conn.list()
    conn.receive_data(b"+OK\r\n1 1\r\n2 2\r\n3 3\r\n4 4\r\n")
    with pytest.raises(RemoteProtocolError, match="too many"):
        events(conn)


# --- RETR and TOP -----------------------------------------------------------------------

MESSAGE = (
    b"From: a@example.org\r\nSubject: dots\r\n\r\n"
    b".leading dot\r\n"
    b"..two dots\r\n"
    b".\r\n"  # a line of one dot, stuffed on the wire
    b"\r\n"
    b"last line without CRLF? no, with\r\n"
)


def stuff(message: bytes) -> bytes:
    lines = message.split(b"\r\n")
    assert lines[-1] == b""
    return b"".join(
        (b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines[:-1]
    )


def retrieve(
    conn: ClientConnection, wire: bytes, *, bytewise: bool, n: int = 1
) -> list[ClientEvent]:
    conn.retr(n)
    assert conn.data_to_send() == f"RETR {n}\r\n".encode()
    return merged(feed(conn, wire, bytewise=bytewise))


@bytewise
def test_retr_unstuffs(bytewise: bool) -> None:
    conn = ready()
    wire = b"+OK 120 octets\r\n" + stuff(MESSAGE) + b".\r\n"
    assert b"\r\n...two dots\r\n" in wire and b"\r\n..\r\n" in wire
    assert retrieve(conn, wire, bytewise=bytewise) == [
        MessageStart(number=1, reply=Response(ok=True, text="120 octets")),
        MessageChunk(number=1, data=MESSAGE),
        MessageEnd(number=1, size=len(MESSAGE)),
    ]
    assert conn.awaiting is None


@bytewise
def test_retr_bare_lf_and_lone_cr(bytewise: bool) -> None:
    conn = ready()
    wire = b"+OK\n" + b"a\nb\r\n..c\n\rd\r\r\n\n.\n" + b"+OK\r\n"
    conn.retr(1)
    conn.noop()
    assert conn.data_to_send() == b"RETR 1\r\nNOOP\r\n"
    evs = merged(feed(conn, wire, bytewise=bytewise))
    assert evs == [
        MessageStart(number=1, reply=OK),
        MessageChunk(number=1, data=b"a\r\nb\r\n.c\r\n\rd\r\r\n\r\n"),
        MessageEnd(number=1, size=17),
        Reply(command="NOOP", reply=OK),
    ]


@bytewise
def test_empty_message(bytewise: bool) -> None:
    conn = ready()
    assert retrieve(conn, b"+OK 0 octets\r\n.\r\n", bytewise=bytewise) == [
        MessageStart(number=1, reply=Response(ok=True, text="0 octets")),
        MessageEnd(number=1, size=0),
    ]


@bytewise
def test_top(bytewise: bool) -> None:
    conn = ready()
    conn.top(2, 0)
    assert conn.data_to_send() == b"TOP 2 0\r\n"
    assert conn.awaiting == "TOP"
    evs = merged(feed(conn, b"+OK\r\nSubject: x\r\n\r\n.\r\n", bytewise=bytewise))
    assert evs == [
        MessageStart(number=2, reply=OK),
        MessageChunk(number=2, data=b"Subject: x\r\n\r\n"),
        MessageEnd(number=2, size=14),
    ]


def test_eof_in_the_middle_of_a_message() -> None:
    conn = ready()
    conn.retr(1)
    conn.receive_data(b"+OK\r\nSubject: x\r\n\r\nbody")
    conn.receive_data(b"")
    evs = merged(events(conn))
    assert evs == [
        MessageStart(number=1, reply=OK),
        MessageChunk(number=1, data=b"Subject: x\r\n\r\nbody"),
        ConnectionClosed(),
    ]
    assert conn.closed


def test_retr_streams_with_bounded_buffer() -> None:
    """A 4 MiB message fed in 4 KiB pieces: the core never holds more than a piece,
    every chunk is at most chunk_size octets, and the octets arrive intact."""
    line = b"." + b"x" * 75 + b"\r\n"  # every line stuffed
    body = line * (4 * 1024 * 1024 // len(line))
    wire = b"+OK\r\n" + b"." + body.replace(b"\r\n.", b"\r\n..") + b".\r\n"
    conn = greeted(chunk_size=8192)
    conn.retr(1)
    total = 0
    digest = 0
    ends = []
    biggest_buffer = 0
    for i in range(0, len(wire), 4096):
        conn.receive_data(wire[i : i + 4096])
        for event in conn.events():
            if isinstance(event, MessageChunk):
                assert len(event.data) <= 8192
                assert event.data == body[total : total + len(event.data)]
                total += len(event.data)
                digest += 1
            elif isinstance(event, MessageEnd):
                ends.append(event)
        biggest_buffer = max(biggest_buffer, len(conn._buf))
    assert total == len(body)
    assert ends == [MessageEnd(number=1, size=len(body))]
    assert biggest_buffer <= 2  # only an undecided "." or CR is ever held


def test_retr_long_line_is_streamed_not_refused() -> None:
    conn = greeted(max_line=512, chunk_size=1000)
    conn.retr(1)
    conn.receive_data(b"+OK\r\n" + b"y" * 5000 + b"\r\n.\r\n")
    evs = events(conn)
    chunks = [e for e in evs if isinstance(e, MessageChunk)]
    assert b"".join(c.data for c in chunks) == b"y" * 5000 + b"\r\n"
    assert all(len(c.data) <= 1002 for c in chunks)
    assert isinstance(evs[-1], MessageEnd)


@given(st.lists(st.integers(min_value=0, max_value=400), max_size=20), st.integers(1, 64))
def test_retr_any_fragmentation(cuts: list[int], chunk_size: int) -> None:
    wire = b"+OK\r\n" + stuff(MESSAGE) + b".\r\n+OK 1 2\r\n"
    pieces, last = [], 0
    for cut in sorted(set(cuts)):
        pieces.append(wire[last:cut])
        last = cut
    pieces.append(wire[last:])
    conn = greeted(chunk_size=chunk_size)
    conn.retr(1)
    conn.stat()
    got: list[ClientEvent] = []
    for piece in filter(None, pieces):  # (b"" would mean the server closed)
        conn.receive_data(piece)
        got += events(conn)
        conn.data_to_send()
    for event in got:
        if isinstance(event, MessageChunk):
            assert len(event.data) <= chunk_size + 2
            assert not event.data.endswith(b"\r")
    assert merged(got) == [
        MessageStart(number=1, reply=OK),
        MessageChunk(number=1, data=MESSAGE),
        MessageEnd(number=1, size=len(MESSAGE)),
        Stat(reply=Response(ok=True, text="1 2"), count=1, size=2),
    ]


# --- DELE, NOOP, RSET, QUIT, UTF8 -------------------------------------------------------


@bytewise
def test_simple_commands(bytewise: bool) -> None:
    conn = ready(CAPA_PLAIN)
    conn.dele(1)
    conn.noop()
    conn.rset()
    assert conn.data_to_send() == b"DELE 1\r\n"
    assert feed(conn, b"+OK message 1 deleted\r\n", bytewise=bytewise) == [
        Reply(command="DELE", reply=Response(ok=True, text="message 1 deleted"))
    ]
    assert conn.data_to_send() == b"NOOP\r\n"
    assert feed(conn, b"+OK\r\n", bytewise=bytewise) == [Reply(command="NOOP", reply=OK)]
    assert conn.data_to_send() == b"RSET\r\n"
    assert conn.awaiting == "RSET"
    assert feed(conn, b"+OK maildrop has 2 messages\r\n", bytewise=bytewise) == [
        Reply(command="RSET", reply=Response(ok=True, text="maildrop has 2 messages"))
    ]


@pytest.mark.parametrize(
    "answer",
    [
        b"+OK dewey POP3 server signing off\r\n",
        b"-ERR [SYS/TEMP] some deleted messages not removed\r\n",
    ],
)
def test_quit_closes(answer: bytes) -> None:
    conn = ready()
    conn.quit()
    with pytest.raises(LocalProtocolError, match="over"):
        conn.noop()
    assert conn.data_to_send() == b"QUIT\r\n"
    assert conn.awaiting == "QUIT"
    conn.receive_data(answer + b"trailing junk\r\n")
    evs = events(conn)
    assert isinstance(evs[0], Reply) and evs[0].command == "QUIT"
    assert evs[1:] == [ConnectionClosed()]
    assert conn.closed and conn.awaiting is None
    conn.receive_data(b"+OK more\r\n")
    conn.receive_data(b"")
    assert events(conn) == []


def test_server_closes_while_waiting() -> None:
    conn = ready()
    conn.stat()
    conn.receive_data(b"")
    assert events(conn) == [ConnectionClosed()]
    assert conn.closed
    with pytest.raises(LocalProtocolError):
        conn.stat()


def test_server_closes_while_idle() -> None:
    conn = ready()
    conn.receive_data(b"")
    assert events(conn) == [ConnectionClosed()]


def test_utf8() -> None:
    conn = ready()
    conn.utf8()
    assert conn.data_to_send() == b"UTF8\r\n"
    conn.receive_data(b"+OK UTF8 enabled\r\n")
    assert events(conn) == [Reply(command="UTF8", reply=Response(ok=True, text="UTF8 enabled"))]
    assert conn.utf8_enabled
    conn.login("jürgen", "pässword")
    assert conn.data_to_send() == "USER jürgen\r\nPASS pässword\r\n".encode()


# --- pipelining ---------------------------------------------------------------------------

UIDL_RESPONSE = b"+OK\r\n1 aaa\r\n2 bbb\r\n.\r\n"
TRANSACTION: list[tuple[Callable[[ClientConnection], None], bytes, bytes]] = [
    (lambda c: c.stat(), b"STAT\r\n", b"+OK 2 320\r\n"),
    (lambda c: c.uidl(), b"UIDL\r\n", UIDL_RESPONSE),
    (lambda c: c.retr(1), b"RETR 1\r\n", b"+OK\r\n..x\r\n.\r\n"),
    (lambda c: c.dele(1), b"DELE 1\r\n", b"+OK\r\n"),
    (lambda c: c.top(2, 1), b"TOP 2 1\r\n", b"-ERR no\r\n"),
    (lambda c: c.list(), b"LIST\r\n", b"+OK\r\n2 200\r\n.\r\n"),
    (lambda c: c.quit(), b"QUIT\r\n", b"+OK bye\r\n"),
]


def expected_transaction() -> list[ClientEvent]:
    return [
        Stat(reply=Response(ok=True, text="2 320"), count=2, size=320),
        UniqueIds(reply=OK, entries=((1, "aaa"), (2, "bbb"))),
        MessageStart(number=1, reply=OK),
        MessageChunk(number=1, data=b".x\r\n"),
        MessageEnd(number=1, size=4),
        Reply(command="DELE", reply=OK),
        Reply(command="TOP", reply=Response(ok=False, text="no")),
        Listing(reply=OK, entries=((2, 200),)),
        Reply(command="QUIT", reply=Response(ok=True, text="bye")),
        ConnectionClosed(),
    ]


@bytewise
def test_pipelining_sends_everything_at_once(bytewise: bool) -> None:
    conn = ready(CAPA_FULL)
    assert conn.can_pipeline
    for queue, _, _ in TRANSACTION:
        queue(conn)
    assert conn.data_to_send() == b"".join(line for _, line, _ in TRANSACTION)
    evs = feed(conn, b"".join(resp for _, _, resp in TRANSACTION), bytewise=bytewise)
    assert merged(evs) == expected_transaction()
    assert conn.data_to_send() == b""


@bytewise
def test_without_pipelining_one_at_a_time(bytewise: bool) -> None:
    conn = ready(CAPA_PLAIN)
    assert not conn.can_pipeline
    for queue, _, _ in TRANSACTION:
        queue(conn)
    got: list[ClientEvent] = []
    for _, line, resp in TRANSACTION:
        assert conn.data_to_send() == line
        got += feed(conn, resp, bytewise=bytewise)
    assert merged(got) == expected_transaction()


def test_without_pipelining_early_responses_are_still_parsed() -> None:
    """A server that answers fast is fine; an answer to nothing is not."""
    conn = ready(CAPA_PLAIN)
    conn.noop()
    conn.receive_data(b"+OK\r\n+OK\r\n")
    with pytest.raises(RemoteProtocolError, match="unexpected"):
        events(conn)


def test_unexpected_partial_data_is_bounded() -> None:
    conn = greeted(max_line=512)
    conn.receive_data(b"x" * 511)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"x")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_over_long_status_line() -> None:
    conn = greeted(max_line=512)
    conn.noop()
    conn.receive_data(b"+OK " + b"x" * 506 + b"\r\n")  # 512 octets with CRLF: fine
    assert isinstance(conn.next_event(), Reply)
    conn.noop()
    conn.receive_data(b"+OK " + b"x" * 507 + b"\r\n")
    with pytest.raises(RemoteProtocolError, match="longer"):
        conn.next_event()


# --- STLS ---------------------------------------------------------------------------------


def test_stls() -> None:
    conn = ready(CAPA_FULL)
    conn.stls()
    with pytest.raises(LocalProtocolError, match="STLS"):
        conn.noop()
    assert conn.data_to_send() == b"STLS\r\n"
    assert conn.awaiting == "STLS"
    conn.receive_data(b"+OK Begin TLS negotiation\r\n-ERR injected in plaintext\r\n")
    assert events(conn) == [
        Reply(command="STLS", reply=Response(ok=True, text="Begin TLS negotiation"))
    ]
    assert conn.awaiting is None
    with pytest.raises(LocalProtocolError, match="tls_started"):
        conn.receive_data(b"+OK\r\n")
    with pytest.raises(LocalProtocolError, match="tls_started"):
        conn.capa()
    conn.tls_started()
    assert conn.tls_active
    assert dict(conn.capabilities) == {}
    with pytest.raises(LocalProtocolError, match="tls_started"):
        conn.tls_started()
    with pytest.raises(LocalProtocolError, match="already"):
        conn.stls()
    conn.capa()
    assert conn.data_to_send() == b"CAPA\r\n"  # the injected line was dropped
    conn.receive_data(b"+OK\r\nUSER\r\n.\r\n")
    [event] = events(conn)
    assert isinstance(event, Capabilities) and "USER" in event.capabilities


def test_stls_refused_and_rules() -> None:
    conn = ready(None)
    conn.stls()
    conn.receive_data(b"-ERR not now\r\n")
    assert events(conn) == [Reply(command="STLS", reply=Response(ok=False, text="not now"))]
    assert not conn.tls_active
    conn.login("a", "b")
    with pytest.raises(LocalProtocolError, match="before login"):
        conn.stls()
    assert ClientConnection(tls_active=True).tls_active
    with pytest.raises(LocalProtocolError, match="already"):
        greeted_tls = ClientConnection(tls_active=True)
        greeted_tls.receive_data(GREETING)
        events(greeted_tls)
        greeted_tls.stls()


# --- injection and argument checks --------------------------------------------------------

BAD = ["a\rb", "a\nb", "a\x00b", "a\r\nQUIT"]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize(
    "call",
    [
        lambda c, b: c.login(b, "pw"),
        lambda c, b: c.login("user", b),
        lambda c, b: c.apop(b, "secret"),
        lambda c, b: c.apop("user", b),
    ],
)
def test_injection(call: Callable[[ClientConnection, str], None], bad: str) -> None:
    conn = greeted()
    with pytest.raises(LocalProtocolError, match="CR, LF or NUL"):
        call(conn, bad)
    assert conn.data_to_send() == b""
    assert conn.awaiting is None


@pytest.mark.parametrize("bad", BAD)
def test_injection_in_mechanism_name(bad: str) -> None:
    class Evil(sasl.PlainClient):
        name = f"PLAIN{bad}"

    conn = greeted()
    with pytest.raises(LocalProtocolError):
        conn.authenticate(Evil("a", "b"))
    assert conn.data_to_send() == b""


@pytest.mark.parametrize("value", [0, -1, True, "1", 1.0, 10**10, None])
@pytest.mark.parametrize("command", ["retr", "dele", "list", "uidl", "top_n", "top_lines"])
def test_bad_message_numbers(command: str, value: object) -> None:
    conn = greeted()
    calls: dict[str, Callable[[object], None]] = {
        "retr": conn.retr,  # type: ignore[dict-item]
        "dele": conn.dele,  # type: ignore[dict-item]
        "list": conn.list,  # type: ignore[dict-item]
        "uidl": conn.uidl,  # type: ignore[dict-item]
        "top_n": lambda v: conn.top(v, 1),  # type: ignore[arg-type]
        "top_lines": lambda v: conn.top(1, v),  # type: ignore[arg-type]
    }
    if (value is None and command in ("list", "uidl")) or (value == 0 and command == "top_lines"):
        calls[command](value)  # LIST, UIDL without argument; TOP n 0
        assert conn.data_to_send() != b""
        return
    with pytest.raises(LocalProtocolError):
        calls[command](value)
    assert conn.data_to_send() == b""


def test_top_zero_lines_is_fine() -> None:
    conn = greeted()
    conn.top(1, 0)
    assert conn.data_to_send() == b"TOP 1 0\r\n"


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.login("", "pw"),
        lambda c: c.login("user", ""),
        lambda c: c.login(b"user", "pw"),
        lambda c: c.login("u" * 300, "pw"),
        lambda c: c.login("u", "p" * 300),
        lambda c: c.apop("two words", "secret"),
    ],
)
def test_bad_arguments(call: Callable[[ClientConnection], None]) -> None:
    conn = greeted()
    with pytest.raises(LocalProtocolError):
        call(conn)
    assert conn.data_to_send() == b""


def test_constructor_bounds() -> None:
    with pytest.raises(LocalProtocolError):
        ClientConnection(max_line=100)
    with pytest.raises(LocalProtocolError):
        ClientConnection(max_entries=0)
    with pytest.raises(LocalProtocolError):
        ClientConnection(chunk_size=0)


# --- hostile server -------------------------------------------------------------------------

_INTERESTING = [
    b"+OK",
    b"-ERR",
    b"+OK 1 2",
    b"+ ",
    b".",
    b"..",
    b"1 abc",
    b"1 2",
    b"\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b"\xff\xfe",
    b"[SYS/TEMP]",
    b"<a@b>",
    b"+OK <1.2@x>",
    b"PIPELINING",
    b"SASL PLAIN",
]
_server_bytes = st.lists(
    st.one_of(st.binary(max_size=40), st.sampled_from(_INTERESTING)), max_size=40
).map(b"".join)


def _queue_everything(conn: ClientConnection) -> None:
    conn.capa()
    conn.authenticate(sasl.ScramSha256Client("u", "p"))
    conn.stat()
    conn.list()
    conn.list(1)
    conn.uidl()
    conn.uidl(2)
    conn.retr(1)
    conn.top(1, 3)
    conn.dele(1)
    conn.noop()
    conn.rset()
    conn.quit()


@given(_server_bytes, st.integers(1, 7), st.booleans())
def test_any_server_bytes_give_events_or_remote_protocol_error(
    data: bytes, step: int, pipelining: bool
) -> None:
    conn = ClientConnection(max_line=512, chunk_size=16, max_entries=5)
    conn.receive_data(b"+OK <1.2@x>\r\n")
    conn.capa()
    conn.receive_data(
        b"+OK\r\nSASL SCRAM-SHA-256\r\n" + (b"PIPELINING\r\n" if pipelining else b"") + b".\r\n"
    )
    events(conn)
    _queue_everything(conn)
    try:
        for i in range(0, len(data), step):
            conn.receive_data(data[i : i + step])
            for event in conn.events():
                assert isinstance(event, ClientEvent.__args__)
            conn.data_to_send()
            if conn.closed:
                break
        conn.receive_data(b"")
        for event in conn.events():
            assert isinstance(event, ClientEvent.__args__)
    except RemoteProtocolError:
        assert conn.closed
    except LocalProtocolError as exc:  # only after STLS, which is not queued here
        raise AssertionError(exc) from None
    assert len(conn._buf) <= 512 + step


def _unstuff_reference(data: bytes) -> tuple[bytes, bool, bytes]:
    """RFC 1939 §3 line by line: (message, ended, what followed the end)."""
    out = b""
    *complete, rest = data.split(b"\n")
    for i, line in enumerate(complete):
        core = line[:-1] if line.endswith(b"\r") else line
        if core == b".":
            return out, True, b"\n".join([*complete[i + 1 :], rest])
        if core.startswith(b"."):
            core = core[1:]
        out += core + b"\r\n"
    return out + (rest[1:] if rest.startswith(b".") else rest), False, b""


@given(st.lists(st.sampled_from([b".", b"\r", b"\n", b"x", b"\r\n", b".\r\n"]), max_size=60))
def test_any_message_body_matches_a_line_by_line_reference(parts: list[bytes]) -> None:
    data = b"".join(parts)
    conn = greeted(chunk_size=7)
    conn.retr(1)
    conn.receive_data(b"+OK\r\n" + data)
    got: list[ClientEvent] = []
    with pytest.raises(RemoteProtocolError) if b"\n" in _unstuff_reference(data)[2] else _nothing():
        while (event := conn.next_event()) is not NEED_DATA:
            got.append(event)  # type: ignore[arg-type]
    expected, ended, _ = _unstuff_reference(data)
    body = b"".join(e.data for e in got if isinstance(e, MessageChunk))
    assert isinstance(got[0], MessageStart)
    assert (MessageEnd(number=1, size=len(expected)) in got) is ended
    if ended:
        assert body == expected
    else:
        assert expected.startswith(body) and len(expected) - len(body) <= 1
        assert len(conn._buf) <= 2


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


@bytewise
def test_dot_then_lone_cr_is_a_stuffed_line(bytewise: bool) -> None:
    conn = ready()
    evs = retrieve(conn, b"+OK\r\n.\rx\r\n.\r\n", bytewise=bytewise)
    assert evs[1] == MessageChunk(number=1, data=b"\rx\r\n")
    assert evs[2] == MessageEnd(number=1, size=4)
