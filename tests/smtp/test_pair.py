"""Client core and server core wired together in memory: every command and extension,
whole and one octet at a time."""

from __future__ import annotations

import pytest

from mailagents.smtp import (
    Accept,
    ClientConnection,
    LocalProtocolError,
    MailFrom,
    MailParameters,
    MessageComplete,
    RcptParameters,
    RcptTo,
    Reject,
    Reply,
    ServerConfig,
    ServerConnection,
)
from mailagents.smtp.client import Greeting, Response, TransactionResult

from .helpers import ConnectionPair, accept_all

BYTEWISE = [False, True]


def ready(pair: ConnectionPair, *, helo: bool = False) -> None:
    pair.until(Greeting)
    assert isinstance(pair.client, ClientConnection)
    if helo:
        pair.client.helo("client.test")
    else:
        pair.client.hello("client.test")
    response = pair.until(Response)
    assert isinstance(response, Response) and response.reply.code == 250


@pytest.mark.parametrize("bytewise", BYTEWISE)
def test_simple_commands(bytewise: bool) -> None:
    pair = ConnectionPair(bytewise=bytewise)
    ready(pair)
    client = pair.client
    assert isinstance(client, ClientConnection)
    for call, command, code in (
        (client.noop, "NOOP", 250),
        (client.rset, "RSET", 250),
        (lambda: client.vrfy("someone"), "VRFY", 252),
        (client.quit, "QUIT", 221),
    ):
        call()
        response = pair.until(Response)
        assert isinstance(response, Response)
        assert (response.command, response.reply.code) == (command, code)


@pytest.mark.parametrize("bytewise", BYTEWISE)
def test_dsn_requiretls_8bit_and_utf8_parameters_reach_the_server(bytewise: bool) -> None:
    config = ServerConfig(requiretls=True, tls_active=True)
    pair = ConnectionPair(ServerConnection(config), ClientConnection(tls_active=True),
                          bytewise=bytewise)
    ready(pair)
    client = pair.client
    assert isinstance(client, ClientConnection)
    body = "Subject: café\r\n\r\nnaïve\r\n".encode()
    client.send_mail(
        "jörg@bücher.test",
        ["用户@例子.test", "b@example.test"],
        body,
        parameters=MailParameters(ret="HDRS", envid="id+1 x", requiretls=True),
        recipient_parameters=[RcptParameters(notify=frozenset({"NEVER"})),
                              RcptParameters(orcpt=("rfc822", "b@example.test"))],
        use_bdat=False,
    )
    result = pair.until(TransactionResult)
    assert isinstance(result, TransactionResult) and len(result.accepted) == 2
    mail = next(e for e in pair.server_events if isinstance(e, MailFrom))
    p = mail.parameters
    assert p.smtputf8 and p.body == "8BITMIME" and p.requiretls
    assert (p.ret, p.envid, p.size) == ("HDRS", "id+1 x", len(body))
    rcpts = [e for e in pair.server_events if isinstance(e, RcptTo)]
    assert rcpts[0].parameters.notify == frozenset({"NEVER"})
    assert rcpts[1].parameters.orcpt == ("rfc822", "b@example.test")


@pytest.mark.parametrize("bytewise", BYTEWISE)
def test_several_transactions_over_helo_without_extensions(bytewise: bool) -> None:
    pair = ConnectionPair(bytewise=bytewise)
    ready(pair, helo=True)
    client = pair.client
    assert isinstance(client, ClientConnection)
    for i in range(3):
        client.send_mail("a@b.test", [f"r{i}@d.test"], b"Subject: %d\n\nbody\n" % i)
        result = pair.until(TransactionResult)
        assert isinstance(result, TransactionResult) and result.success
    completes = [e for e in pair.server_events if isinstance(e, MessageComplete)]
    assert len(completes) == 3
    assert not any(e.envelope.chunked for e in completes)  # no CHUNKING after HELO


def test_client_refuses_a_message_over_the_announced_size() -> None:
    pair = ConnectionPair(ServerConnection(ServerConfig(max_message_size=100)))
    ready(pair)
    client = pair.client
    assert isinstance(client, ClientConnection)
    with pytest.raises(LocalProtocolError):
        client.send_mail("a@b.test", ["c@d.test"], b"x" * 200)
    assert client.data_to_send() == b""


def test_server_rejections_reach_the_client_result() -> None:
    def policy(event: object) -> Accept | Reject | None:
        if isinstance(event, MessageComplete):
            return Reject(reply=Reply(code=554, enhanced="5.7.1", lines=("spam",)))
        return accept_all(event)  # type: ignore[arg-type]

    pair = ConnectionPair(policy=policy)  # type: ignore[arg-type]
    ready(pair)
    assert isinstance(pair.client, ClientConnection)
    pair.client.send_mail("a@b.test", ["c@d.test"], b"hi\n")
    result = pair.until(TransactionResult)
    assert isinstance(result, TransactionResult)
    assert not result.success and result.data_replies[0].code == 554
