"""The server core's rules that depend on what the client enabled
(mailagents/imap/_server_session.py, _server_rules.py): CONDSTORE enabling commands,
ID, untagged responses given as objects, APPEND into the selected mailbox, IMAP4rev2
and UTF8=ACCEPT/UTF8=ONLY; every exchange whole and one byte at a time."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mailagents._protocol import LocalProtocolError
from mailagents.imap._commands import Append, Examine, Search, Select
from mailagents.imap._config import DEFAULT_EXTENSIONS, ServerConfig
from mailagents.imap._events import CommandReceived, Complete, Untagged
from mailagents.imap._frame import Frame
from mailagents.imap._response_codes import ResponseCode
from mailagents.imap._responses import (
    ExistsData,
    ListData,
    RecentData,
    SearchData,
    StatusResponse,
)
from mailagents.imap._selected import SelectedMailbox
from mailagents.imap._server import ServerConnection
from mailagents.imap._server_rules import appenduid, condstore_enabling
from mailagents.imap._state import State

from .test_server import LOGIN, SELECT, App, both, new, run


def frame(line: bytes) -> Untagged:
    return Untagged(frame=Frame(lines=(line,)))


# --- CONDSTORE enabling commands (RFC 7162 §3.1) ---------------------------------------

ENABLING = [
    b"f FETCH 1 (FLAGS MODSEQ)",  # §3.1.4.2
    b"f FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",  # §3.1.4.1
    b"f UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",
    b"f STORE 1 (UNCHANGEDSINCE 5) +FLAGS (\\Seen)",  # §3.1.3
    b"f SEARCH MODSEQ 5",  # §3.1.5
    b"f UID SEARCH OR ALL NOT MODSEQ 5",
    b"f STATUS INBOX (MESSAGES HIGHESTMODSEQ)",  # §3.1.7
]


@pytest.mark.parametrize("command", ENABLING)
def test_a_condstore_enabling_command_turns_on_modseq(command: bytes) -> None:
    result, server = both(command + b"\r\n", route=SELECT)
    assert "CONDSTORE" in server.enabled
    view = server.mailbox
    assert view is not None and view.condstore
    view.flags_changed(4, ["\\Seen"], modseq=917)
    assert run(server, b"n NOOP\r\n").lines == [
        b"* 4 FETCH (FLAGS (\\Seen) MODSEQ (917))",
        b"n OK NOOP completed",
    ]


@pytest.mark.parametrize(
    "command",
    [b"f FETCH 1 (FLAGS)", b"f STORE 1 +FLAGS (\\Seen)", b"f SEARCH ALL", b"f UID FETCH 1 UID"],
)
def test_other_commands_do_not(command: bytes) -> None:
    _, server = both(command + b"\r\n", route=SELECT)
    assert "CONDSTORE" not in server.enabled
    view = server.mailbox
    assert view is not None and not view.condstore
    view.flags_changed(4, ["\\Seen"], modseq=917)
    assert run(server, b"n NOOP\r\n").lines[0] == b"* 4 FETCH (FLAGS (\\Seen))"


def test_condstore_not_offered_is_not_turned_on() -> None:
    config = ServerConfig(
        allow_plaintext_login=True,
        extensions=tuple(e for e in DEFAULT_EXTENSIONS if e not in ("CONDSTORE", "QRESYNC")),
    )
    _, server = both(b"f FETCH 1 (MODSEQ)\r\n", route=SELECT, config=config)
    assert "CONDSTORE" not in server.enabled


def test_condstore_enabling_is_pure() -> None:
    assert condstore_enabling(Select(tag="a", mailbox="INBOX", condstore=True))
    assert condstore_enabling(Examine(tag="a", mailbox="INBOX", condstore=True))
    assert not condstore_enabling(Examine(tag="a", mailbox="INBOX"))


@dataclass
class Selecting(App):
    """Answers SELECT with what ``untagged`` holds."""

    untagged: list[Untagged] = field(default_factory=list)

    def handle(self, server: ServerConnection, event: object) -> None:
        if isinstance(event, CommandReceived) and isinstance(event.command, Select | Examine):
            for u in self.untagged:
                server.send(u)
            server.send(Complete(selected=SelectedMailbox(self.uids)))
        else:
            super().handle(server, event)


def test_select_after_an_enabling_command_must_tell_highestmodseq() -> None:
    server = new()
    run(server, LOGIN + b"e ENABLE CONDSTORE\r\n")
    with pytest.raises(LocalProtocolError, match="HIGHESTMODSEQ"):
        run(server, b"s SELECT INBOX\r\n", Selecting())
    assert server.state is State.AUTHENTICATED  # the refused answer changed nothing
    server.send(frame(b"* OK [NOMODSEQ] No mod-sequences here"))  # RFC 7162 §3.1.2.2
    server.send(Complete(selected=SelectedMailbox([1])))
    assert server.state is State.SELECTED
    assert server.data_to_send().endswith(b"s OK SELECT completed\r\n")


def test_select_condstore_with_highestmodseq() -> None:
    app = Selecting(untagged=[frame(b"* OK [HIGHESTMODSEQ 715194045007] Highest")])
    result, server = both(b"s SELECT INBOX (CONDSTORE)\r\n", route=LOGIN, app=app)
    assert result.lines[-1] == b"s OK SELECT completed"
    assert server.mailbox is not None and server.mailbox.condstore


# --- ID (RFC 2971) ----------------------------------------------------------------------


def test_id_answers_the_configured_fields() -> None:
    config = ServerConfig(
        allow_plaintext_login=True,
        server_id=(("name", "mailagents"), ("version", "1.0"), ("os", None)),
    )
    result, _ = both(b'i ID ("name" "x")\r\n', config=config)
    assert result.lines == [
        b'* ID ("name" "mailagents" "version" "1.0" "os" NIL)',
        b"i OK ID completed",
    ]
    result, _ = both(b"i ID NIL\r\n")
    assert result.lines[0] == b"* ID NIL"


@pytest.mark.parametrize(
    ("server_id", "message"),
    [
        (tuple((f"f{i}", "v") for i in range(31)), "30 field-value pairs"),
        ((("f" * 31, "v"),), "1 to 30 octets"),
        ((("", "v"),), "1 to 30 octets"),
        ((("name", "v" * 1025),), "1024 octets"),
        ((("name", "a"), ("NAME", "b")), "named twice"),
        ((("name", "a\x00"),), "NUL"),
    ],
)
def test_id_fields_are_bounded(server_id: tuple[tuple[str, str | None], ...], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        ServerConfig(server_id=server_id)


def test_id_at_the_bounds_is_accepted() -> None:
    fields = tuple((f"{i:030d}", "v" * 1024) for i in range(30))
    ServerConfig(server_id=fields)


# --- untagged responses as objects ------------------------------------------------------

UTF8_CONFIG = ServerConfig(
    allow_plaintext_login=True, extensions=(*DEFAULT_EXTENSIONS, "UTF8=ACCEPT")
)


@dataclass
class Lister(App):
    """Answers LIST with one mailbox named ``name``, as a response object."""

    name: str = "Entwürfe"

    def handle(self, server: ServerConnection, event: object) -> None:
        if isinstance(event, CommandReceived) and type(event.command).__name__ == "List":
            server.send(Untagged(response=ListData(flags=(), delimiter="/", mailbox=self.name)))
            server.send(Complete())
        else:
            super().handle(server, event)


def test_list_names_in_modified_utf7_then_utf8() -> None:
    result, _ = both(b'l LIST "" *\r\n', route=LOGIN, app=Lister(), config=UTF8_CONFIG)
    assert result.lines[0] == b'* LIST () "/" Entw&APw-rfe'
    route = LOGIN + b"e ENABLE UTF8=ACCEPT\r\n"
    result, _ = both(b'l LIST "" *\r\n', route=route, app=Lister(), config=UTF8_CONFIG)
    assert result.lines[0] == '* LIST () "/" "Entwürfe"'.encode()


def test_untagged_takes_one_form() -> None:
    with pytest.raises(LocalProtocolError):
        Untagged()
    with pytest.raises(LocalProtocolError):
        Untagged(frame=Frame(lines=(b"* 1 EXISTS",)), response=ExistsData(count=1))
    with pytest.raises(LocalProtocolError):
        Untagged(response=StatusResponse(status="OK", tag="a1"))
    Untagged(response=StatusResponse(status="OK", code=ResponseCode(name="ALERT"), text="x"))


def test_a_response_object_of_the_view_is_refused_too() -> None:
    server = new()
    run(server, SELECT)
    with pytest.raises(LocalProtocolError, match="SelectedMailbox"):
        server.send(Untagged(response=ExistsData(count=9)))


# --- APPEND into the selected mailbox ----------------------------------------------------


@dataclass
class Appender(App):
    """Completes APPEND with ``code`` (after telling the view ``tell``)."""

    code: str | None = None
    tell: tuple[int, ...] = ()

    def handle(self, server: ServerConnection, event: object) -> None:
        if isinstance(event, CommandReceived) and isinstance(event.command, Append):
            if self.tell:
                assert server.mailbox is not None
                server.mailbox.appended(self.tell)
            server.send(Complete(code=self.code))
        else:
            super().handle(server, event)


APPEND = b"p APPEND inbox {3+}\r\nabc\r\n"


def test_appenduid_tells_the_view_and_exists_goes_out() -> None:
    result, server = both(APPEND, route=SELECT, app=Appender(code="APPENDUID 38505 3955"))
    assert result.lines == [b"* 6 EXISTS", b"p OK [APPENDUID 38505 3955] APPEND completed"]
    assert server.mailbox is not None and server.mailbox.uid(6) == 3955


def test_multiappend_uid_range() -> None:
    data = b"p APPEND INBOX {1+}\r\na {1+}\r\nb\r\n"
    result, _ = both(data, route=SELECT, app=Appender(code="APPENDUID 1 7:8"))
    assert result.lines[0] == b"* 7 EXISTS"


def test_the_application_may_tell_the_view_itself() -> None:
    result, _ = both(APPEND, route=SELECT, app=Appender(tell=(6,)))
    assert result.lines == [b"* 6 EXISTS", b"p OK APPEND completed"]
    # both ways at once: the UIDs the view knows are not told twice
    result, _ = both(APPEND, route=SELECT, app=Appender(tell=(6,), code="APPENDUID 1 6"))
    assert result.lines[0] == b"* 6 EXISTS" and len(result.lines) == 2


def test_a_forgotten_append_is_refused() -> None:
    server = new()
    run(server, SELECT)
    with pytest.raises(LocalProtocolError, match="APPENDUID"):
        run(server, APPEND, Appender())
    assert server.mailbox is not None
    server.mailbox.appended([6])  # the application repairs its answer
    server.send(Complete())
    assert server.data_to_send() == b"* 6 EXISTS\r\np OK APPEND completed\r\n"


def test_append_elsewhere_needs_no_uid() -> None:
    result, _ = both(b"p APPEND Sent {3+}\r\nabc\r\n", route=SELECT, app=Appender())
    assert result.lines == [b"p OK APPEND completed"]


def test_appenduid_parsing() -> None:
    assert appenduid(None) is None and appenduid("TRYCREATE") is None
    assert appenduid("APPENDUID 1 5,3:4") == [3, 4, 5]
    for bad in ("APPENDUID 1 x", "APPENDUID 1 4:*", "APPENDUID 1 1:200000"):
        with pytest.raises(LocalProtocolError):
            appenduid(bad)


# --- IMAP4rev2 (RFC 9051) ---------------------------------------------------------------

REV2 = LOGIN + b"e ENABLE IMAP4rev2\r\n" + b"a1 SELECT INBOX\r\n"


def test_lsub_is_for_rev1_sessions_only() -> None:
    result, _ = both(b'l LSUB "" *\r\n', route=LOGIN)
    assert result.lines == [b"l OK LSUB completed"]
    result, _ = both(b'l LSUB "" *\r\n', route=LOGIN + b"e ENABLE IMAP4rev2\r\n")
    assert result.lines[0].startswith(b"l BAD LSUB is not part of IMAP4rev2")


@pytest.mark.parametrize(
    "line", [b"* 3 RECENT", b'* LSUB () "/" INBOX', b"* SEARCH 1 2", b"* search"]
)
def test_rev1_responses_are_refused_in_a_rev2_session(line: bytes) -> None:
    server = new()
    run(server, SELECT)
    server.send(frame(line))  # fine for an IMAP4rev1 session
    server = new()
    run(server, REV2)
    with pytest.raises(LocalProtocolError, match="IMAP4rev2"):
        server.send(frame(line))
    with pytest.raises(LocalProtocolError, match="IMAP4rev2"):
        server.send(Untagged(response=RecentData(count=1)))


@dataclass
class Searcher(App):
    numbers: tuple[int, ...] = (2, 3, 4, 9)

    def handle(self, server: ServerConnection, event: object) -> None:
        if isinstance(event, CommandReceived) and isinstance(event.command, Search):
            server.send(Untagged(response=SearchData(numbers=self.numbers)))
            server.send(Complete())
        else:
            super().handle(server, event)


def test_search_results_become_esearch_in_rev2() -> None:
    result, _ = both(b"s SEARCH ALL\r\n", route=SELECT, app=Searcher())
    assert result.lines[0] == b"* SEARCH 2 3 4 9"
    result, _ = both(b"s UID SEARCH ALL\r\n", route=REV2, app=Searcher())
    assert result.lines[0] == b'* ESEARCH (TAG "s") UID ALL 2:4,9'
    result, _ = both(b"s SEARCH ALL\r\n", route=REV2, app=Searcher(numbers=()))
    assert result.lines[0] == b'* ESEARCH (TAG "s")'  # RFC 9051 §6.4.4: no ALL


# --- UTF8=ACCEPT and UTF8=ONLY (RFC 6855) ---------------------------------------------------


def test_8bit_response_lines_need_utf8() -> None:
    line = "* OK [ALERT] Größe".encode()
    server = new(UTF8_CONFIG)
    run(server, LOGIN)
    with pytest.raises(LocalProtocolError, match="RFC 6855"):
        server.send(frame(line))
    run(server, b"e ENABLE UTF8=ACCEPT\r\n")
    server.send(frame(line))
    assert server.data_to_send() == line + b"\r\n"


def test_8bit_quoted_mailbox_needs_utf8() -> None:
    command = 'c SELECT "Entwürfe"\r\n'.encode()
    result, _ = both(command, route=LOGIN, config=UTF8_CONFIG)
    assert result.lines[0].startswith(b"c BAD")
    app = App()
    route = LOGIN + b"e ENABLE UTF8=ACCEPT\r\n"
    result, _ = both(command, route=route, config=UTF8_CONFIG, app=app)
    selects = [e for e in app.log if isinstance(e, CommandReceived)]
    assert isinstance(selects[-1].command, Select) and selects[-1].command.mailbox == "Entwürfe"


def test_search_charset_after_utf8_accept_is_bad() -> None:
    route = LOGIN + b"e ENABLE UTF8=ACCEPT\r\ns SELECT INBOX\r\n"
    result, _ = both(b"t SEARCH CHARSET UTF-8 ALL\r\n", route=route, config=UTF8_CONFIG)
    assert result.lines[0].startswith(b"t BAD No CHARSET")
    result, _ = both(b"t SEARCH CHARSET UTF-8 ALL\r\n", route=REV2)
    assert result.lines == [b"t OK SEARCH completed"]  # IMAP4rev2 keeps CHARSET


def test_utf8_only_refuses_mailbox_commands_until_enabled() -> None:
    config = ServerConfig(allow_plaintext_login=True, extensions=("IMAP4rev1", "UTF8=ONLY"))
    result, server = both(b"s SELECT INBOX\r\n", route=LOGIN, config=config)
    assert result.lines == [b"s NO [CANNOT] ENABLE UTF8=ACCEPT first"]
    assert server.state is State.AUTHENTICATED
    result, server = both(b"e ENABLE UTF8=ACCEPT\r\ns SELECT INBOX\r\n", route=LOGIN, config=config)
    assert result.lines[0] == b"* ENABLED UTF8=ACCEPT"
    assert server.state is State.SELECTED


def test_enable_extensions_must_be_announced() -> None:
    with pytest.raises(LocalProtocolError, match="not in extensions"):
        ServerConfig(enable_extensions=("X-GOOD-IDEA",))
    config = ServerConfig(
        allow_plaintext_login=True,
        extensions=(*DEFAULT_EXTENSIONS, "X-GOOD-IDEA"),
        enable_extensions=("x-good-idea",),
    )
    result, server = both(b"e ENABLE X-GOOD-IDEA\r\n", route=LOGIN, config=config)
    assert result.lines[0] == b"* ENABLED X-GOOD-IDEA" and "X-GOOD-IDEA" in server.enabled


def test_modseq_key_inside_and() -> None:
    _, server = both(b"f SEARCH (ALL MODSEQ 5)\r\n", route=SELECT)
    assert "CONDSTORE" in server.enabled


def test_utf8_only_implies_utf8_accept_is_enableable() -> None:
    config = ServerConfig(extensions=("IMAP4rev1", "UTF8=ONLY"))
    assert "UTF8=ACCEPT" in config.enableable() and config.utf8_only
    assert not ServerConfig().utf8_only


def test_literal_capability_keeps_its_place() -> None:
    config = ServerConfig(extensions=("IMAP4rev1", "LITERAL+", "IDLE"), literal_plus=False)
    server = ServerConnection(config)
    assert server.capabilities()[:3] == ["IMAP4rev1", "LITERAL-", "IDLE"]
