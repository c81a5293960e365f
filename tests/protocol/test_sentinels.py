"""One sentinel type for every core (issue 10: smtp.NEED_DATA was not pop3.NEED_DATA)."""

from __future__ import annotations

import mailagents.pop3 as pop3
import mailagents.smtp as smtp
from mailagents import _protocol


def test_every_protocol_shares_the_sentinels() -> None:
    assert smtp.NEED_DATA is pop3.NEED_DATA is _protocol.NEED_DATA
    assert smtp.PAUSED is pop3.PAUSED is _protocol.PAUSED
    assert smtp.Sentinel is pop3.Sentinel is _protocol.Sentinel
    assert smtp.NEED_DATA is not smtp.PAUSED


def test_every_protocol_shares_the_errors() -> None:
    assert smtp.RemoteProtocolError is pop3.RemoteProtocolError
    assert smtp.LocalProtocolError is pop3.LocalProtocolError
    assert issubclass(smtp.RemoteProtocolError, _protocol.ProtocolError)
