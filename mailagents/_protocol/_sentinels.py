"""The two values besides events that a core's ``next_event()`` returns, one type for
every protocol (``mailagents.smtp.NEED_DATA is mailagents.pop3.NEED_DATA``)."""

from __future__ import annotations

import enum

__all__ = ["NEED_DATA", "PAUSED", "Sentinel"]


class Sentinel(enum.Enum):
    """The two non-event values ``next_event()`` may return."""

    NEED_DATA = "NEED_DATA"
    """Nothing complete is buffered: feed more bytes with ``receive_data``."""
    PAUSED = "PAUSED"
    """An event awaits the application's decision; nothing more is parsed until it
    answers with ``send(...)``. Input that arrives meanwhile is only buffered, within
    the core's bound."""


NEED_DATA = Sentinel.NEED_DATA
PAUSED = Sentinel.PAUSED
