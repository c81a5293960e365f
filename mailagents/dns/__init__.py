"""Where mail for a domain goes: MX resolution by RFC 5321 §5.1 on dnspython's asyncio
resolver (layer 2: it touches DNS). See :doc:`/routing`.

::

    resolver = MXResolver(ResolverConfig(local_names=frozenset({"mx.example.org"})))
    route = await resolver.route("example.com")
    if isinstance(route, DnsFailure):
        ...  # route.temporary: retry later; else bounce with route.enhanced
    else:
        for exchanger, address in route.targets():
            ...  # connect to address, port 25, in this order
"""

from mailagents.dns._lookup import DnspythonLookup, Lookup, RecordSet, StaticLookup
from mailagents.dns._model import (
    DnsFailure,
    Exchanger,
    FailureKind,
    IPAddress,
    MtaStsRecord,
    Route,
    RouteResult,
    SkippedExchanger,
    TlsaAnswer,
    TlsaRecord,
)
from mailagents.dns._names import BadName, parse_literal, to_ascii, to_unicode
from mailagents.dns._resolver import Family, MXResolver, ResolverConfig, parse_mta_sts

__all__ = [
    "BadName",
    "DnsFailure",
    "DnspythonLookup",
    "Exchanger",
    "FailureKind",
    "Family",
    "IPAddress",
    "Lookup",
    "MXResolver",
    "MtaStsRecord",
    "RecordSet",
    "ResolverConfig",
    "Route",
    "RouteResult",
    "SkippedExchanger",
    "StaticLookup",
    "TlsaAnswer",
    "TlsaRecord",
    "parse_literal",
    "parse_mta_sts",
    "to_ascii",
    "to_unicode",
]
