"""The server responses of IMAP as data (RFC 9051 §7 and the extensions of
:mod:`mailagents.imap`): status responses (tagged, untagged, ``PREAUTH``, ``BYE``) with
their response codes, the continuation request, and every untagged data response,
FETCH data included (ENVELOPE and BODYSTRUCTURE are the classes of
:mod:`mailagents.imap`).

The client parses received responses into these classes
(:func:`mailagents.imap.parse_response`), a server writes them
(:func:`mailagents.imap.write_response`); writing then parsing gives the same value
back. Response codes that carry UID sets (``APPENDUID``, ``COPYUID``, ``VANISHED``'s
data) keep them as :class:`~mailagents.imap.SequenceSet` ranges, never expanded. A
response or code this library does not know is kept as generic data
(:class:`UntaggedData`, :class:`ResponseCode`), as RFC 9051 §7 lets servers add them.
"""

from __future__ import annotations

from mailagents.imap._fetch_data import (
    BodySection,
    ExtValue,
    FetchData,
    SectionName,
)
from mailagents.imap._response_codes import (
    RFC5530_CODES,
    AppendUidCode,
    BadCharsetCode,
    CapabilityCode,
    Code,
    CopyUidCode,
    HighestModSeqCode,
    ModifiedCode,
    PermanentFlagsCode,
    ResponseCode,
    UidNextCode,
    UidValidityCode,
    UnseenCode,
)
from mailagents.imap._responses import (
    CapabilityData,
    Continuation,
    EnabledData,
    ESearchData,
    ExistsData,
    ExpungeData,
    FlagsData,
    IdData,
    ListData,
    Namespace,
    NamespaceData,
    RecentData,
    Response,
    SearchData,
    SortData,
    Status,
    StatusData,
    StatusResponse,
    Thread,
    ThreadData,
    UntaggedData,
    VanishedData,
)

__all__ = [
    "AppendUidCode",
    "BadCharsetCode",
    "BodySection",
    "CapabilityCode",
    "CapabilityData",
    "Code",
    "Continuation",
    "CopyUidCode",
    "ESearchData",
    "EnabledData",
    "ExistsData",
    "ExpungeData",
    "ExtValue",
    "FetchData",
    "FlagsData",
    "HighestModSeqCode",
    "IdData",
    "ListData",
    "ModifiedCode",
    "Namespace",
    "NamespaceData",
    "PermanentFlagsCode",
    "RFC5530_CODES",
    "RecentData",
    "Response",
    "ResponseCode",
    "SearchData",
    "SectionName",
    "SortData",
    "Status",
    "StatusData",
    "StatusResponse",
    "Thread",
    "ThreadData",
    "UidNextCode",
    "UidValidityCode",
    "UnseenCode",
    "UntaggedData",
    "VanishedData",
]
