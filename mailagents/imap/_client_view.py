"""What the client core reads off parsed responses (capabilities, ENABLED), and the
one thing it takes from the response reader's buffer (what followed COMPRESS's OK)."""

from __future__ import annotations

from typing import TypeGuard

from mailagents.imap._framing_client import ResponseReader
from mailagents.imap._response_codes import CapabilityCode
from mailagents.imap._responses import CapabilityData, EnabledData, Response, StatusResponse

__all__ = ["capabilities_of", "enabled_of", "is_status", "take_buffered"]


def is_status(response: Response) -> TypeGuard[StatusResponse]:
    """Whether ``response`` is a status response (OK, NO, BAD, PREAUTH, BYE)."""
    return isinstance(response, StatusResponse)


def capabilities_of(response: Response) -> frozenset[str] | None:
    """The capabilities a response announces, upper case: a ``CAPABILITY`` response,
    or a status response with a ``[CAPABILITY ...]`` code (RFC 9051 §7.1); else
    ``None``."""
    if isinstance(response, CapabilityData):
        return frozenset(name.upper() for name in response.capabilities)
    if isinstance(response, StatusResponse) and isinstance(response.code, CapabilityCode):
        return frozenset(name.upper() for name in response.code.capabilities)
    return None


def enabled_of(response: Response) -> frozenset[str]:
    """The extensions an ``ENABLED`` response names, upper case (RFC 5161 §3.2)."""
    if isinstance(response, EnabledData):
        return frozenset(name.upper() for name in response.capabilities)
    return frozenset()


def take_buffered(reader: ResponseReader) -> bytes:
    """The octets the reader holds and has not read (after COMPRESS's OK: the start of
    the compressed stream), taken out of it."""
    return reader.take_buffered()
