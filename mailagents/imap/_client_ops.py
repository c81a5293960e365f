"""The IMAP client core's bookkeeping per command: which untagged responses a command
collects, and which rules it imposes on the session (what may be sent beside it, what
its success changes).

RFC 9051 §7: untagged responses are not tied to commands on the wire; a client ties
them by kind. A command collects the kinds it exists to ask for (LIST takes ``LIST``,
FETCH takes ``FETCH``); everything else is mailbox news for the application. ESEARCH
carries its command's tag (RFC 4731 §3.1, ``(TAG "A5")``) and goes to that command
whatever else is pending.
"""

from __future__ import annotations

import enum

from mailagents.imap import _commands as c
from mailagents.imap._responses import Response
from mailagents.sasl._exchange import ClientExchange

__all__ = ["ClientState", "Pending", "collects", "command_name"]


class ClientState(enum.Enum):
    """The session's state (RFC 9051 §3), as the client knows it: the state its last
    completed command left the session in."""

    NOT_AUTHENTICATED = "not-authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


_SELECT_KINDS = frozenset({"FLAGS", "EXISTS", "RECENT", "OK", "NO", "LIST", "VANISHED", "FETCH"})

_COLLECTS: dict[str, frozenset[str]] = {
    "CAPABILITY": frozenset({"CAPABILITY"}),
    "SELECT": _SELECT_KINDS,
    "EXAMINE": _SELECT_KINDS,
    "LIST": frozenset({"LIST", "STATUS"}),
    "LSUB": frozenset({"LSUB"}),
    "STATUS": frozenset({"STATUS"}),
    "FETCH": frozenset({"FETCH", "VANISHED"}),
    "UID FETCH": frozenset({"FETCH", "VANISHED"}),
    "STORE": frozenset({"FETCH"}),
    "UID STORE": frozenset({"FETCH"}),
    "SEARCH": frozenset({"SEARCH", "ESEARCH"}),
    "UID SEARCH": frozenset({"SEARCH", "ESEARCH"}),
    "SORT": frozenset({"SORT", "ESEARCH"}),
    "UID SORT": frozenset({"SORT", "ESEARCH"}),
    "THREAD": frozenset({"THREAD"}),
    "UID THREAD": frozenset({"THREAD"}),
    "EXPUNGE": frozenset({"EXPUNGE", "VANISHED"}),
    "UID EXPUNGE": frozenset({"EXPUNGE", "VANISHED"}),
    # RFC 6851 §4.3: MOVE reports COPYUID in an untagged OK, then the EXPUNGEs.
    "MOVE": frozenset({"EXPUNGE", "VANISHED", "OK"}),
    "UID MOVE": frozenset({"EXPUNGE", "VANISHED", "OK"}),
    "ENABLE": frozenset({"ENABLED"}),
    "ID": frozenset({"ID"}),
    "NAMESPACE": frozenset({"NAMESPACE"}),
    "LOGOUT": frozenset({"BYE"}),
}

_NAMES: dict[type, str] = {
    c.Capability: "CAPABILITY",
    c.Noop: "NOOP",
    c.Logout: "LOGOUT",
    c.StartTLS: "STARTTLS",
    c.Authenticate: "AUTHENTICATE",
    c.Login: "LOGIN",
    c.Enable: "ENABLE",
    c.Select: "SELECT",
    c.Examine: "EXAMINE",
    c.Create: "CREATE",
    c.Delete: "DELETE",
    c.Rename: "RENAME",
    c.Subscribe: "SUBSCRIBE",
    c.Unsubscribe: "UNSUBSCRIBE",
    c.List: "LIST",
    c.Lsub: "LSUB",
    c.Namespace: "NAMESPACE",
    c.Status: "STATUS",
    c.Append: "APPEND",
    c.Idle: "IDLE",
    c.Check: "CHECK",
    c.Close: "CLOSE",
    c.Unselect: "UNSELECT",
    c.Expunge: "EXPUNGE",
    c.Search: "SEARCH",
    c.Fetch: "FETCH",
    c.Store: "STORE",
    c.Copy: "COPY",
    c.Move: "MOVE",
    c.Sort: "SORT",
    c.Thread: "THREAD",
    c.Id: "ID",
    c.Compress: "COMPRESS",
}


def command_name(command: c.Command) -> str:
    """The command's name as sent, with its ``UID`` prefix (``"UID FETCH"``)."""
    if isinstance(command, c.UnknownCommand):
        return command.name
    name = _NAMES[type(command)]
    if isinstance(command, c.Expunge):
        return "UID EXPUNGE" if command.uid else name
    if getattr(command, "uid", False):
        return "UID " + name
    return name


def collects(name: str) -> frozenset[str]:
    """The kinds of untagged response a command of that name collects."""
    return _COLLECTS.get(name, frozenset())


class Pending:
    """A command sent (or being sent) and not yet answered."""

    __slots__ = (
        "command",
        "data",
        "done_sent",
        "exchange",
        "idle_started",
        "kinds",
        "name",
        "rounds",
        "tag",
    )

    def __init__(self, command: c.Command, exchange: ClientExchange | None = None) -> None:
        self.command = command
        self.tag = command.tag
        self.name = command_name(command)
        self.kinds = collects(self.name)
        self.data: list[Response] = []
        self.rounds = 0  # AUTHENTICATE challenges answered
        self.exchange = exchange
        self.idle_started = False
        self.done_sent = False

    @property
    def holds_line(self) -> bool:
        """Nothing else may be sent until this command's tagged response: STARTTLS
        (RFC 9051 §6.2.1), AUTHENTICATE (the client's lines answer challenges), IDLE
        (RFC 2177 §3), COMPRESS (RFC 4978 §3: compression starts right after it)."""
        return isinstance(self.command, c.StartTLS | c.Authenticate | c.Idle | c.Compress)
