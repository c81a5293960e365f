"""The SMTP client core's mail transaction, apart from its replies: the checks
:meth:`~mailagents.smtp.client.ClientConnection.send_mail` makes before anything is
queued, and the content as the commands that carry it (DATA's dot-stuffed text, BDAT
chunks), given whole or fed in pieces."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mailagents._protocol import LocalProtocolError
from mailagents.smtp._data import DotStuffer, LineEndNormalizer
from mailagents.smtp._params import MailParameters, RcptParameters

__all__ = [
    "BdatContent",
    "DataContent",
    "bdat_chunks",
    "check_offered",
    "choose_body",
    "rcpt_parameters",
    "size_parameter",
]


# --- the checks of send_mail, step by step -------------------------------------------


def rcpt_parameters(
    given: Sequence[RcptParameters] | None, count: int
) -> list[RcptParameters]:
    """One RcptParameters per recipient (empty ones when none are given)."""
    if given is None:
        return [RcptParameters()] * count
    rparams = list(given)
    if len(rparams) != count:
        raise LocalProtocolError("one RcptParameters per recipient")
    if not all(isinstance(p, RcptParameters) for p in rparams):
        raise LocalProtocolError("recipient_parameters must be RcptParameters")
    return rparams


def choose_body(
    given: str | None, eight_bit: bool, ext: Mapping[str, str], *, utf8: bool, bdat: bool
) -> str | None:
    """The BODY parameter (RFC 6152, RFC 3030): the one given, checked against the
    content (``eight_bit``: it has octets above 127) and the server's extensions, or
    the one an 8-bit or UTF-8 message needs."""
    body = given.upper() if isinstance(given, str) else given
    if body is None:
        if eight_bit or utf8:
            if "8BITMIME" in ext:
                return "8BITMIME"
            if eight_bit and bdat and "BINARYMIME" in ext:
                return "BINARYMIME"
            if eight_bit:
                raise LocalProtocolError("an 8-bit message needs the server's 8BITMIME")
    elif body == "7BIT":
        if eight_bit:
            raise LocalProtocolError("BODY=7BIT but the message has 8-bit octets")
    elif body == "8BITMIME":
        if "8BITMIME" not in ext:
            raise LocalProtocolError("the server does not offer 8BITMIME")
    elif body == "BINARYMIME":
        if "BINARYMIME" not in ext or not bdat:
            raise LocalProtocolError("BODY=BINARYMIME needs BINARYMIME and BDAT (RFC 3030)")
    else:
        raise LocalProtocolError(f"unknown BODY {given!r}")
    return body


def size_parameter(
    given: int | None, octets: int | None, ext: Mapping[str, str], limit: int | None
) -> int | None:
    """The SIZE parameter (RFC 1870): the content's size (``octets``, ``None`` when
    unknown) when the server offers SIZE, refused here above the server's limit;
    ``given`` overrides what is announced. None without SIZE."""
    if "SIZE" in ext:
        if limit is not None and octets is not None and octets > limit:
            raise LocalProtocolError(
                f"the message ({octets} octets) exceeds the server's SIZE {limit}"
            )
        return octets if given is None else given
    if given is not None:
        raise LocalProtocolError("the server does not offer SIZE")
    return None


def check_offered(
    params: MailParameters, rparams: list[RcptParameters], ext: Mapping[str, str]
) -> None:
    """Parameters of other extensions only if the server offers them."""
    if (params.ret is not None or params.envid is not None) and "DSN" not in ext:
        raise LocalProtocolError("RET/ENVID need the server's DSN (RFC 3461)")
    if any(p.notify is not None or p.orcpt is not None for p in rparams) and "DSN" not in ext:
        raise LocalProtocolError("NOTIFY/ORCPT need the server's DSN (RFC 3461)")
    if params.auth is not None and "AUTH" not in ext:
        raise LocalProtocolError("the AUTH= parameter needs the server's AUTH (RFC 4954)")
    if params.requiretls and "REQUIRETLS" not in ext:
        raise LocalProtocolError("the server does not offer REQUIRETLS (RFC 8689)")


# --- the content as commands ----------------------------------------------------------


def _frame(piece: bytes | bytearray | memoryview, last: bool) -> bytes:
    """One BDAT command with its chunk (RFC 3030 §2: ``BDAT <size> [LAST]``, then
    exactly that many octets, no line end of their own)."""
    head = f"BDAT {len(piece)} LAST\r\n" if last else f"BDAT {len(piece)}\r\n"
    return head.encode("ascii") + piece


def bdat_chunks(content: bytes, chunk_size: int) -> list[bytes]:
    """The BDAT commands with their chunks (RFC 3030 §2), the last one with LAST; an
    empty message is ``BDAT 0 LAST``."""
    pieces = [content[i : i + chunk_size] for i in range(0, len(content), chunk_size)]
    pieces = pieces or [b""]
    return [_frame(p, i == len(pieces) - 1) for i, p in enumerate(pieces)]


class DataContent:
    """Content fed in pieces for DATA: normalised to CRLF and dot-stuffed across the
    cuts (RFC 5321 §2.3.8, §4.5.2), ended with the CRLF a last line lacks and the
    ``.<CRLF>`` of §4.1.1.4. Exactly the octets :func:`~mailagents.smtp._data.dot_stuff`
    gives for the whole content, however it is cut."""

    __slots__ = ("_stuffer",)

    def __init__(self) -> None:
        self._stuffer = DotStuffer()

    def feed(self, piece: bytes | bytearray | memoryview) -> bytes:
        return self._stuffer.feed(piece)

    def end(self) -> bytes:
        return self._stuffer.end() + b".\r\n"


class BdatContent:
    """Content fed in pieces for BDAT (RFC 3030): normalised to CRLF across the cuts
    (not with ``BODY=BINARYMIME``, whose octets go as they are) and regrouped into
    chunks of ``chunk_size`` octets, the last one (at :meth:`end`) with LAST: the same
    commands :func:`bdat_chunks` makes of the whole content, however it is cut.

    A full chunk is held back until more content comes, since only then is it known
    not to be the last one: at most ``chunk_size`` octets wait here between calls.
    """

    __slots__ = ("_chunk_size", "_normalizer", "_pending")

    def __init__(self, chunk_size: int, *, binary: bool) -> None:
        self._chunk_size = chunk_size
        self._normalizer = None if binary else LineEndNormalizer()
        self._pending = bytearray()

    def feed(self, piece: bytes | bytearray | memoryview) -> list[bytes]:
        """The BDAT commands that ``piece`` completes (none, one, or several)."""
        normalizer = self._normalizer
        self._pending += normalizer.feed(piece) if normalizer is not None else piece
        pending = self._pending
        size = self._chunk_size
        if len(pending) <= size:
            return []
        # Keep the tail (1 to chunk_size octets): it may turn out to be the last chunk.
        cut = (len(pending) - 1) // size * size
        with memoryview(pending) as view:
            frames = [_frame(view[i : i + size], False) for i in range(0, cut, size)]
        del pending[:cut]
        return frames

    def end(self) -> bytes:
        """The last BDAT command (with LAST), with what was held back."""
        last = _frame(self._pending, True)
        self._pending = bytearray()
        return last
