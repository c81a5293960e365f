"""Modified UTF-7, the mailbox name encoding of IMAP (RFC 3501 §5.1.3, RFC 9051 §5.1.3).

Printable US-ASCII (0x20-0x7e) stands for itself, except ``&``, which is written
``&-``. Every other run of characters is encoded as UTF-16BE in a modified base64
(``,`` instead of ``/``, no padding) between ``&`` and ``-``. The encoding is unique:
:func:`decode_mutf7` refuses anything :func:`encode_mutf7` would not produce (printable
ASCII inside a shifted run, two adjacent shifted runs, padding, non-zero leftover bits),
so a name has exactly one encoded form, which a store can use as a file name.

Pure functions, no I/O: the IMAP core and the Maildir store share them.
"""

from __future__ import annotations

import binascii

__all__ = ["decode_mutf7", "encode_mutf7"]

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"
_B64_SET = frozenset(_B64)


def _direct(ch: str) -> bool:
    return 0x20 <= ord(ch) <= 0x7E


def _encode_run(run: str) -> str:
    data = run.encode("utf-16-be")
    text = binascii.b2a_base64(data, newline=False).decode("ascii")
    return "&" + text.rstrip("=").replace("/", ",") + "-"


def encode_mutf7(name: str) -> str:
    """Encode a mailbox name (any Unicode string) in modified UTF-7.

    >>> encode_mutf7("~peter/mail/台北/日本語")
    '~peter/mail/&U,BTFw-/&ZeVnLIqe-'
    >>> encode_mutf7("Entwürfe & Co")
    'Entw&APw-rfe &- Co'
    """
    out: list[str] = []
    run: list[str] = []
    for ch in name:
        if _direct(ch):
            if run:
                out.append(_encode_run("".join(run)))
                run = []
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    if run:
        out.append(_encode_run("".join(run)))
    return "".join(out)


def decode_mutf7(text: str) -> str:
    """Decode a modified UTF-7 mailbox name; :class:`ValueError` if it is not the
    canonical encoding of some name (see the module's documentation).

    >>> decode_mutf7("~peter/mail/&U,BTFw-/&ZeVnLIqe-")
    '~peter/mail/台北/日本語'
    """
    out: list[str] = []
    i = 0
    n = len(text)
    last_shift_end = -1
    while i < n:
        ch = text[i]
        if not _direct(ch):
            raise ValueError(f"character not allowed in modified UTF-7: {ch!r}")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise ValueError("unterminated shift sequence in modified UTF-7")
        body = text[i + 1 : end]
        if not body:
            out.append("&")
            i = end + 1
            continue
        if last_shift_end == i:
            raise ValueError("adjacent shift sequences in modified UTF-7")
        if not set(body) <= _B64_SET:
            raise ValueError(f"invalid base64 in modified UTF-7: {body!r}")
        if len(body) % 4 == 1:
            raise ValueError(f"truncated base64 in modified UTF-7: {body!r}")
        padded = body.replace(",", "/") + "=" * (-len(body) % 4)
        data = binascii.a2b_base64(padded)
        if len(data) % 2:
            raise ValueError(f"odd UTF-16 length in modified UTF-7: {body!r}")
        # Leftover bits must be zero (canonical form).
        bits = len(body) * 6 - len(data) * 8
        if bits and _B64.index(body[-1]) & ((1 << bits) - 1):
            raise ValueError(f"non-zero padding bits in modified UTF-7: {body!r}")
        try:
            decoded = data.decode("utf-16-be")
        except UnicodeDecodeError as exc:
            raise ValueError(f"invalid UTF-16 in modified UTF-7: {body!r}") from exc
        if any(_direct(c) for c in decoded):
            raise ValueError(f"printable ASCII encoded in a shift sequence: {body!r}")
        out.append(decoded)
        i = end + 1
        last_shift_end = i
    return "".join(out)
