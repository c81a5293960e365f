"""What every protocol's SASL framing shares: strict base64 on the exchange lines
(RFC 4954 §4 for SMTP, RFC 5034 §4 for POP3, RFC 9051 §6.2.2 for IMAP)."""

from __future__ import annotations

import binascii
from base64 import b64decode

__all__ = ["decode_base64"]


def decode_base64(text: str | bytes) -> bytes | None:
    """The bytes a SASL exchange line carries in base64, or ``None`` when it is not
    strict base64 (characters outside the alphabet, bad padding, non-ASCII). The
    protocol's own markers (``*`` to cancel, ``=`` for an empty initial response) are
    the protocol core's to handle before calling this."""
    try:
        raw = text.encode("ascii") if isinstance(text, str) else text
        return b64decode(raw, validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
