"""The SMTP core's fast paths give exactly what the general code gives.

Each shortcut (the one-pattern path parser and its cache, the quick split of a path from
its parameters, the shared constant replies and their cached bytes, the per-configuration
EHLO keywords, the empty-parameter shortcut, the common ``Accept()`` answer) is checked
against the long way on the same input."""

from __future__ import annotations

import contextlib
import dataclasses
import pickle
import re
from collections.abc import Iterator
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents.smtp import _address
from mailagents.smtp import _replies as replies
from mailagents.smtp import _server as server
from mailagents.smtp._address import (
    AddressError,
    Path,
    parse_forward_path,
    parse_path,
    parse_reverse_path,
    split_path_and_parameters,
)
from mailagents.smtp._config import ServerConfig
from mailagents.smtp._events import NEED_DATA, Accept, MailFrom, RcptTo, Reject
from mailagents.smtp._params import (
    MailParameters,
    RcptParameters,
    parse_mail_parameters,
    parse_rcpt_parameters,
)
from mailagents.smtp._reply import Reply
from mailagents.smtp._server import ServerConnection

from .helpers import codes, feed, pump

NEVER = re.compile(r"(?!)")


@contextlib.contextmanager
def long_way() -> Iterator[None]:
    """Parse paths with the full grammar only: no pattern shortcut, no cache."""
    with mock.patch.object(_address, "_SIMPLE_PATH", NEVER), \
            mock.patch.object(_address, "_SIMPLE_PATHS", {}):
        yield


def outcome(text: str, **flags: bool) -> tuple[str, str, str] | str:
    """What parse_path makes of ``text``: the mailbox's parts and written form, or the
    error message."""
    try:
        path = parse_path(text, **flags)
    except AddressError as exc:
        return f"error: {exc}"
    mailbox = path.mailbox
    if mailbox is None:
        return ("", "", str(path))
    return (mailbox.local_part, mailbox.domain, str(path))


def both_ways(text: str, **flags: bool) -> tuple[object, object]:
    _address._SIMPLE_PATHS.clear()
    fast = outcome(text, **flags)
    cached = outcome(text, **flags)  # a second time: from the cache if it was simple
    assert cached == fast
    with long_way():
        slow = outcome(text, **flags)
    return fast, slow


EDGES = [
    "<user@example.com>",
    "<User.Name+tag@Example.COM>",
    "<a@b>",
    "<!#$%&'*+-/=?^_`{|}~@example.com>",
    "<a@a-b.c-d.example>",
    "<" + "l" * 64 + "@example.com>",  # the longest local part
    "<" + "l" * 65 + "@example.com>",  # one octet too long
    "<u@" + "d" * 63 + ".example>",  # the longest label
    "<u@" + "d" * 64 + ".example>",  # one octet too long
    "<u@" + ".".join(["a" * 60] * 4) + ">",  # 244 octets of domain: within 255
    "<" + "l" * 64 + "@" + ".".join(["d" * 61] * 3) + ".dddd>",  # 256 octets of path
    "<" + "l" * 64 + "@" + ".".join(["d" * 61] * 3) + ".ddddd>",  # 257: too long
    "<a..b@example.com>",
    "<.a@example.com>",
    "<a.@example.com>",
    "<a@-example.com>",
    "<a@example-.com>",
    "<a@example..com>",
    "<a@example.com.>",
    "<a@.example.com>",
    "<a@exa_mple.com>",
    "<a@b@c>",
    "<postmaster>",
    "<Postmaster>",
    "<>",
    "<@a.example,@b.example:u@c.example>",
    '<"a b"@example.com>',
    "<u@[192.0.2.1]>",
    "<u@[IPv6:2001:db8::1]>",
    "<ü@example.com>",
    "<u@exämple.com>",
    "<u@example.com",
    "u@example.com>",
    "<a\x00b@example.com>",
    "<a b@example.com>",
]


@pytest.mark.parametrize("text", EDGES)
@pytest.mark.parametrize(
    "flags",
    [{}, {"allow_null": True}, {"allow_postmaster": True}, {"utf8": True}],
    ids=["plain", "null", "postmaster", "utf8"],
)
def test_fast_path_parser_agrees_with_the_grammar(text: str, flags: dict[str, bool]) -> None:
    fast, slow = both_ways(text, **flags)
    assert fast == slow


ADDRESS_CHARS = "aZ09.-_+@<>\"[]:,\\ !#~é\x01"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=ADDRESS_CHARS, max_size=40), st.booleans(), st.booleans())
def test_any_path_text_parses_the_same_either_way(text: str, utf8: bool, null: bool) -> None:
    fast, slow = both_ways("<" + text + ">", utf8=utf8, allow_null=null)
    assert fast == slow
    fast, slow = both_ways(text, utf8=utf8)
    assert fast == slow


@settings(max_examples=200, deadline=None)
@given(
    st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,70}(\.[A-Za-z0-9-]{1,5}){0,3}",
                  fullmatch=True),
    st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,64}[A-Za-z0-9])?(\.[a-z0-9-]{1,10}){0,3}",
                  fullmatch=True),
)
def test_generated_plain_addresses_parse_the_same_either_way(local: str, domain: str) -> None:
    fast, slow = both_ways(f"<{local}@{domain}>")
    assert fast == slow


def test_cached_paths_are_shared_and_bounded() -> None:
    _address._SIMPLE_PATHS.clear()
    first = parse_forward_path("<a@example.test>")
    assert parse_reverse_path("<a@example.test>") is first
    for i in range(_address._SIMPLE_PATHS_MAX + 10):
        parse_path(f"<u{i}@example.test>")
    assert len(_address._SIMPLE_PATHS) <= _address._SIMPLE_PATHS_MAX
    # Paths are immutable values: equal and hashed alike however they were made.
    assert parse_path("<a@EXAMPLE.test>") == first
    with long_way():
        assert parse_path("<a@example.test>") == first
        assert hash(parse_path("<a@example.test>")) == hash(first)


SPLITS = [
    "<a@b>",
    "<a@b> SIZE=10",
    "  <a@b>   BODY=8BITMIME  SIZE=1 ",
    '<"a> b"@x> SIZE=1',
    '<"a\\"> b"@x>',
    "<u@[x-tag:some>content]> X=1",
    "<a@b>x",
    "<a@b",
    '<"a@b>',
    "<u@[1.2.3.4>",
    "a@b>",
    "<>",
    "<> SIZE=5",
]


@pytest.mark.parametrize("text", SPLITS)
def test_split_shortcut_agrees_with_the_scan(text: str) -> None:
    def split() -> object:
        try:
            return split_path_and_parameters(text)
        except AddressError as exc:
            return f"error: {exc}"

    fast = split()
    # Whether the scan ran: it must when a quote or a bracket may hide the ">".
    with mock.patch.object(_address, "_path_end", wraps=_address._path_end) as scan:
        assert split() == fast
    stripped = text.lstrip(" ")
    head = stripped[: stripped.find(">")] if ">" in stripped else stripped
    if stripped.startswith("<") and ('"' in head or "[" in head or ">" not in stripped):
        assert scan.called
    assert fast == _scan_split(text)


def _scan_split(argument: str) -> object:
    """split_path_and_parameters as the plain scan does it."""
    text = argument.lstrip(" ")
    if not text.startswith("<"):
        return "error: path must be enclosed in angle brackets"
    try:
        i = _address._path_end(text)
    except AddressError as exc:
        return f"error: {exc}"
    path, rest = text[: i + 1], text[i + 1 :]
    if rest and not rest.startswith(" "):
        return "error: path must be followed by a space or the end of the line"
    return path, rest.strip(" ")


# --- replies -----------------------------------------------------------------------


def test_constant_replies_are_shared_and_their_bytes_cached() -> None:
    assert replies.reply(250, "2.0.0", "OK") is replies.reply(250, "2.0.0", "OK")
    reply = replies.reply(250, "2.1.0", "Sender OK")
    assert reply._server_bytes(False) == b"250 Sender OK\r\n"
    assert reply._server_bytes(True) == b"250 2.1.0 Sender OK\r\n"
    assert reply._server_bytes(True) is reply._server_bytes(True)  # computed once
    plain = Reply(code=550, lines=("No",))
    assert plain._server_bytes(True) == b"550 5.0.0 No\r\n"  # RFC 3463 §3.1 generic code
    assert plain._server_bytes(False) == b"550 No\r\n"
    assert Reply(code=354, lines=("Go",))._server_bytes(True) == b"354 Go\r\n"


def test_cached_reply_bytes_change_nothing_a_user_sees() -> None:
    # The cache lives in the reply: not in its repr, equality or hash; a copy made with
    # dataclasses.replace gets its own bytes.
    reply = Reply(code=550, enhanced="5.7.1", lines=("no",))
    twin = Reply(code=550, enhanced="5.7.1", lines=("no",))
    reply._server_bytes(True)
    assert reply == twin and hash(reply) == hash(twin)
    assert repr(reply) == repr(twin)
    other = dataclasses.replace(reply, lines=("other",))
    assert other._server_bytes(True) == b"550 5.7.1 other\r\n"
    assert pickle.loads(pickle.dumps(reply)) == reply


def test_a_config_computes_its_session_profile_once() -> None:
    cfg = ServerConfig(hostname="mx.example", starttls=True, requiretls=True)
    assert cfg._profile.greeting._server_bytes(False) == b"220 mx.example ESMTP mailagents\r\n"
    plain, tls = cfg._profile.ehlo
    assert "STARTTLS" in plain[1] and "REQUIRETLS" not in plain[1]
    assert "STARTTLS" not in tls[1] and "REQUIRETLS" in tls[1]
    # Two sessions share the configuration's profile; a changed copy has its own.
    first, second = ServerConnection(cfg), ServerConnection(cfg)
    assert first._ehlo is second._ehlo is cfg._profile.ehlo
    assert dataclasses.replace(cfg, starttls=False)._profile.ehlo[0][1] == tls[1] - {
        "REQUIRETLS"
    }


def test_application_replies_keep_their_text_in_the_session() -> None:
    conn = ServerConnection(ServerConfig(hostname="mx.test"))
    conn.data_to_send()
    conn.receive_data(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\n")
    seen: list[str] = []

    def policy(event: object) -> Accept | Reject | None:
        if isinstance(event, RcptTo):
            seen.append(str(event.path))
            text = f"no {len(seen)}"
            return Reject(reply=Reply(code=550, lines=(text,)))
        return Accept() if isinstance(event, MailFrom) or hasattr(event, "domain") else None

    pump(conn, policy)
    out = conn.data_to_send()
    assert out.endswith(b"250 2.1.0 Sender OK\r\n550 5.0.0 no 1\r\n550 5.0.0 no 2\r\n")


# --- EHLO keywords per configuration -----------------------------------------------------


def ehlo(config: ServerConfig, *, tls: bool = False) -> bytes:
    conn = ServerConnection(config)
    conn.data_to_send()
    conn._tls = tls
    conn.receive_data(b"EHLO client.test\r\n")
    event = conn.next_event()
    conn.send(Accept())
    assert event is not NEED_DATA
    return conn.data_to_send()


def test_ehlo_keywords_follow_the_configuration_and_tls_state() -> None:
    base = ServerConfig(hostname="mx.test", starttls=True, auth_mechanisms=("PLAIN",),
                        requiretls=True)
    clear = ehlo(base)
    secure = ehlo(base, tls=True)
    assert b"STARTTLS" in clear and b"STARTTLS" not in secure
    assert b"AUTH PLAIN" not in clear and b"AUTH PLAIN" in secure
    assert b"REQUIRETLS" in secure and b"REQUIRETLS" not in clear
    assert ehlo(base) == clear  # the cached keywords
    other = ServerConfig(hostname="mx.test", chunking=False, max_message_size=None)
    reply = ehlo(other)
    assert b"CHUNKING" not in reply and b"250-SIZE\r\n" in reply
    # Equal configurations that are distinct objects give the same reply.
    assert ehlo(ServerConfig(hostname="mx.test", chunking=False, max_message_size=None)) == reply
    for _ in range(100):  # more configurations than the cache holds
        ehlo(ServerConfig(hostname="mx.test", max_recipients=200))
    assert ehlo(base, tls=True) == secure


# --- parameters and the common answer ----------------------------------------------------


def test_no_parameters_is_what_the_parsers_give_for_none() -> None:
    assert parse_mail_parameters("", extensions=["SIZE"]) == server._NO_MAIL_PARAMETERS
    assert parse_rcpt_parameters("", extensions=["DSN"]) == server._NO_RCPT_PARAMETERS
    assert MailParameters() == server._NO_MAIL_PARAMETERS
    assert RcptParameters() == server._NO_RCPT_PARAMETERS


@pytest.mark.parametrize("lmtp", [False, True])
def test_plain_accept_and_accept_subclass_answer_alike(lmtp: bool) -> None:
    class MyAccept(Accept):
        """Not the exact type: takes the general path."""

    def session(answer: Accept) -> bytes:
        config = ServerConfig(hostname="mx.test", lmtp=lmtp)
        conn = ServerConnection(config)
        hello = b"LHLO" if lmtp else b"EHLO"
        feed(conn, hello + b" c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
                   b"RCPT TO:<e@f>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n", lambda event: answer)
        return conn.data_to_send()

    fast = session(Accept())
    assert fast == session(MyAccept())
    expected = [220, 250, 250, 250, 250, 354, 250] + ([250] if lmtp else []) + [221]
    assert codes(fast) == expected


def test_paths_in_events_are_the_parsed_values() -> None:
    conn = ServerConnection(ServerConfig())
    conn.receive_data(b"EHLO c\r\nMAIL FROM:<a.b@Example.TEST>\r\nRCPT TO:<c@d.test> \r\n")
    events = pump(conn)
    mail = next(e for e in events if isinstance(e, MailFrom))
    rcpt = next(e for e in events if isinstance(e, RcptTo))
    assert mail.path == Path(_address.Mailbox("a.b", "example.test"))
    assert mail.path.mailbox is not None and mail.path.mailbox.domain == "Example.TEST"
    assert mail.parameters == MailParameters() and rcpt.parameters == RcptParameters()
    assert str(rcpt.path) == "<c@d.test>"


# --- what a session derives from its configuration, once per configuration --------------


def greeting(config: ServerConfig | None) -> bytes:
    return ServerConnection(config).data_to_send()


def test_greeting_and_limits_follow_each_configuration() -> None:
    assert greeting(None) == b"220 localhost ESMTP mailagents\r\n"
    one = ServerConfig(hostname="one.test")
    two = ServerConfig(hostname="two.test", greeting_text="", max_line=2000,
                       enhanced_status_codes=False)
    assert greeting(one) == b"220 one.test ESMTP mailagents\r\n"
    assert greeting(two) == b"220 two.test\r\n"
    for _ in range(100):  # more configurations than the cache holds, made and dropped
        greeting(ServerConfig(hostname="other.test", max_recipients=150))
    assert greeting(one) == b"220 one.test ESMTP mailagents\r\n"
    for config in (one, two, ServerConfig(auth_mechanisms=("PLAIN",), max_auth_line=600)):
        conn = ServerConnection(config)
        assert conn._command_limit == config.command_line_limit
        assert conn._short_line == min(config.max_line, config.max_auth_line)
        assert conn._line_bound == max(config.command_line_limit, config.max_auth_line)
        assert conn._enhanced == (config.enhanced_status_codes or config.lmtp)
    # Enhanced codes off: the replies say so, and the greeting never has one anyway.
    conn = ServerConnection(two)
    conn.receive_data(b"NOOP\r\n")
    pump(conn)
    assert conn.data_to_send().endswith(b"\r\n250 OK\r\n")


def test_a_given_greeting_still_replaces_the_configured_one() -> None:
    config = ServerConfig(hostname="mx.test")
    busy = Reply(code=421, enhanced="4.3.2", lines=("mx.test busy",))
    assert ServerConnection(config, greeting=busy).data_to_send() == b"421 mx.test busy\r\n"
    assert greeting(config) == b"220 mx.test ESMTP mailagents\r\n"
