"""The IMAP server configuration (mailagents/imap/_config.py): defaults and validation."""

from __future__ import annotations

import pytest

from mailagents._protocol import LocalProtocolError
from mailagents.imap._config import DEFAULT_EXTENSIONS, ServerConfig


def test_defaults_are_safe() -> None:
    cfg = ServerConfig()
    assert not cfg.allow_plaintext_login and not cfg.tls_available
    assert cfg.max_line == 65_536 and cfg.max_bad_commands == 3
    assert cfg.enableable() == {"CONDSTORE", "QRESYNC", "IMAP4REV2"}
    assert "IMAP4rev2" in DEFAULT_EXTENSIONS


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_line": 0},
        {"max_line": 999},
        {"max_append": -1},
        {"max_buffer": 1000},
        {"max_bad_commands": 0},
        {"auth_mechanisms": ("CRAM-MD5",)},
        {"auth_mechanisms": ("PL AIN",)},
        {"extensions": ("X\r\nY",)},
        {"extensions": ("",)},
    ],
)
def test_invalid(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        ServerConfig(**kwargs)  # type: ignore[arg-type]


def test_legacy_and_enableable() -> None:
    assert ServerConfig(auth_mechanisms=("CRAM-MD5",), allow_legacy_auth=True)
    cfg = ServerConfig(extensions=("IMAP4rev1", "UTF8=ACCEPT"))
    assert cfg.enableable() == {"UTF8=ACCEPT"}
