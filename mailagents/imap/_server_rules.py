"""Session rules of the IMAP server core that depend on what the client enabled:
CONDSTORE enabling commands (RFC 7162 §3.1), IMAP4rev2 and UTF8=ACCEPT (RFC 9051,
RFC 6855), and the APPENDUID of an APPEND into the selected mailbox (RFC 4315 §3).

Pure functions over commands, frames and response objects; ``ServerConnection``
applies them. Where the application's answer would break a rule the core refuses it
(``LocalProtocolError``); where one form maps onto the other without loss (SEARCH
results for an IMAP4rev2 session) the core converts.
"""

from __future__ import annotations

from mailagents._protocol import LocalProtocolError
from mailagents.imap._commands import Command, Examine, Fetch, Search, Select, Status, Store
from mailagents.imap._fetch_items import FetchAttribute
from mailagents.imap._frame import Frame
from mailagents.imap._responses import ESearchData, Response, SearchData
from mailagents.imap._search import has_modseq_key
from mailagents.imap._seqset import SequenceSet

__all__ = [
    "UTF8_ONLY_COMMANDS",
    "appenduid",
    "check_frame",
    "condstore_enabling",
    "convert_response",
    "same_mailbox",
]

UTF8_ONLY_COMMANDS = frozenset(
    {
        "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE",
        "LIST", "LSUB", "STATUS", "APPEND", "NAMESPACE",
    }
)  # fmt: skip
"""The commands that name mailboxes or return them: with ``UTF8=ONLY`` announced they
are refused ``NO [CANNOT]`` until ``ENABLE UTF8=ACCEPT`` (RFC 6855 §6: "any command
that might require UTF-8 support")."""


def condstore_enabling(command: Command) -> bool:
    """Whether ``command`` is a "CONDSTORE enabling command" (RFC 7162 §3.1): SELECT or
    EXAMINE with ``CONDSTORE`` (§3.1.8), STATUS ``HIGHESTMODSEQ`` (§3.1.7), FETCH with
    the ``MODSEQ`` item (§3.1.4.2) or ``CHANGEDSINCE`` (§3.1.4.1), STORE with
    ``UNCHANGEDSINCE`` (§3.1.3), SEARCH with ``MODSEQ`` (§3.1.5). ENABLE CONDSTORE and
    ENABLE QRESYNC (§3.2.3) are handled with ENABLE itself."""
    if isinstance(command, (Select, Examine)):
        return command.condstore
    if isinstance(command, Status):
        return any(item.upper() == "HIGHESTMODSEQ" for item in command.items)
    if isinstance(command, Fetch):
        if command.changedsince is not None:
            return True
        items = command.items
        return not isinstance(items, str) and any(
            isinstance(item, FetchAttribute) and item.name == "MODSEQ" for item in items
        )
    if isinstance(command, Store):
        return command.unchangedsince is not None
    if isinstance(command, Search):
        return has_modseq_key(command.criteria)
    return False


def same_mailbox(a: str, b: str) -> bool:
    """Mailbox names compare exactly, but INBOX in any case is INBOX (RFC 9051 §5.1)."""
    return a == b or (a.upper() == "INBOX" and b.upper() == "INBOX")


def appenduid(code: str | None) -> list[int] | None:
    """The UIDs of an ``APPENDUID uidvalidity uid-set`` response code (RFC 4315 §3),
    ascending; ``None`` when ``code`` is not one."""
    if code is None:
        return None
    words = code.split(" ")
    if len(words) != 3 or words[0].upper() != "APPENDUID":
        return None
    try:
        uids = SequenceSet.parse(words[2])
    except Exception as exc:
        raise LocalProtocolError(f"APPENDUID with a bad UID set: {code!r}") from exc
    out: set[int] = set()
    for first, last in uids.ranges:
        if first is None or last is None:
            raise LocalProtocolError("APPENDUID names its UIDs, never '*' (RFC 4315 §4)")
        lo, hi = min(first, last), max(first, last)
        if hi - lo > 100_000:
            raise LocalProtocolError("APPENDUID range too large for one APPEND")
        out.update(range(lo, hi + 1))
    return sorted(out)


def _first_word(frame: Frame) -> bytes:
    words = frame.lines[0].split(b" ", 3)
    if len(words) > 2 and words[1].isdigit():
        return words[2].upper()
    return words[1].upper() if len(words) > 1 else b""


def check_frame(frame: Frame, *, rev2: bool, utf8: bool) -> None:
    """Refuse (``LocalProtocolError``) an untagged response the session must not get:

    - in an IMAP4rev2 session (``ENABLE IMAP4rev2``), ``* n RECENT`` (RFC 9051 removed
      it, Appendix E), ``* LSUB`` (LSUB is deprecated there, LIST (SUBSCRIBED) takes
      its place) and ``* SEARCH`` (answered as ESEARCH, RFC 9051 §6.4.4, §7.3.4);
    - before UTF8=ACCEPT or IMAP4rev2 is enabled, 8-bit octets in the response's lines
      (RFC 6855 §3: "The IMAP server MUST NOT send UTF-8 in quoted-strings to the
      client unless the client has indicated support"; RFC 3501 §9 TEXT-CHAR is 7-bit;
      literals may carry any octets).
    """
    if rev2:
        name = _first_word(frame)
        if name in (b"RECENT", b"LSUB", b"SEARCH"):
            raise LocalProtocolError(
                f"{name.decode()} is not an IMAP4rev2 response (RFC 9051 Appendix E)"
            )
    if not utf8:
        for line in frame.lines:
            if not line.isascii():
                raise LocalProtocolError(
                    "8-bit octets in a response line before ENABLE UTF8=ACCEPT (RFC 6855 §3)"
                )


def convert_response(response: Response, command: Command | None, *, rev2: bool) -> Response:
    """The response as the session must see it: an IMAP4rev2 session gets the results
    of a SEARCH as ``* ESEARCH (TAG "t") [UID] [ALL set]`` (RFC 9051 §6.4.4: the
    SEARCH response is gone; with no matches ALL is left out)."""
    if rev2 and isinstance(response, SearchData):
        numbers = response.numbers
        return ESearchData(
            tag=getattr(command, "tag", None),
            uid=bool(getattr(command, "uid", False)),
            all=SequenceSet.from_numbers(numbers) if numbers else None,
            modseq=response.modseq,
        )
    return response
