"""The base subject of RFC 5256 §2.1 (what SORT SUBJECT and THREAD=ORDEREDSUBJECT
compare), and the sent date SORT DATE uses (RFC 5256 §3: the Date header, else the
INTERNALDATE, which the caller supplies).

Pure computation, no I/O. The caller compares base subjects with the
``i;ascii-casemap`` collation (RFC 5256 §3); the text is returned as it stands.
"""

from __future__ import annotations

import datetime
import email.header
import email.utils
import re

__all__ = ["base_subject", "sent_date"]

_WSP_RUN = re.compile(r"[ \t\r\n]+")
# subj-trailer = "(fwd)" / WSP (RFC 5256 §5)
_TRAILER = re.compile(r"(?:\(fwd\)|[ \t])+\Z", re.IGNORECASE)
# subj-blob = "[" *BLOBCHAR "]" *WSP; BLOBCHAR excludes "[" and "]"
_BLOB = r"\[[^\[\]]*\][ \t]*"
# subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
# subj-leader = (*subj-blob subj-refwd) / WSP
_LEADER = re.compile(
    r"(?:(?:" + _BLOB + r")*(?:re|fwd?)[ \t]*(?:" + _BLOB + r")?:|[ \t]+)", re.IGNORECASE
)
_BLOB_AT_START = re.compile(_BLOB)
_MAX_ROUNDS = 10_000


def _decode(value: str) -> str:
    """RFC 5256 §2.1 step (1): encoded words (RFC 2047) decoded, blank runs as one
    space. Undecodable words stay as written."""
    try:
        parts = email.header.decode_header(value)
    except (ValueError, LookupError, UnicodeError):  # pragma: no cover - stdlib is lenient
        return _WSP_RUN.sub(" ", value)
    out: list[str] = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        try:
            out.append(chunk.decode(charset or "ascii", errors="replace"))
        except LookupError:
            out.append(chunk.decode("ascii", errors="replace"))
    return _WSP_RUN.sub(" ", "".join(out))


def base_subject(subject: str | None) -> str:
    """The base subject of an (unfolded) Subject value (RFC 5256 §2.1): encoded words
    decoded, then repeatedly trailing ``(fwd)`` and blanks removed (step 2), leading
    ``Re:``/``Fw:``/``Fwd:`` with their ``[blob]``s and blanks removed (step 3), a
    leading ``[blob]`` removed when something is left after it (step 4), and a
    ``[fwd: ...]`` wrapper taken off (step 6). ``""`` when there is no Subject."""
    if subject is None:
        return ""
    text = _decode(subject).strip(" ")
    for _ in range(_MAX_ROUNDS):  # each round removes something, or the loop ends
        before = text
        text = _TRAILER.sub("", text)  # step 2
        while True:  # steps 3 and 4, repeated (step 5)
            match = _LEADER.match(text)
            if match and match.end() > 0:
                text = text[match.end() :]
                continue
            blob = _BLOB_AT_START.match(text)
            if blob and blob.end() < len(text):
                text = text[blob.end() :]
                continue
            break
        if text[:5].lower() == "[fwd:" and text.endswith("]"):  # step 6
            text = text[5:-1]
            continue
        if text == before:
            break
    return text.strip(" ")


def sent_date(date: str | None) -> datetime.datetime | None:
    """The Date header parsed (RFC 5322 §3.3, obsolete forms included), or ``None``
    when absent or unreadable (SORT DATE then uses the INTERNALDATE, RFC 5256 §3). A
    date without a zone, or with ``-0000``, is taken as UTC."""
    if not date:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed
