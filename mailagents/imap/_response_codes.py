"""Response codes as data: the bracketed ``resp-text-code`` of a status response
(RFC 9051 §7.1, formal syntax in §9).

Codes with structure have a class each (:class:`UidNextCode`, :class:`CopyUidCode`, ...);
every other code, the RFC 5530 ones included, is a :class:`ResponseCode` with its name
and the raw text of its arguments, if any. Every class has ``name``, so
``response.code.name == "TRYCREATE"`` works whatever the code is. UID sets stay
``SequenceSet`` ranges (RFC 4315 ``uid-set``), never expanded.

Pure data, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from mailagents._protocol import LocalProtocolError
from mailagents.imap._seqset import SequenceSet

__all__ = [
    "RFC5530_CODES",
    "AppendUidCode",
    "BadCharsetCode",
    "CapabilityCode",
    "Code",
    "CopyUidCode",
    "HighestModSeqCode",
    "ModifiedCode",
    "PermanentFlagsCode",
    "ResponseCode",
    "UidNextCode",
    "UidValidityCode",
    "UnseenCode",
]

RFC5530_CODES: frozenset[str] = frozenset(
    {
        "UNAVAILABLE",
        "AUTHENTICATIONFAILED",
        "AUTHORIZATIONFAILED",
        "EXPIRED",
        "PRIVACYREQUIRED",
        "CONTACTADMIN",
        "NOPERM",
        "INUSE",
        "EXPUNGEISSUED",
        "CORRUPTION",
        "SERVERBUG",
        "CLIENTBUG",
        "CANNOT",
        "LIMIT",
        "OVERQUOTA",
        "ALREADYEXISTS",
        "NONEXISTENT",
    }
)
"""The response codes of RFC 5530 §3 (plain names, no arguments)."""

# An atom (RFC 9051 §9 atom-specials excluded), 7-bit.
_NAME = re.compile(r'[^(){ \x00-\x1f\x7f%*"\\\]\x80-\U0010ffff]+')
_ARGS_BAD = re.compile(r"[\x00\r\n\]]")


def _number(value: int, what: str, *, limit: int = 4294967295, low: int = 0) -> None:
    if type(value) is not int or not low <= value <= limit:
        raise LocalProtocolError(f"{what} out of range: {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseCode:
    """Any code without a class of its own: ``name`` upper case (``ALERT``,
    ``TRYCREATE``, ``READ-ONLY``, ``NOMODSEQ``, ``CLOSED``, ``TOOBIG``, the RFC 5530
    names), ``args`` the text after the name (``atom [SP 1*<any TEXT-CHAR except
    "]">]``) or ``None``."""

    name: str
    args: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name) or self.name != self.name.upper():
            raise LocalProtocolError(f"not a response code name: {self.name!r}")
        if self.args is not None and (not self.args or _ARGS_BAD.search(self.args)):
            raise LocalProtocolError("response code arguments: TEXT-CHARs but ']'")


@dataclass(frozen=True, slots=True, kw_only=True)
class UidNextCode:
    """``[UIDNEXT n]``: the next UID to be assigned (RFC 9051 §7.1)."""

    name: ClassVar[str] = "UIDNEXT"
    uidnext: int

    def __post_init__(self) -> None:
        _number(self.uidnext, "UIDNEXT", low=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class UidValidityCode:
    """``[UIDVALIDITY n]`` (RFC 9051 §7.1)."""

    name: ClassVar[str] = "UIDVALIDITY"
    uidvalidity: int

    def __post_init__(self) -> None:
        _number(self.uidvalidity, "UIDVALIDITY", low=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnseenCode:
    """``[UNSEEN n]``: the first unseen message (RFC 3501 §7.1; gone from RFC 9051)."""

    name: ClassVar[str] = "UNSEEN"
    number: int

    def __post_init__(self) -> None:
        _number(self.number, "UNSEEN", low=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class PermanentFlagsCode:
    """``[PERMANENTFLAGS (...)]``: the flags that can be changed permanently; ``\\*``
    says new keywords may be created (RFC 9051 §7.1)."""

    name: ClassVar[str] = "PERMANENTFLAGS"
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CapabilityCode:
    """``[CAPABILITY ...]``: the capabilities, as sent (compare without regard to case)."""

    name: ClassVar[str] = "CAPABILITY"
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendUidCode:
    """``[APPENDUID uidvalidity uid-set]`` (RFC 4315 §3; a set with MULTIAPPEND)."""

    name: ClassVar[str] = "APPENDUID"
    uidvalidity: int
    uids: SequenceSet

    def __post_init__(self) -> None:
        _number(self.uidvalidity, "UIDVALIDITY", low=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyUidCode:
    """``[COPYUID uidvalidity source-uids destination-uids]`` (RFC 4315 §3): the
    messages' UIDs in the destination, in the order of ``source``."""

    name: ClassVar[str] = "COPYUID"
    uidvalidity: int
    source: SequenceSet
    destination: SequenceSet

    def __post_init__(self) -> None:
        _number(self.uidvalidity, "UIDVALIDITY", low=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class HighestModSeqCode:
    """``[HIGHESTMODSEQ n]`` (RFC 7162 §3.1.2.1)."""

    name: ClassVar[str] = "HIGHESTMODSEQ"
    modseq: int

    def __post_init__(self) -> None:
        _number(self.modseq, "HIGHESTMODSEQ", limit=2**63 - 1, low=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModifiedCode:
    """``[MODIFIED set]``: the messages a conditional STORE left alone (RFC 7162
    §3.1.3)."""

    name: ClassVar[str] = "MODIFIED"
    uids: SequenceSet


@dataclass(frozen=True, slots=True, kw_only=True)
class BadCharsetCode:
    """``[BADCHARSET (charsets)]``: the charsets the server does support (RFC 9051
    §7.1), maybe none listed."""

    name: ClassVar[str] = "BADCHARSET"
    charsets: tuple[str, ...] = ()


Code: TypeAlias = (
    ResponseCode
    | UidNextCode
    | UidValidityCode
    | UnseenCode
    | PermanentFlagsCode
    | CapabilityCode
    | AppendUidCode
    | CopyUidCode
    | HighestModSeqCode
    | ModifiedCode
    | BadCharsetCode
)
"""Any response code."""
