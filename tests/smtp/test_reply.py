"""Reply values (RFC 5321 §4.2, RFC 3463 §2) and the server configuration's checks."""

from __future__ import annotations

import pytest

from mailagents.smtp import LocalProtocolError, Reply, ServerConfig


@pytest.mark.parametrize(
    ("reply", "wire"),
    [
        (Reply(code=250), b"250\r\n"),
        (Reply(code=250, lines=("OK",)), b"250 OK\r\n"),
        (Reply(code=250, enhanced="2.1.0", lines=("a", "b")), b"250-2.1.0 a\r\n250 2.1.0 b\r\n"),
        (Reply(code=550, enhanced="5.1.1"), b"550 5.1.1\r\n"),
        (Reply(code=421, lines=()), b"421\r\n"),
    ],
)
def test_wire_form(reply: Reply, wire: bytes) -> None:
    assert reply.to_bytes() == wire


@pytest.mark.parametrize(
    "kwargs",
    [
        {"code": 199},
        {"code": 600},
        {"code": 250, "enhanced": "5.0.0"},
        {"code": 250, "enhanced": "2.0"},
        {"code": 250, "enhanced": "2.1000.0"},
        {"code": 250, "lines": ("a\r\nMAIL FROM:<x>",)},
        {"code": 250, "lines": ("nul\x00",)},
    ],
)
def test_invalid_replies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        Reply(**kwargs)  # type: ignore[arg-type]


def test_classes_and_text() -> None:
    reply = Reply(code=452, enhanced="4.5.3", lines=("too", "many"))
    assert reply.is_transient and not reply.is_permanent and not reply.is_positive
    assert reply.text == "too\nmany"
    assert reply.without_enhanced() == Reply(code=452, lines=("too", "many"))
    assert Reply(code=354).is_positive
    assert Reply(code=554).is_permanent
    assert Reply(code=250, lines="one").lines == ("one",)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_recipients": 99},
        {"max_recipients": 0},
        {"max_line": 511},
        {"max_text_line": 999},
        {"hostname": "two words"},
        {"max_buffer": 0},
    ],
)
def test_config_refuses_limits_below_the_rfc_minimums(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        ServerConfig(**kwargs)  # type: ignore[arg-type]


def test_command_line_limit_grows_with_extensions() -> None:
    bare = ServerConfig(eightbitmime=False, smtputf8=False, dsn=False)
    assert bare.command_line_limit == 512 + 26
    full = ServerConfig(auth_mechanisms=("PLAIN",), requiretls=True)
    assert full.command_line_limit > bare.command_line_limit + 500
