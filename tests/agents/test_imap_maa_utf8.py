"""UTF8=ACCEPT on the store-backed IMAP server (RFC 6855, as revised by RFC 9755):
the announcement, ENABLE, UTF-8 mailbox names and quoted strings, the APPEND rule for
8-bit headers (mailagents/agents/_imap_append.py) and the UTF8 APPEND data extension
(the core's parser and writer, mailagents/imap/_command_parser.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents._protocol import LocalProtocolError
from mailagents.agents._imap_append import eight_bit_header
from mailagents.agents._imap_session import IMAP_EXTENSIONS, imap_config
from mailagents.imap import commands as c
from mailagents.imap._command_parser import CommandSyntaxError, parse_command
from mailagents.imap._command_writer import write_command
from mailagents.imap._frame import Frame
from mailagents.store import Store
from tests.agents.test_imap_maa_rules import Wire, lists, tagged
from tests.agents.test_imap_session import make_store, serve

UTF8_MESSAGE = "From: jörg@example.test\r\nSubject: Grüße\r\n\r\nHallo\r\n".encode()
ASCII_HEADER = "From: a@example.test\r\nSubject: hi\r\n\r\nGrüße im Text\r\n".encode()


@pytest.fixture(params=["maildir", "mbox"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    gen = make_store(request.param, tmp_path)
    yield next(gen)
    for _ in gen:
        pass


def logged_in(port: int, *enable: str) -> Wire:
    wire = Wire(port)
    wire.login()
    if enable:
        lines = wire.command("ENABLE " + " ".join(enable))
        assert tagged(lines).startswith(b"t2 OK"), lines
        assert any(line.startswith(b"* ENABLED ") for line in lines), lines
    return wire


def append(wire: Wire, message: bytes, *, utf8: bool = False, plus: bool = False) -> list[bytes]:
    """APPEND INBOX, the message as a synchronising literal (or LITERAL+), in
    ``UTF8 (~{n})`` when ``utf8``."""
    wire.n += 1
    tag = f"t{wire.n}".encode()
    size = b"%d%s" % (len(message), b"+" if plus else b"")
    head = b"UTF8 (~{" + size + b"}" if utf8 else b"{" + size + b"}"
    wire.send(tag + b" APPEND INBOX " + head + b"\r\n")
    if not plus:
        go = wire.line()
        if not go.startswith(b"+"):
            return [go]
    wire.send(message + (b")" if utf8 else b"") + b"\r\n")
    return wire.until(tag)


def subjects(wire: Wire) -> bytes:
    lines = wire.command("SELECT INBOX")
    assert tagged(lines).split()[1] == b"OK", lines
    wire.send(b"f1 FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
    out = b""
    while True:
        line = wire.line()
        out += line
        if line.startswith(b"f1 ") or not line:
            return out


# --- the announcement and ENABLE ---------------------------------------------------------


def test_utf8_accept_is_announced_and_enabled(store: Store) -> None:
    def client(port: int) -> list[bytes]:
        wire = Wire(port)
        wire.login()
        lines = wire.command("CAPABILITY") + wire.command("ENABLE UTF8=ACCEPT")
        wire.close()
        return lines

    lines = serve(store, client, utf8_accept=True)
    caps = next(line for line in lines if line.startswith(b"* CAPABILITY "))
    assert b" UTF8=ACCEPT" in caps
    assert b"* ENABLED UTF8=ACCEPT\r\n" in lines


def test_utf8_mailbox_names_after_enable_and_mutf7_before(store: Store) -> None:
    def client(port: int) -> tuple[list[bytes], list[bytes], list[bytes], list[bytes]]:
        wire = logged_in(port, "UTF8=ACCEPT")
        create = wire.command('CREATE "Übersicht"'.encode())
        listed = wire.command('LIST "" "Ü*"'.encode())
        bad = wire.command(b'CREATE "\xc3("')  # not UTF-8
        wire.close()
        legacy = Wire(port)
        legacy.login()
        old = legacy.command('LIST "" *')
        legacy.close()
        return create, listed, bad, old

    create, listed, bad, old = serve(store, client, utf8_accept=True)
    assert tagged(create).startswith(b"t3 OK"), create
    assert lists(listed) == ['* LIST (\\HasNoChildren) "/" "Übersicht"\r\n'.encode()]
    assert tagged(bad).startswith(b"t5 BAD"), bad
    assert any(line.endswith(b' "/" &ANw-bersicht\r\n') for line in lists(old)), old


def test_search_with_charset_after_enable_is_bad(store: Store) -> None:
    def client(port: int) -> tuple[list[bytes], list[bytes]]:
        wire = logged_in(port, "UTF8=ACCEPT")
        assert tagged(wire.command("SELECT INBOX")).startswith(b"t3 OK")
        with_charset = wire.command("SEARCH CHARSET UTF-8 SUBJECT message")
        without = wire.command('SEARCH SUBJECT "message 2"')
        wire.close()
        return with_charset, without

    with_charset, without = serve(store, client, utf8_accept=True)
    assert tagged(with_charset).startswith(b"t4 BAD")  # RFC 6855 §3
    assert b"* SEARCH 2\r\n" in without


@pytest.mark.parametrize(
    "name", ["Line\u2028Separator", "Para\u2029graph", "C1\u0085control", "DEL\x7f"]
)
def test_names_outside_net_unicode_are_refused(store: Store, name: str) -> None:
    def client(port: int) -> list[bytes]:
        wire = logged_in(port, "UTF8=ACCEPT")
        lines = wire.command(b'CREATE "' + name.encode() + b'"')
        wire.close()
        return lines

    lines = serve(store, client, utf8_accept=True)
    assert re.match(rb"t3 (NO \[CANNOT\]|BAD) ", tagged(lines)), lines


# --- APPEND ------------------------------------------------------------------------------


@pytest.mark.parametrize("plus", [False, True])
def test_append_utf8_data_extension_after_enable(store: Store, plus: bool) -> None:
    def client(port: int) -> tuple[list[bytes], bytes]:
        wire = logged_in(port, "UTF8=ACCEPT")
        lines = append(wire, UTF8_MESSAGE, utf8=True, plus=plus)
        got = subjects(wire)
        wire.close()
        return lines, got

    lines, got = serve(store, client, utf8_accept=True)
    assert re.match(rb"t3 OK \[APPENDUID \d+ 4\]", tagged(lines)), lines
    assert "Subject: Grüße".encode() in got


def test_append_of_8bit_header_without_enable_is_no(store: Store) -> None:
    """RFC 6855 §4 (RFC 9755 §4): UTF8=ACCEPT announced, not enabled: an 8-bit header
    is refused with NO; an 8-bit body under an ASCII header is taken."""

    def client(port: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
        wire = logged_in(port)
        refused = append(wire, UTF8_MESSAGE)
        taken = append(wire, ASCII_HEADER)
        status = wire.command("STATUS INBOX (MESSAGES)")
        wire.close()
        return refused, taken, status

    refused, taken, status = serve(store, client, utf8_accept=True)
    assert tagged(refused).startswith(b"t2 NO "), refused
    assert tagged(taken).startswith(b"t3 OK"), taken
    assert any(b"(MESSAGES 4)" in line for line in status), status


def test_append_of_8bit_header_in_rev2_is_taken(store: Store) -> None:
    def client(port: int) -> tuple[list[bytes], bytes]:
        wire = logged_in(port, "IMAP4rev2")
        lines = append(wire, UTF8_MESSAGE)
        got = subjects(wire)
        wire.close()
        return lines, got

    lines, got = serve(store, client)
    assert tagged(lines).startswith(b"t3 OK"), lines
    assert "Subject: Grüße".encode() in got


def test_by_default_8bit_headers_are_taken_and_utf8_data_is_bad(store: Store) -> None:
    """Without ``utf8_accept`` (the default) UTF8=ACCEPT is not announced: raw 8-bit
    headers are stored as they come (mbsync and other IMAP4rev1 clients upload such
    messages without ENABLE); the UTF8 data extension is not known."""

    def client(port: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
        wire = logged_in(port)
        caps = wire.command("CAPABILITY")
        taken = append(wire, UTF8_MESSAGE)
        refused = append(wire, UTF8_MESSAGE, utf8=True, plus=True)
        wire.close()
        return caps, taken, refused

    caps, taken, refused = serve(store, client)
    assert not any(b"UTF8=ACCEPT" in line for line in caps)
    assert tagged(taken).startswith(b"t3 OK"), taken
    assert tagged(refused).startswith(b"t4 BAD"), refused


def test_imap_config_utf8_accept() -> None:
    assert "UTF8=ACCEPT" not in IMAP_EXTENSIONS
    assert "UTF8=ACCEPT" not in imap_config().extensions
    assert "UTF8=ACCEPT" in imap_config(utf8_accept=True).extensions
    assert "UTF8=ACCEPT" in imap_config(utf8_accept=True).enableable()


# --- the header scan and the core's grammar ------------------------------------------


def _reference(message: bytes) -> bool:
    header = re.split(rb"\r?\n\r?\n", b"\n" + message, maxsplit=1)[0]
    return any(b >= 0x80 for b in header)


@given(
    st.lists(
        st.sampled_from([b"a", b"\r\n", b"\n", b"\r", b"\xc3\xa9", b": ", b"\x80"]),
        max_size=40,
    ),
    st.integers(min_value=1, max_value=7),
)
def test_eight_bit_header_in_any_chunking(parts: list[bytes], size: int) -> None:
    message = b"".join(parts)
    chunks = [message[i : i + size] for i in range(0, len(message), size)]
    assert eight_bit_header(chunks) is _reference(message)


def test_eight_bit_header_examples() -> None:
    assert eight_bit_header([UTF8_MESSAGE])
    assert not eight_bit_header([ASCII_HEADER])
    assert not eight_bit_header([b"\r\n\xc3\xa9 body only"])
    assert eight_bit_header([b"Subject: \xc3\xa9 and no empty line"])
    assert not eight_bit_header([])


def test_core_parses_and_writes_the_utf8_data_extension() -> None:
    frame = Frame(lines=(b"a APPEND INBOX (\\Seen) UTF8 (~{3}", b")"), literals=(b"abc",))
    command = parse_command(frame, utf8=True)
    assert isinstance(command, c.Append)
    (message,) = command.messages
    assert message.utf8 and message.binary and message.data == b"abc"
    assert message.flags == ("\\Seen",)
    assert write_command(command, utf8=True, binary=True) == frame
    # MULTIAPPEND: a UTF8 message then a plain one.
    two = Frame(lines=(b"b APPEND INBOX utf8 (~{1}", b") {1}", b""), literals=(b"x", b"y"))
    parsed = parse_command(two, utf8=True)
    assert isinstance(parsed, c.Append)
    assert [m.utf8 for m in parsed.messages] == [True, False]


@pytest.mark.parametrize(
    "lines",
    [
        (b"a APPEND INBOX UTF8 ({3}", b")"),  # a literal8 is required
        (b"a APPEND INBOX UTF8 (~{3}", b""),  # the ")" is missing
        (b"a APPEND INBOX UTF8 ~{3}", b""),  # the "(" is missing
    ],
)
def test_core_refuses_a_malformed_utf8_data_extension(lines: tuple[bytes, bytes]) -> None:
    with pytest.raises(CommandSyntaxError):
        parse_command(Frame(lines=lines, literals=(b"abc",)), utf8=True)


def test_append_message_model_checks_utf8_needs_literal8() -> None:
    with pytest.raises(LocalProtocolError):
        c.AppendMessage(data=b"abc", utf8=True)


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed")
@pytest.mark.parametrize("utf8_accept", [False, True])
def test_mbsync_uploads_8bit_headers_unless_utf8_accept_is_announced(
    store: Store, tmp_path: Path, utf8_accept: bool
) -> None:
    """Why ``utf8_accept`` is off by default: mbsync (1.4) never ENABLEs UTF8=ACCEPT,
    so with the announcement its upload of a message with a raw UTF-8 header is
    refused (RFC 9755 §4); without it the message is stored."""
    local = tmp_path / "local"
    for sub in ("cur", "new", "tmp"):
        (local / "INBOX" / sub).mkdir(parents=True)
    (local / "INBOX" / "new" / "1.eight.host").write_bytes(UTF8_MESSAGE.replace(b"\r\n", b"\n"))
    (local / "INBOX" / "new" / "2.plain.host").write_bytes(ASCII_HEADER.replace(b"\r\n", b"\n"))
    rc = tmp_path / "mbsyncrc"

    def client(port: int) -> subprocess.CompletedProcess[str]:
        rc.write_text(
            f"IMAPAccount server\nHost 127.0.0.1\nPort {port}\nUser user\nPass secret\n"
            "SSLType None\nAuthMechs LOGIN\n\nIMAPStore far\nAccount server\n\n"
            f"MaildirStore near\nPath {local}/\nInbox {local}/INBOX\n\n"
            "Channel c\nFar :far:\nNear :near:\nPatterns INBOX\nSync Push\n"
            "SyncState *\n"
        )
        return subprocess.run(
            ["mbsync", "-c", str(rc), "-a"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "HOME": str(tmp_path)},
        )

    done = serve(store, client, utf8_accept=utf8_accept)
    output = done.stdout + done.stderr
    with store.folder("INBOX") as inbox:
        texts = []
        for info in inbox.messages():
            with inbox.open_message(info.uid) as stream:
                texts.append(stream.read())
    eight = [t for t in texts if "Subject: Grüße".encode() in t]
    plain = [t for t in texts if b"Subject: hi\r\n" in t]
    assert len(plain) == 1, output  # the ASCII header is uploaded either way
    if utf8_accept:
        assert not eight and "8-bit header fields need ENABLE UTF8=ACCEPT" in output
    else:
        assert len(eight) == 1, output
