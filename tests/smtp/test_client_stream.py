"""The SMTP client core's streaming mode: ``send_mail(..., message=None)`` with the
content fed by ``send_content`` and ``end_content``. The property the whole mode rests
on: however the content is cut, the octets on the wire and the result are those of
the whole message given as bytes, for DATA and BDAT, SMTP and LMTP."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailagents._protocol import LocalProtocolError
from mailagents.smtp._client_mail import BdatContent, bdat_chunks
from mailagents.smtp._config import ServerConfig
from mailagents.smtp._data import DotStuffer, LineEndNormalizer, dot_stuff, normalize_line_ends
from mailagents.smtp._events import (
    DataChunk,
    LMTPReplies,
    MessageComplete,
    RcptTo,
    Reject,
)
from mailagents.smtp._params import MailParameters
from mailagents.smtp._reply import Reply
from mailagents.smtp._server import Decision, ServerConnection, ServerEvent
from mailagents.smtp.client import (
    ClientConnection,
    ClientEvent,
    Greeting,
    Response,
    TransactionResult,
)

from .helpers import accept_all, pump
from .test_client import P, events, r, ready

CONTENT = st.binary(max_size=60) | st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"..", b"a", b"\xff", b"\x00"]), max_size=30
).map(b"".join)


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in pairwise(edges)]


# --- the streaming transformers of _data ----------------------------------------------


@given(CONTENT, st.lists(st.integers(min_value=0, max_value=60), max_size=8))
def test_stuffer_and_normalizer_are_cut_independent(body: bytes, cuts: list[int]) -> None:
    pieces = cut(body, cuts)
    stuffer = DotStuffer()
    stuffed = b"".join(stuffer.feed(p) for p in pieces) + stuffer.end()
    assert stuffed == dot_stuff(body)
    normalizer = LineEndNormalizer()
    assert b"".join(normalizer.feed(p) for p in pieces) == normalize_line_ends(body)
    assert normalizer.at_line_start is (not body or normalize_line_ends(body).endswith(b"\n"))


def test_stuffer_across_cuts() -> None:
    stuffer = DotStuffer()
    # A CRLF split, a period starting the next piece, a bare CR then LF in the next.
    pieces = [b"a\r", b"\n", b".b\r", b".c\n", b"", b".", b"\n.."]
    out = b"".join(stuffer.feed(p) for p in pieces) + stuffer.end()
    assert out == b"a\r\n..b\r\n..c\r\n..\r\n...\r\n"
    assert out == dot_stuff(b"".join(pieces))
    assert DotStuffer().end() == b""  # an empty body stays empty


@given(
    CONTENT,
    st.lists(st.integers(min_value=0, max_value=60), max_size=8),
    st.integers(min_value=1, max_value=9),
    st.booleans(),
)
def test_bdat_regrouping_is_cut_independent(
    body: bytes, cuts: list[int], chunk_size: int, binary: bool
) -> None:
    content = BdatContent(chunk_size, binary=binary)
    frames: list[bytes] = []
    for piece in cut(body, cuts):
        frames += content.feed(piece)
        # Held back between calls: at most one chunk.
        assert len(content._pending) <= chunk_size
    frames.append(content.end())
    expected = body if binary else normalize_line_ends(body)
    assert frames == bdat_chunks(expected, chunk_size)


# --- the property: streaming is the bytes mode, on the wire and in the result ---------


def drive(
    config: ServerConfig,
    message: bytes,
    pieces: list[bytes] | None,
    *,
    recipients: list[str],
    policy: Callable[[ServerEvent], Decision | None],
    **options: object,
) -> tuple[bytes, TransactionResult, bytes | None]:
    """One transaction against a server core in memory: the whole ``message``
    (``pieces`` None) or ``pieces`` fed as the core asks. Returns what the client
    wrote, its result, and the content the server received (None if none)."""
    server = ServerConnection(config)
    client = ClientConnection(lmtp=config.lmtp)
    wire = bytearray()
    received = bytearray()
    complete = False
    results: list[TransactionResult] = []
    queue = list(pieces) if pieces is not None else []
    size = None
    if pieces is not None and "SIZE" not in options:
        size = _bytes_mode_size(message, config, options)
    for _ in range(10_000):
        to_client = server.data_to_send()
        if to_client:
            client.receive_data(to_client)
        for event in client.events():
            on_event(event, client, message, pieces, recipients, results, size, options)
        if pieces is not None and client.wants_content:
            assert client.awaiting in ("CONTENT", "BDAT", "FINAL")
            if queue:
                client.send_content(queue.pop(0))
            else:
                client.end_content()
                assert not client.wants_content
        to_server = client.data_to_send()
        wire += to_server
        if to_server:
            server.receive_data(to_server)
        for event in pump(server, policy):
            if isinstance(event, DataChunk):
                received += event.data
            elif isinstance(event, MessageComplete):
                complete = True
        if results and not to_client and not to_server:
            return bytes(wire), results[0], bytes(received) if complete else None
    raise AssertionError("the session does not end")


def _bytes_mode_size(message: bytes, config: ServerConfig, options: dict[str, object]) -> int:
    """The size the bytes mode announces: the content after normalisation, plus the
    CRLF DATA adds (what a caller of the streaming mode is asked to give)."""
    params = options.get("parameters")
    bdat = config.chunking and options.get("use_bdat") is not False
    binary = (isinstance(params, MailParameters) and params.body == "BINARYMIME") or (
        not message.isascii() and bdat and not config.eightbitmime and config.binarymime
    )
    if binary:
        return len(message)
    content = normalize_line_ends(message)
    if not bdat and content and not content.endswith(b"\r\n"):
        content += b"\r\n"
    return len(content)


def on_event(
    event: ClientEvent,
    client: ClientConnection,
    message: bytes,
    pieces: list[bytes] | None,
    recipients: list[str],
    results: list[TransactionResult],
    size: int | None,
    options: dict[str, object],
) -> None:
    if isinstance(event, Greeting):
        client.hello("client.example")
    elif isinstance(event, Response) and event.command in ("EHLO", "LHLO"):
        if pieces is None:
            client.send_mail("a@example.com", recipients, message, **options)  # type: ignore[arg-type]
        else:
            client.send_mail(
                "a@example.com", recipients, None, size=size,
                eight_bit=not message.isascii(), **options,  # type: ignore[arg-type]
            )
    elif isinstance(event, TransactionResult):
        results.append(event)


def refuse_x(lmtp: bool) -> Callable[[ServerEvent], Decision | None]:
    """Refuse recipients whose local part starts with x; in LMTP the final replies
    refuse those starting with f."""

    def policy(event: ServerEvent) -> Decision | None:
        if isinstance(event, RcptTo):
            mailbox = event.path.mailbox
            if mailbox is not None and mailbox.local_part.startswith("x"):
                return Reject(reply=Reply(code=550, enhanced="5.1.1", lines=("no such user",)))
        if isinstance(event, MessageComplete) and lmtp:
            return LMTPReplies(
                replies=tuple(
                    Reply(code=452, enhanced="4.2.2", lines=("full",))
                    if rcpt.path.mailbox is not None
                    and rcpt.path.mailbox.local_part.startswith("f")
                    else Reply(code=250, enhanced="2.0.0", lines=("ok",))
                    for rcpt in event.envelope.recipients
                )
            )
        return accept_all(event)

    return policy


RECIPIENTS = st.lists(
    st.sampled_from(["b@example.org", "x@example.org", "f@example.org", "c@example.org"]),
    min_size=1,
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(
    CONTENT,
    st.lists(st.integers(min_value=0, max_value=60), max_size=8),
    st.booleans(),  # pipelining
    st.booleans(),  # chunking
    st.booleans(),  # lmtp
    st.booleans(),  # binarymime offered
    st.integers(min_value=1, max_value=9),
    RECIPIENTS,
)
def test_any_fragmentation_gives_the_bytes_mode_session(
    body: bytes,
    cuts: list[int],
    pipelining: bool,
    chunking: bool,
    lmtp: bool,
    binarymime: bool,
    chunk_size: int,
    recipients: list[str],
) -> None:
    config = ServerConfig(
        hostname="mx.example.net",
        lmtp=lmtp,
        pipelining=pipelining,
        chunking=chunking,
        binarymime=binarymime and chunking,
        eightbitmime=not binarymime,  # so that BINARYMIME gets chosen for 8-bit content
        max_text_line=None,
    )
    if not config.eightbitmime and not body.isascii() and not config.binarymime:
        with pytest.raises(LocalProtocolError):
            drive(config, body, None, recipients=recipients, policy=refuse_x(lmtp),
                  chunk_size=chunk_size)
        return
    whole = drive(config, body, None, recipients=recipients, policy=refuse_x(lmtp),
                  chunk_size=chunk_size)
    streamed = drive(config, body, cut(body, cuts), recipients=recipients, policy=refuse_x(lmtp),
                     chunk_size=chunk_size)
    assert streamed == whole
    wire, result, received = streamed
    if any(not r.startswith("x") for r in recipients):
        assert received is not None
    else:
        assert received is None and not result.accepted


@pytest.mark.parametrize("use_bdat", [False, True])
@pytest.mark.parametrize("pipelining", [False, True])
def test_a_large_message_in_pieces(use_bdat: bool, pipelining: bool) -> None:
    body = b"".join(b".line %d\n" % i for i in range(20_000))  # bare LFs, leading dots
    pieces = [body[i : i + 4096] for i in range(0, len(body), 4096)]
    config = ServerConfig(hostname="mx.example.net", pipelining=pipelining)
    whole = drive(config, body, None, recipients=["b@example.org"], policy=accept_all,
                  use_bdat=use_bdat, chunk_size=10_000)
    streamed = drive(config, body, pieces, recipients=["b@example.org"], policy=accept_all,
                     use_bdat=use_bdat, chunk_size=10_000)
    assert streamed == whole
    assert streamed[2] == normalize_line_ends(body)


# --- the conversation, step by step ---------------------------------------------------


def test_data_streaming_pipelined() -> None:
    conn = ready("PIPELINING", "SIZE 1000", "8BITMIME")
    conn.send_mail("a@example.com", ["b@example.org"], None, size=20)
    assert conn.data_to_send() == (
        b"MAIL FROM:<a@example.com> SIZE=20\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
    )
    assert not conn.wants_content and conn.awaiting == "MAIL"
    with pytest.raises(LocalProtocolError, match="no content"):
        conn.send_content(b"x")
    conn.receive_data(b"250 ok\r\n250 ok\r\n")
    assert events(conn) == [] and not conn.wants_content and conn.awaiting == "DATA"
    conn.receive_data(b"354 go\r\n")
    assert events(conn) == []
    assert conn.wants_content and conn.awaiting == "CONTENT"
    conn.send_content(b".hidden\r")
    # Back-pressure: no more until what the core has was taken.
    assert not conn.wants_content
    assert conn.data_to_send() == b"..hidden\r\n"
    assert conn.wants_content
    conn.send_content(memoryview(b"\n.x"))
    assert conn.data_to_send() == b"..x"
    conn.send_content(b"")
    conn.end_content()
    assert not conn.wants_content and conn.awaiting == "FINAL"
    assert conn.data_to_send() == b"\r\n.\r\n"
    with pytest.raises(LocalProtocolError):
        conn.end_content()
    conn.receive_data(b"250 2.0.0 queued\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult) and result.accepted == (P("b@example.org"),)
    assert result.recipients == (P("b@example.org"),)
    assert conn.awaiting is None


def test_data_streaming_without_pipelining_and_empty_content() -> None:
    conn = ready()
    conn.send_mail("a@example.com", ["b@example.org"])
    for command, reply in ((b"MAIL", b"250 ok\r\n"), (b"RCPT", b"250 ok\r\n"),
                           (b"DATA", b"354 go\r\n")):
        assert conn.data_to_send().startswith(command)
        assert not conn.wants_content
        conn.receive_data(reply)
        assert events(conn) == []
    assert conn.wants_content
    conn.end_content()
    assert conn.data_to_send() == b".\r\n"  # an empty message, as b"" in the bytes mode
    conn.receive_data(b"250 ok\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult) and result.success


def test_bdat_streaming_regroups_and_holds_back_one_chunk() -> None:
    conn = ready("PIPELINING", "CHUNKING")
    conn.send_mail("a@example.com", ["b@example.org"], None, chunk_size=4)
    assert conn.data_to_send() == b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n"
    conn.receive_data(b"250 ok\r\n250 ok\r\n")
    assert events(conn) == []
    assert conn.wants_content and conn.awaiting == "CONTENT"
    conn.send_content(b"abcd")  # a full chunk: held back, it may be the last one
    assert conn.data_to_send() == b"" and conn.wants_content
    conn.send_content(b"e\nfghijkl")
    # Pipelined BDAT (RFC 3030 §4.2): the full chunks go at once; "kl" waits.
    assert conn.data_to_send() == b"BDAT 4\r\nabcdBDAT 4\r\ne\r\nfBDAT 4\r\nghij"
    assert conn.awaiting == "BDAT" and conn.wants_content
    conn.receive_data(b"250 4 octets\r\n")
    assert events(conn) == []
    conn.end_content()
    assert conn.data_to_send() == b"BDAT 2 LAST\r\nkl"
    conn.receive_data(b"250 8 octets\r\n250 12 octets\r\n250 2.0.0 done\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult) and result.success
    assert result.data_replies == (r(250, "2.0.0", "done"),)


def test_bdat_streaming_without_pipelining_one_chunk_per_reply() -> None:
    conn = ready("CHUNKING")
    conn.send_mail("a@example.com", ["b@example.org"], None, chunk_size=3)
    for reply in (b"250 ok\r\n", b"250 ok\r\n"):
        conn.data_to_send()
        assert not conn.wants_content
        conn.receive_data(reply)
        events(conn)
    assert conn.wants_content
    conn.send_content(b"abcdefgh")
    # One BDAT per reply: the second waits in the core, so no more content is asked.
    assert conn.data_to_send() == b"BDAT 3\r\nabc"
    assert not conn.wants_content and conn.awaiting == "BDAT"
    conn.receive_data(b"250 ok\r\n")
    events(conn)
    assert conn.data_to_send() == b"BDAT 3\r\ndef"
    # Nothing waits to be sent ("gh" is held back as a possible last chunk): the next
    # piece may come while the reply is awaited; its BDAT then waits for that reply.
    assert conn.wants_content
    conn.end_content()
    assert conn.data_to_send() == b"" and not conn.wants_content
    conn.receive_data(b"250 ok\r\n")
    events(conn)
    assert conn.data_to_send() == b"BDAT 2 LAST\r\ngh"
    assert conn.awaiting == "FINAL"
    conn.receive_data(b"250 done\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult) and result.success


def test_bdat_streaming_failed_chunk_stops_asking() -> None:
    conn = ready("PIPELINING", "CHUNKING")
    conn.send_mail("a@example.com", ["b@example.org"], None, chunk_size=2)
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n250 ok\r\n")
    events(conn)
    conn.send_content(b"abcdef")
    assert conn.data_to_send() == b"BDAT 2\r\nabBDAT 2\r\ncd"
    conn.receive_data(b"552 5.3.4 too big\r\n")
    assert events(conn) == []
    assert not conn.wants_content  # RFC 3030 §2: no more chunks after a failure
    with pytest.raises(LocalProtocolError):
        conn.send_content(b"gh")
    conn.receive_data(b"503 5.5.1 no transaction\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b"RSET\r\n"
    conn.receive_data(b"250 ok\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult)
    assert result.data_replies == (r(552, "5.3.4", "too big"),) and not result.success


@pytest.mark.parametrize("extensions", [("PIPELINING",), (), ("PIPELINING", "CHUNKING")])
def test_nobody_accepted_never_asks_for_content(extensions: tuple[str, ...]) -> None:
    conn = ready(*extensions)
    conn.send_mail("a@example.com", ["x@example.org"])
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n")
    events(conn)
    conn.data_to_send()
    conn.receive_data(b"550 5.1.1 no such user\r\n")
    assert events(conn) == []
    assert not conn.wants_content and conn.awaiting != "CONTENT"
    if extensions == ("PIPELINING",):
        # The pipelined DATA got its 354 anyway: an empty message, then the refusal.
        conn.receive_data(b"354 go\r\n")
        assert events(conn) == [] and not conn.wants_content
        assert conn.data_to_send() == b".\r\n"
        conn.receive_data(b"554 5.5.1 no valid recipients\r\n")
    else:
        assert conn.data_to_send() == b"RSET\r\n"
        conn.receive_data(b"250 ok\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult) and not result.success


def test_mail_refused_never_asks_for_content() -> None:
    conn = ready()
    conn.send_mail("a@example.com", ["b@example.org", "c@example.org"])
    conn.data_to_send()
    conn.receive_data(b"553 5.7.1 not yours\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult) and not conn.wants_content
    assert result.recipient_replies == ()
    assert result.recipients == (P("b@example.org"), P("c@example.org"))


def test_421_and_close_while_streaming() -> None:
    conn = ready("PIPELINING", "CHUNKING")
    conn.send_mail("a@example.com", ["b@example.org"], None, chunk_size=2)
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n250 ok\r\n")
    events(conn)
    conn.send_content(b"abcd")
    conn.data_to_send()
    conn.receive_data(b"421 4.3.2 shutting down\r\n")
    [result] = events(conn)
    assert isinstance(result, TransactionResult)
    assert result.data_replies == (r(421, "4.3.2", "shutting down"),)
    assert not conn.wants_content and conn.awaiting is None

    conn = ready("PIPELINING")
    conn.send_mail("a@example.com", ["b@example.org"])
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    events(conn)
    conn.send_content(b"abc")
    conn.receive_data(b"")
    assert [type(e).__name__ for e in events(conn)] == ["ConnectionClosed"]
    assert not conn.wants_content
    with pytest.raises(LocalProtocolError):
        conn.end_content()


def test_lmtp_streaming_one_reply_per_recipient() -> None:
    for extensions in (("8BITMIME",), ("CHUNKING",)):
        conn = ready(*extensions, lmtp=True)
        conn.send_mail("a@example.com", ["b@x.example", "c@x.example"])
        first = conn.data_to_send()
        assert first.endswith(b"DATA\r\n") is ("CHUNKING" not in extensions)
        conn.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n")
        if "CHUNKING" not in extensions:
            conn.receive_data(b"354 go\r\n")
        assert events(conn) == [] and conn.wants_content
        conn.send_content(b"hi\r\n")
        out = conn.data_to_send()
        conn.end_content()
        out += conn.data_to_send()
        assert out in (b"hi\r\n.\r\n", b"BDAT 4 LAST\r\nhi\r\n")
        conn.receive_data(b"250 2.0.0 ok\r\n")
        assert events(conn) == []
        conn.receive_data(b"452 4.2.2 full\r\n")
        [result] = events(conn)
        assert isinstance(result, TransactionResult)
        assert result.accepted == (P("b@x.example"),)


def test_streaming_checks() -> None:
    conn = ready("PIPELINING", "SIZE 100", "CHUNKING")
    with pytest.raises(LocalProtocolError, match="SIZE"):
        conn.send_mail("a@example.com", ["b@example.org"], None, size=101)
    for bad in ({"size": -1}, {"size": True}, {"size": "1"}, {"eight_bit": 1}):
        with pytest.raises(LocalProtocolError):
            conn.send_mail("a@example.com", ["b@example.org"], None, **bad)  # type: ignore[arg-type]
    for bad in ({"size": 3}, {"eight_bit": False}):
        with pytest.raises(LocalProtocolError, match="streaming"):
            conn.send_mail("a@example.com", ["b@example.org"], b"abc", **bad)  # type: ignore[arg-type]
    # 8-bit content needs 8BITMIME, whether it is said or found out.
    with pytest.raises(LocalProtocolError, match="8BITMIME"):
        conn.send_mail("a@example.com", ["b@example.org"], None, eight_bit=True)
    assert conn.data_to_send() == b""
    conn.send_mail("a@example.com", ["b@example.org"], None, size=100)
    assert conn.data_to_send().startswith(b"MAIL FROM:<a@example.com> SIZE=100\r\n")
    conn.receive_data(b"250 ok\r\n250 ok\r\n")
    events(conn)
    with pytest.raises(LocalProtocolError, match="bytes"):
        conn.send_content("text")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="eight_bit"):
        conn.send_content(b"caf\xc3\xa9")
    assert conn.data_to_send() == b""

    # Given 8BITMIME (or eight_bit=True) the 8-bit piece goes.
    conn = ready("PIPELINING", "8BITMIME")
    conn.send_mail("a@example.com", ["b@example.org"], None, eight_bit=True)
    assert b"BODY=8BITMIME" in conn.data_to_send()
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    events(conn)
    conn.send_content(b"caf\xc3\xa9")
    assert conn.data_to_send() == b"caf\xc3\xa9"
    # No SIZE given, no SIZE announced; an explicit SIZE parameter still is.
    conn = ready("SIZE 10")
    conn.send_mail("a@example.com", ["b@example.org"], None)
    assert conn.data_to_send() == b"MAIL FROM:<a@example.com>\r\n"
    conn = ready("SIZE 10")
    with pytest.raises(LocalProtocolError, match="SIZE"):
        conn.send_mail("a@example.com", ["b@example.org"], None,
                       parameters=MailParameters(size=11))
