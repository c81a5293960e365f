"""The server core against the RFCs' own example exchanges.

Each exchange is the RFC's ``C:``/``S:`` transcript. The ``C:`` lines are fed to a
``ServerConnection`` (whole, then one byte at a time); a replaying application answers
each ``CommandReceived`` as the ``S:`` lines say: every untagged response of that
command is read back with the response parser and sent as ``Untagged(response=...)``
(so the core and the response writer produce the bytes), and the tagged line becomes
the ``Complete``. What the core answers itself (the greeting, continuations,
CAPABILITY, ENABLE, IDLE, LOGOUT, logins, STARTTLS) and the updates of the selected
mailbox (EXISTS, EXPUNGE, VANISHED, told to the ``SelectedMailbox`` view by the
exchange's hooks) come from the core alone. The bytes written must equal the ``S:``
lines, except for the differences each exchange lists with its reason: the human text
of the lines the core writes itself, capabilities the core always announces, and
forms the RFC leaves open. A difference whose RFC line is not in the transcript is an
error, so the list cannot go stale.

Sources (read from the RFC texts): RFC 9051 §8 (the sample session), §6.3.1 (ENABLE),
RFC 5161 §3.1, RFC 2177 §3, RFC 7888 (LITERAL+, and the RFC 3501 synchronising form it
replaces), RFC 7889 §3.1 and §4, RFC 4315 §2.1 (and the APPENDUID/COPYUID examples of
RFC 2359 §4.2-§4.3 that RFC 4315 §3 carries on), RFC 3501 §6.3.11 (APPEND), RFC 6851
(UID MOVE), RFC 7162 (§3.1.3 conditional STORE, §3.1.8 SELECT (CONDSTORE), §3.2.7
EXPUNGE with QRESYNC). RFC 6855 has no example exchange; its §3 rules are shown on an
exchange written for them.
"""

from __future__ import annotations

import re
from base64 import b64decode
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents import sasl
from mailagents._protocol import NEED_DATA, PAUSED
from mailagents.imap import _server_auth
from mailagents.imap._commands import Examine, Select
from mailagents.imap._config import DEFAULT_EXTENSIONS, ServerConfig
from mailagents.imap._events import CommandReceived, Complete, Greeting, Untagged
from mailagents.imap._frame import Frame
from mailagents.imap._framing import FrameReceived
from mailagents.imap._framing_client import ResponseReader
from mailagents.imap._response_parser import parse_response
from mailagents.imap._responses import ESearchData, Response, SearchData
from mailagents.imap._selected import SelectedMailbox
from mailagents.imap._server import ServerConnection
from mailagents.sasl._scram import ScramSha256Server

Hook = Callable[[ServerConnection], None]
_TAGGED = re.compile(rb"^(\S+) (OK|NO|BAD)(?: \[([^\]]*)\])?(?: (.*))?$")
# Untagged responses only the selected-mailbox view may send (RFC 9051 §7.5.1).
_VIEW = re.compile(rb"^\* (\d+ (EXISTS|EXPUNGE)|VANISHED (?!\(EARLIER\)))", re.IGNORECASE)
CORE_COMMANDS = frozenset(
    {"CAPABILITY", "NOOP", "LOGOUT", "ID", "STARTTLS", "AUTHENTICATE", "LOGIN", "ENABLE",
     "IDLE", "COMPRESS", "CHECK"}
)  # fmt: skip


@dataclass
class Exchange:
    """One RFC example: ``transcript`` holds ``C:``/``S:`` lines as the RFC prints them,
    and ``@name`` lines that run ``events[name]``. A line indented by four spaces
    continues the one before, as the RFC wraps it: joined with one space, or with none
    after ``|`` (where the grammar has no space, as between addresses)."""

    source: str
    transcript: str
    config: ServerConfig = field(default_factory=lambda: ServerConfig(allow_plaintext_login=True))
    greeting: Greeting | None = None
    """The greeting; ``None`` when the transcript starts after it (a PREAUTH session
    or ``route``), whose output is not compared."""
    route: bytes = b""
    """Commands fed first (output not compared): the login and SELECT the RFC assumes."""
    selects: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """For each SELECT/EXAMINE tag (``route`` included), the mailbox's UIDs."""
    hooks: dict[str, Hook] = field(default_factory=dict)
    """For a command's tag, what the application tells the view before completing."""
    events: dict[str, Hook] = field(default_factory=dict)
    differences: list[tuple[bytes, bytes, str]] = field(default_factory=list)
    """``(RFC line, our line, why)``: our line stands for the RFC's."""
    secrets: sasl.ScramSecrets | None = None
    """The answer to a SCRAM ``NeedCredentials``."""
    rewrite: Callable[[Response], Response] | None = None
    """How the application words a response before sending it (to show a conversion)."""


def _steps(exchange: Exchange) -> list[tuple[str, bytes]]:
    steps: list[tuple[str, bytes]] = []
    for raw in exchange.transcript.strip("\n").split("\n"):
        if raw.startswith("    "):  # the RFC's line wrap: "    |" joins without a space
            text = raw[4:]
            who, before = steps[-1]
            joined = text[1:] if text.startswith("|") else " " + text
            steps[-1] = (who, before + joined.encode("utf-8"))
            continue
        line = raw.strip()
        if line.startswith("@"):
            steps.append(("@", line[1:].encode()))
        elif line in ("C:", "S:"):
            steps.append((line[0], b""))
        else:
            who, text = line[:2], line[3:]
            assert who in ("C:", "S:"), raw
            steps.append((who[0], text.encode("utf-8")))
    return steps


def _expected(exchange: Exchange) -> list[bytes]:
    """The S: lines with the differences put in, per @ section."""
    lines = [text for who, text in _steps(exchange) if who == "S"]
    for rfc, _ours, _why in exchange.differences:
        assert rfc in lines, f"stale difference: {rfc!r} is not in the transcript"
    table = {rfc: ours for rfc, ours, _ in exchange.differences}
    return [table.get(line, line) for line in lines]


def _frames(server_lines: list[bytes]) -> list[Frame]:
    """The S: lines as the client's reader frames them (a literal spans lines)."""
    reader = ResponseReader()
    reader.receive_data(b"".join(line + b"\r\n" for line in server_lines))
    frames = []
    while (event := reader.next_event()) is not NEED_DATA:
        assert isinstance(event, FrameReceived)
        frames.append(event.frame)
    return frames


@dataclass
class Replayer:
    """The application: answers each command as the transcript's S: lines say (a tag
    used twice, as in RFC 2359's example, is answered in transcript order)."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.answers: dict[str, list[tuple[list[Frame], bytes]]] = {}
        pending: list[Frame] = []
        lines = [text for who, text in _steps(exchange) if who == "S"]
        for frame in _frames(lines):
            first = frame.lines[0]
            if first.startswith((b"* ", b"+ ")) or first == b"+":
                pending.append(frame)
                continue
            tag = first.split(b" ", 1)[0].decode()
            untagged = [f for f in pending if f.lines[0].startswith(b"* ")]
            self.answers.setdefault(tag, []).append((untagged, first))
            pending = []

    def handle(self, server: ServerConnection, event: object) -> None:
        if isinstance(event, sasl.NeedCredentials):
            if self.exchange.secrets is not None:
                server.send(self.exchange.secrets)
            else:
                server.send(sasl.PasswordVerdict(valid=True))
            return
        if not isinstance(event, CommandReceived):
            return
        command = event.command
        tag = command.tag
        selecting = isinstance(command, Select | Examine)
        queue = self.answers.get(tag)
        if queue:
            frames, tagged = queue.pop(0)
        else:  # a command of the route: the least the core needs
            frames, tagged = [], tag.encode() + b" OK [READ-WRITE] Ok"
            if selecting and "CONDSTORE" in server.enabled:  # RFC 7162 §3.1.2
                frames = [Frame(lines=(b"* OK [HIGHESTMODSEQ 1] Ok",))]
        for frame in frames:
            if not selecting and server.mailbox is not None and _VIEW.match(frame.lines[0]):
                continue  # the view sends these (the exchange's hook told it)
            response = parse_response(frame, utf8="UTF8=ACCEPT" in server.enabled)
            if self.exchange.rewrite is not None:
                response = self.exchange.rewrite(response)
            server.send(Untagged(response=response))
        hook = self.exchange.hooks.get(tag)
        if hook is not None:
            hook(server)
        match = _TAGGED.match(tagged)
        assert match is not None, tagged
        status, code, text = match.group(2), match.group(3), match.group(4) or b""
        selected = SelectedMailbox(self.exchange.selects[tag]) if selecting else None
        server.send(
            Complete(
                status=status.decode(),  # type: ignore[arg-type]
                code=code.decode() if code is not None else None,
                text=text.decode("utf-8"),
                selected=selected if status == b"OK" else None,
            )
        )


def _pump(
    server: ServerConnection, app: Replayer, data: bytes, bytewise: bool, sizes: list[int]
) -> None:
    if sizes:  # cut as ``sizes`` says, round and round
        pieces, at, i = [], 0, 0
        while at < len(data):
            pieces.append(data[at : at + sizes[i % len(sizes)]])
            at += sizes[i % len(sizes)]
            i += 1
    else:
        pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    pieces = [piece for piece in pieces if piece]  # b"" would mean the client closed
    for piece in pieces:
        server.receive_data(piece)
        while (event := server.next_event()) not in (NEED_DATA, PAUSED):
            app.handle(server, event)


def play(exchange: Exchange, *, bytewise: bool, sizes: list[int] | None = None) -> list[bytes]:
    """Feed the transcript's C: lines; the lines the core wrote."""
    server = ServerConnection(exchange.config)
    app = Replayer(exchange)
    if exchange.greeting is not None:
        server.send(exchange.greeting)
        out = bytearray(server.data_to_send())
    else:
        server.send(Greeting(kind="PREAUTH", identity="fred", text="ready"))
        server.data_to_send()
        out = bytearray()
    if exchange.route:
        _pump(server, app, exchange.route, False, [])
        server.data_to_send()
    client = bytearray()
    for who, text in _steps(exchange):
        if who == "C":
            client += text + b"\r\n"
        elif who == "@":
            _pump(server, app, bytes(client), bytewise, sizes or [])
            client.clear()
            out += server.data_to_send()
            exchange.events[text.decode()](server)
    _pump(server, app, bytes(client), bytewise, sizes or [])
    out += server.data_to_send()
    lines = bytes(out).split(b"\r\n")
    assert lines[-1] == b""
    return lines[:-1]


def check(exchange: Exchange) -> None:
    expected = _expected(exchange)
    for bytewise in (False, True):
        actual = play(exchange, bytewise=bytewise)
        for i, (ours, rfc) in enumerate(zip(actual, expected, strict=False)):
            assert ours == rfc, (exchange.source, i)
        assert len(actual) == len(expected), (exchange.source, actual[len(expected) :])


# --- RFC 9051 §8: the sample IMAP4rev2 session -------------------------------------------

RFC9051_SAMPLE = r"""
S: * OK [CAPABILITY STARTTLS AUTH=SCRAM-SHA-256 LOGINDISABLED IMAP4rev2] IMAP4rev2 Service Ready
C: a000 starttls
S: a000 OK Proceed with TLS negotiation
@tls
C: A001 AUTHENTICATE SCRAM-SHA-256 biwsbj11c2VyLHI9ck9wck5HZndFYmVSV2diTkVrcU8=
S: + cj1yT3ByTkdmd0ViZVJXZ2JORWtxTyVodllEcFdVYTJSYVRDQWZ1eEZJbGopaE5sRiRrMCxzPVcyMlphSjBTTlk3
    |c29Fc1VFamI2Z1E9PSxpPTQwOTY=
C: Yz1iaXdzLHI9ck9wck5HZndFYmVSV2diTkVrcU8laHZZRHBXVWEyUmFUQ0FmdXhGSWxqKWhObEYkazAscD1k
    |SHpiWmFwV0lrNGpVaE4rVXRlOXl0YWc5empmTUhnc3FtbWl6N0FuZFZRPQ==
S: + dj02cnJpVFJCaTIzV3BSUi93dHVwK21NaFVaVW4vZEI1bkxUSlJzamw5NUc0PQ==
C:
S: A001 OK SCRAM-SHA-256 authentication successful
C: babc ENABLE IMAP4rev2
S: * ENABLED IMAP4rev2
S: babc OK Some capabilities enabled
C: a002 select inbox
S: * 18 EXISTS
S: * FLAGS (\Answered \Flagged \Deleted \Seen \Draft)
S: * OK [UIDVALIDITY 3857529045] UIDs valid
S: * LIST () "/" INBOX ("OLDNAME" ("inbox"))
S: a002 OK [READ-WRITE] SELECT completed
C: a003 fetch 12 full
S: * 12 FETCH (FLAGS (\Seen) INTERNALDATE
    "17-Jul-1996 02:44:25 -0700" RFC822.SIZE 4286 ENVELOPE (
    |"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)"
    "IMAP4rev2 WG mtg summary and minutes"
    (("Terry Gray" NIL "gray" "cac.washington.edu"))
    (("Terry Gray" NIL "gray" "cac.washington.edu"))
    (("Terry Gray" NIL "gray" "cac.washington.edu"))
    ((NIL NIL "imap" "cac.washington.edu"))
    ((NIL NIL "minutes" "CNRI.Reston.VA.US")
    |("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL
    "<B27397-0100000@cac.washington.ed>")
    BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT"
    3028 92))
S: a003 OK FETCH completed
C: a004 fetch 12 body[header]
S: * 12 FETCH (BODY[HEADER] {342}
S: Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)
S: From: Terry Gray <gray@cac.washington.edu>
S: Subject: IMAP4rev2 WG mtg summary and minutes
S: To: imap@cac.washington.edu
S: cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>
S: Message-Id: <B27397-0100000@cac.washington.edu>
S: MIME-Version: 1.0
S: Content-Type: TEXT/PLAIN; CHARSET=US-ASCII
S:
S: )
S: a004 OK FETCH completed
C: a005 store 12 +flags \deleted
S: * 12 FETCH (FLAGS (\Seen \Deleted))
S: a005 OK +FLAGS completed
C: a006 logout
S: * BYE IMAP4rev2 server terminating connection
S: a006 OK LOGOUT completed
"""

# RFC 7677 §3: the SCRAM-SHA-256 example RFC 9051 §8 uses (user "user", password
# "pencil"); the server's part of the nonce is the RFC's.
_SCRAM_SALT = b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
_SCRAM_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"


@pytest.fixture
def rfc_scram_nonce(monkeypatch: pytest.MonkeyPatch) -> None:
    """The core asks ``sasl.server_mechanism`` for SCRAM: give it the RFC's nonce."""
    real = sasl.server_mechanism

    def mechanism(name: str, *, allow_legacy: bool = False) -> sasl.ServerMechanism:
        if name == "SCRAM-SHA-256":
            return ScramSha256Server(nonce=_SCRAM_NONCE)
        return real(name, allow_legacy=allow_legacy)

    monkeypatch.setattr(_server_auth.sasl, "server_mechanism", mechanism)


def _line(transcript: str, start: str) -> bytes:
    """The S: line of ``transcript`` that starts with ``start``."""
    for who, text in _steps(Exchange(source="", transcript=transcript)):
        if who == "S" and text.startswith(start.encode()):
            return text
    raise AssertionError(start)


def test_rfc_9051_sample_session(rfc_scram_nonce: None) -> None:
    config = ServerConfig(
        tls_available=True, auth_mechanisms=("SCRAM-SHA-256",), extensions=("IMAP4rev2",)
    )
    after_login = "IMAP4rev2 LITERAL+ APPENDLIMIT=67108864"
    full = _line(RFC9051_SAMPLE, "* 12 FETCH (FLAGS")
    dates = b'INTERNALDATE "17-Jul-1996 02:44:25 -0700"'
    exchange = Exchange(
        source="RFC 9051 §8",
        transcript=RFC9051_SAMPLE,
        config=config,
        greeting=Greeting(text="IMAP4rev2 Service Ready"),
        selects={"a002": tuple(range(1, 19))},
        events={"tls": lambda server: server.tls_started()},
        secrets=sasl.scram_secrets("pencil", salt=_SCRAM_SALT, iterations=4096),
        differences=[
            (
                b"* OK [CAPABILITY STARTTLS AUTH=SCRAM-SHA-256 LOGINDISABLED IMAP4rev2] "
                b"IMAP4rev2 Service Ready",
                b"* OK [CAPABILITY IMAP4rev2 LITERAL+ STARTTLS LOGINDISABLED "
                b"AUTH=SCRAM-SHA-256 APPENDLIMIT=67108864] IMAP4rev2 Service Ready",
                "the configured extensions come first; the core always announces its "
                "literal form (RFC 7888) and APPENDLIMIT (RFC 7889)",
            ),
            (
                b"a000 OK Proceed with TLS negotiation",
                b"a000 OK Begin TLS negotiation now",
                "human text of a line the core writes",
            ),
            (
                b"A001 OK SCRAM-SHA-256 authentication successful",
                b"A001 OK [CAPABILITY " + after_login.encode() + b"] Logged in",
                "human text; the core sends the new capabilities with the OK "
                "(RFC 9051 §6.2.2 allows it, and saves the client a CAPABILITY)",
            ),
            (
                b"babc OK Some capabilities enabled",
                b"babc OK ENABLE completed",
                "human text of a line the core writes",
            ),
            (
                b'* LIST () "/" INBOX ("OLDNAME" ("inbox"))',
                b'* LIST () "/" INBOX (OLDNAME (inbox))',
                "the response writer gives the extended-item tag and the old name as "
                "atoms where the RFC quotes them (astrings, RFC 5258 §9: either form)",
            ),
            (
                full,
                full.replace(dates + b" RFC822.SIZE 4286", b"RFC822.SIZE 4286 " + dates),
                "the response writer puts FETCH items in its own order (RFC 9051 §7.5.2 sets none)",
            ),
            (
                b"* BYE IMAP4rev2 server terminating connection",
                b"* BYE Logging out",
                "human text of a line the core writes",
            ),
        ],
    )
    check(exchange)


# --- ENABLE: RFC 5161 §3.1 and RFC 9051 §6.3.1 ---------------------------------------------

RFC5161_CAPABILITY_UNCHANGED = """
C: t1 CAPABILITY
S: * CAPABILITY IMAP4rev1 ID LITERAL+ ENABLE X-GOOD-IDEA
S: t1 OK foo
C: t2 ENABLE CONDSTORE X-GOOD-IDEA
S: * ENABLED X-GOOD-IDEA
S: t2 OK foo
C: t3 CAPABILITY
S: * CAPABILITY IMAP4rev1 ID LITERAL+ ENABLE X-GOOD-IDEA
S: t3 OK foo again
"""


def test_rfc_5161_enable_leaves_the_capabilities_alone() -> None:
    config = ServerConfig(
        extensions=("IMAP4rev1", "ID", "LITERAL+", "ENABLE", "X-GOOD-IDEA"),
        enable_extensions=("X-GOOD-IDEA",),
    )
    with_limit = b"* CAPABILITY IMAP4rev1 ID LITERAL+ ENABLE X-GOOD-IDEA APPENDLIMIT=67108864"
    exchange = Exchange(
        source="RFC 5161 §3.1",
        transcript=RFC5161_CAPABILITY_UNCHANGED,
        config=config,
        differences=[
            (
                b"* CAPABILITY IMAP4rev1 ID LITERAL+ ENABLE X-GOOD-IDEA",
                with_limit,
                "the core always announces APPENDLIMIT (RFC 7889)",
            ),
            (b"t1 OK foo", b"t1 OK CAPABILITY completed", "human text"),
            (b"t2 OK foo", b"t2 OK ENABLE completed", "human text"),
            (b"t3 OK foo again", b"t3 OK CAPABILITY completed", "human text"),
        ],
    )
    check(exchange)


def test_rfc_5161_enable_condstore() -> None:
    exchange = Exchange(
        source="RFC 5161 §3.1 / RFC 9051 §6.3.1",
        transcript="""
C: a1 ENABLE CONDSTORE
S: * ENABLED CONDSTORE
S: a1 OK Conditional Store enabled
""",
        differences=[(b"a1 OK Conditional Store enabled", b"a1 OK ENABLE completed", "human text")],
    )
    check(exchange)


# --- IDLE: RFC 2177 §3 --------------------------------------------------------------------

RFC2177_IDLE = """
C: A004 IDLE
S: * 2 EXPUNGE
S: * 3 EXISTS
S: + idling
@expunge
S: * 3 EXPUNGE
S: * 2 EXISTS
@mail
S: * 3 EXISTS
C: DONE
S: A004 OK IDLE terminated
"""


def test_rfc_2177_idle() -> None:
    def before(server: ServerConnection) -> None:
        # pending when IDLE comes: message 2 expunged, one new message
        assert server.mailbox is not None
        server.mailbox.expunged([2])
        server.mailbox.appended([4])

    def expunge(server: ServerConnection) -> None:
        # "...time passes; another client expunges message 3..."
        assert server.mailbox is not None
        server.mailbox.expunged([server.mailbox.uid(3)])
        server.refresh()
        server.send(Untagged(frame=Frame(lines=(b"* 2 EXISTS",))))  # the count, again

    def mail(server: ServerConnection) -> None:
        # "...time passes; new mail arrives..."
        assert server.mailbox is not None
        server.mailbox.appended([5])
        server.refresh()

    exchange = Exchange(
        source="RFC 2177 §3",
        transcript=RFC2177_IDLE,
        route=b"a1 SELECT INBOX\r\n",
        selects={"a1": (1, 2, 3)},
        events={"expunge": expunge, "mail": mail},
        hooks={},
    )
    exchange.events["before"] = before
    exchange.transcript = "@before\n" + RFC2177_IDLE.strip("\n")
    check(exchange)


# --- LITERAL+ (RFC 7888) and the synchronising form it replaces (RFC 3501) ----------------

RFC7888_LOGIN = """
C: A001 LOGIN {11+}
C: FRED FOOBAR {7+}
C: fat man
S: A001 OK LOGIN completed
"""

RFC3501_LOGIN = """
C: A001 LOGIN {11}
S: + Ready for additional command text
C: FRED FOOBAR {7}
S: + Ready for additional command text
C: fat man
S: A001 OK LOGIN completed
"""

_LOGGED_IN = (
    b"A001 OK LOGIN completed",
    b"A001 OK [CAPABILITY "
    + " ".join(DEFAULT_EXTENSIONS).encode()
    + b" %s APPENDLIMIT=67108864] Logged in",
    "the core sends the new capabilities with the OK (RFC 9051 §6.2.2); human text",
)


@pytest.mark.parametrize("literal_plus", [True, False])
def test_rfc_7888_non_synchronising_literals(literal_plus: bool) -> None:
    # LITERAL- (RFC 7888 §5) takes the same example: both literals are under 4096.
    config = ServerConfig(allow_plaintext_login=True, literal_plus=literal_plus)
    literal = b"LITERAL+" if literal_plus else b"LITERAL-"
    exchange = Exchange(
        source="RFC 7888",
        transcript=RFC7888_LOGIN,
        config=config,
        greeting=Greeting(),
        differences=[(_LOGGED_IN[0], _LOGGED_IN[1] % literal, _LOGGED_IN[2])],
    )
    check_after_greeting(exchange)


def check_after_greeting(exchange: Exchange) -> None:
    """``check`` for a session in the not-authenticated state (the greeting's own line
    is left out of the comparison)."""
    expected = _expected(exchange)
    for bytewise in (False, True):
        actual = play(exchange, bytewise=bytewise)[1:]
        assert actual == expected, exchange.source


def test_rfc_3501_synchronising_literals() -> None:
    exchange = Exchange(
        source="RFC 3501 (the synchronising form RFC 7888 improves on)",
        transcript=RFC3501_LOGIN,
        greeting=Greeting(),
        differences=[
            (
                b"+ Ready for additional command text",
                b"+ Ready for literal data",
                "human text of the continuation the core writes",
            ),
            (_LOGGED_IN[0], _LOGGED_IN[1] % b"LITERAL+", _LOGGED_IN[2]),
        ],
    )
    check_after_greeting(exchange)


# --- APPENDLIMIT (RFC 7889) ---------------------------------------------------------------


def test_rfc_7889_status_appendlimit() -> None:
    # RFC 7889 §3.1's example is the command and the STATUS line; the tagged OK is ours.
    exchange = Exchange(
        source="RFC 7889 §3.1",
        transcript="""
C: t1 STATUS INBOX (APPENDLIMIT)
S: * STATUS INBOX (APPENDLIMIT 257890)
S: t1 OK STATUS completed
""",
    )
    check(exchange)


def test_rfc_7889_toobig() -> None:
    # RFC 7889 §4: "the server SHALL reject the APPEND command with a tagged TOOBIG
    # response code" -- before the client sends the octets (a synchronising literal).
    config = ServerConfig(max_append=257890)
    exchange = Exchange(
        source="RFC 7889 §4",
        transcript="""
C: t2 APPEND INBOX {257891}
S: t2 NO [TOOBIG] Literal too big
C: t3 NOOP
S: t3 OK NOOP completed
""",
        config=config,
    )
    check(exchange)


# --- UIDPLUS (RFC 4315) and APPEND (RFC 3501 §6.3.11) --------------------------------------

RFC3501_APPEND = """
C: A003 APPEND saved-messages (\\Seen) {310}
S: + Ready for literal data
C: Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)
C: From: Fred Foobar <foobar@Blurdybloop.COM>
C: Subject: afternoon meeting
C: To: mooch@owatagu.siam.edu
C: Message-Id: <B27397-0100000@Blurdybloop.COM>
C: MIME-Version: 1.0
C: Content-Type: TEXT/PLAIN; CHARSET=US-ASCII
C:
C: Hello Joe, do you think we can meet at 3:30 tomorrow?
C:
S: A003 OK APPEND completed
"""


def test_rfc_3501_append() -> None:
    check(Exchange(source="RFC 3501 §6.3.11", transcript=RFC3501_APPEND))


def test_rfc_4315_appenduid() -> None:
    # RFC 2359 §4.2 / RFC 4315 §3: the same APPEND, completed with APPENDUID.
    transcript = RFC3501_APPEND.replace(
        "S: A003 OK APPEND completed", "S: A003 OK [APPENDUID 38505 3955] APPEND completed"
    )
    check(Exchange(source="RFC 4315 §3", transcript=transcript))


def test_rfc_4315_appenduid_into_the_selected_mailbox() -> None:
    # The same APPEND into the mailbox that is selected: the APPENDUID tells the view,
    # whose EXISTS precedes the tagged OK (RFC 9051 §6.3.12).
    transcript = RFC3501_APPEND.replace(
        "S: A003 OK APPEND completed",
        "S: * 3 EXISTS\nS: A003 OK [APPENDUID 38505 3955] APPEND completed",
    )
    exchange = Exchange(
        source="RFC 4315 §3, into the selected mailbox",
        transcript=transcript,
        route=b"s SELECT saved-messages\r\n",
        selects={"s": (3001, 3002)},
    )
    check(exchange)


def test_rfc_4315_copyuid() -> None:
    exchange = Exchange(
        source="RFC 2359 §4.3 / RFC 4315 §3",
        transcript="""
C: A003 COPY 2:4 MEETING
S: A003 OK [COPYUID 38505 304,319:320 3956:3958] Done
C: A003 UID COPY 305:310 MEETING
S: A003 OK Done
""",
        route=b"s SELECT INBOX\r\n",
        selects={"s": (300, 304, 319, 320, 400)},
    )
    check(exchange)


def test_rfc_4315_uid_expunge() -> None:
    def expunge(server: ServerConnection) -> None:
        assert server.mailbox is not None
        server.mailbox.expunged([3000, 3001, 3002])

    exchange = Exchange(
        source="RFC 4315 §2.1",
        transcript="""
C: A003 UID EXPUNGE 3000:3002
S: * 3 EXPUNGE
S: * 3 EXPUNGE
S: * 3 EXPUNGE
S: A003 OK UID EXPUNGE completed
""",
        route=b"s SELECT INBOX\r\n",
        selects={"s": (1000, 2000, 3000, 3001, 3002, 4000)},
        hooks={"A003": expunge},
    )
    check(exchange)


# --- MOVE (RFC 6851) ------------------------------------------------------------------------


def test_rfc_6851_uid_move() -> None:
    uids = (*range(1, 22), *range(42, 70), 70)  # UID 42 is message 22

    def moved(server: ServerConnection) -> None:
        assert server.mailbox is not None
        server.mailbox.expunged(range(42, 70))

    exchange = Exchange(
        source="RFC 6851",
        transcript="""
C: a UID MOVE 42:69 foo
S: * OK [COPYUID 432432 42:69 1202:1229]
S: * 22 EXPUNGE
S: a OK Done
""",
        route=b"s SELECT INBOX\r\n",
        selects={"s": uids},
        hooks={"a": moved},
    )
    # The RFC shows the first EXPUNGE; 42:69 is 28 messages here, each "* 22 EXPUNGE"
    # once the one before is gone.
    expected = _expected(exchange)
    expected[2:2] = [b"* 22 EXPUNGE"] * 27
    for bytewise in (False, True):
        assert play(exchange, bytewise=bytewise) == expected


# --- CONDSTORE and QRESYNC (RFC 7162) ---------------------------------------------------------


def test_rfc_7162_select_condstore() -> None:
    # §3.1.8: SELECT (CONDSTORE) is a CONDSTORE enabling command, and the answer carries
    # HIGHESTMODSEQ (§3.1.2.1); without it the core refuses the OK.
    exchange = Exchange(
        source="RFC 7162 §3.1.8",
        transcript="""
C: A142 SELECT INBOX (CONDSTORE)
S: * 172 EXISTS
S: * 1 RECENT
S: * OK [UNSEEN 12] Message 12 is first unseen
S: * OK [UIDVALIDITY 3857529045] UIDs valid
S: * OK [UIDNEXT 4392] Predicted next UID
S: * FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)
S: * OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited
S: * OK [HIGHESTMODSEQ 715194045007]
S: A142 OK [READ-WRITE] SELECT completed
""",
        selects={"A142": tuple(range(1, 173))},
    )
    check(exchange)


def test_rfc_7162_conditional_store_then_modseq_in_updates() -> None:
    def changed(server: ServerConnection) -> None:
        # Another session changes message 3: the update carries MODSEQ (§3.1), as the
        # STORE with UNCHANGEDSINCE was a CONDSTORE enabling command.
        assert server.mailbox is not None
        server.mailbox.flags_changed(7, ["\\Seen"], modseq=12121231777)

    exchange = Exchange(
        source="RFC 7162 §3.1.3",
        transcript="""
C: a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)
S: * 1 FETCH (UID 4 MODSEQ (12121231000))
S: * 2 FETCH (UID 6 MODSEQ (12121230852))
S: * 4 FETCH (UID 8 MODSEQ (12121230956))
S: a103 OK Conditional Store completed
@changed
C: n NOOP
S: * 3 FETCH (FLAGS (\\Seen) MODSEQ (12121231777))
S: n OK NOOP completed
""",
        route=b"s SELECT INBOX\r\n",
        selects={"s": (4, 6, 7, 8)},
        events={"changed": changed},
    )
    check(exchange)


def test_rfc_7162_expunge_with_qresync() -> None:
    def expunge(server: ServerConnection) -> None:
        assert server.mailbox is not None
        server.mailbox.expunged([405, 407, 410, 425])

    exchange = Exchange(
        source="RFC 7162 §3.2.7",
        transcript="""
C: A202 EXPUNGE
S: * VANISHED 405,407,410,425
S: A202 OK [HIGHESTMODSEQ 20010715194045319] expunged
""",
        route=b"e ENABLE QRESYNC\r\ns SELECT INBOX\r\n",
        selects={"s": tuple(range(400, 431))},
        hooks={"A202": expunge},
    )
    check(exchange)


def test_rfc_7162_qresync_parameter_needs_enable() -> None:
    # §3.2.3 (restated in §3.2.5): the QRESYNC parameter without ENABLE QRESYNC is BAD.
    exchange = Exchange(
        source="RFC 7162 §3.2.3",
        transcript="""
C: A142 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))
S: A142 BAD QRESYNC not enabled
""",
    )
    check(exchange)


# --- SEARCH in an IMAP4rev2 session (RFC 9051 §6.4.4) -------------------------------------


def _as_rev1_search(response: Response) -> Response:
    """An application that answers SEARCH the IMAP4rev1 way (``* SEARCH n ...``)."""
    if isinstance(response, ESearchData):
        found = response.all.iter_numbers(2**32 - 1) if response.all else ()
        return SearchData(numbers=tuple(found))
    return response


def test_rfc_9051_search_answered_as_esearch() -> None:
    exchange = Exchange(
        source="RFC 9051 §6.4.4",
        transcript="""
C: A284 SEARCH TEXT "string not in mailbox"
S: * ESEARCH (TAG "A284")
S: A284 OK SEARCH completed
C: A285 SEARCH CHARSET UTF-8 TEXT {12}
S: + Ready for literal text
C: отпуск
S: * ESEARCH (TAG "A285") ALL 43
S: A285 OK SEARCH completed
""",
        route=b"e ENABLE IMAP4rev2\r\ns SELECT INBOX\r\n",
        selects={"s": tuple(range(1, 50))},
        rewrite=_as_rev1_search,  # the core turns * SEARCH into ESEARCH for rev2
        differences=[
            (
                b"+ Ready for literal text",
                b"+ Ready for literal data",
                "human text of the continuation the core writes",
            )
        ],
    )
    check(exchange)


# --- UTF8=ACCEPT (RFC 6855 §3): no example in the RFC; its rules on one exchange ----------


def _rfc_6855_exchange() -> Exchange:
    config = ServerConfig(
        allow_plaintext_login=True, extensions=(*DEFAULT_EXTENSIONS, "UTF8=ACCEPT")
    )
    exchange = Exchange(
        source="RFC 6855 §3",
        transcript="""
C: a LIST "" *
S: * LIST () "/" Entw&APw-rfe
S: a OK LIST completed
C: b SELECT "Entwürfe"
S: b BAD 8-bit text needs ENABLE UTF8=ACCEPT
C: e ENABLE UTF8=ACCEPT
S: * ENABLED UTF8=ACCEPT
S: e OK ENABLE completed
C: c LIST "" *
S: * LIST () "/" "Entwürfe"
S: c OK LIST completed
C: d SELECT "Entwürfe"
S: * 0 EXISTS
S: d OK [READ-WRITE] SELECT completed
C: f SEARCH CHARSET UTF-8 ALL
S: f BAD No CHARSET in SEARCH after ENABLE UTF8=ACCEPT
""",
        config=config,
        selects={"d": ()},
    )
    return exchange


def test_rfc_6855_utf8_accept_rules() -> None:
    check(_rfc_6855_exchange())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=8))
def test_any_cut_of_the_input_gives_the_same_bytes(sizes: list[int]) -> None:
    exchange = _rfc_6855_exchange()
    assert play(exchange, bytewise=False, sizes=sizes) == _expected(exchange)
