"""The protocol kernel: what every sans-I/O core (SMTP, LMTP, POP3, IMAP) shares.

- the two error types a core raises (:class:`RemoteProtocolError`,
  :class:`LocalProtocolError`);
- the two non-event values of ``next_event()`` (:data:`NEED_DATA`, :data:`PAUSED`),
  one :class:`Sentinel` type for every protocol;
- the bounded line reader (:class:`LineReader`) that cuts received bytes into command
  or response lines without ever holding more than a bound;
- state machines as data (:func:`compile_moves`): each core's ``_state.py`` holds its
  transition table, the core executes it, the tests walk it and the documentation
  draws it (:func:`to_dot`).

The SASL exchange drivers that the cores share live in :mod:`mailagents.sasl`, beside
the mechanisms they drive. Each protocol package re-exports what its users need; this
package is private.
"""

from __future__ import annotations

from mailagents._protocol._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from mailagents._protocol._lines import BARE_LF, TOO_LONG, LineError, LineReader
from mailagents._protocol._machine import Moves, compile_moves, reachable, to_dot
from mailagents._protocol._sentinels import NEED_DATA, PAUSED, Sentinel

__all__ = [
    "BARE_LF",
    "NEED_DATA",
    "PAUSED",
    "TOO_LONG",
    "LineError",
    "LineReader",
    "LocalProtocolError",
    "Moves",
    "ProtocolError",
    "RemoteProtocolError",
    "Sentinel",
    "compile_moves",
    "reachable",
    "to_dot",
]
