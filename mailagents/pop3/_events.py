"""Events a :class:`~mailagents.pop3.ServerConnection` hands to the application, and the
decisions the application sends back.

Events marked *decision* pause the connection: ``next_event()`` returns ``PAUSED``
until the application answers (:class:`Accept`, :class:`Reject`, :class:`Maildrop`,
or one of the :mod:`mailagents.sasl` answers for ``sasl.NeedCredentials``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailagents._protocol import LocalProtocolError
from mailagents.pop3._response import Response, is_temporary

__all__ = [
    "Accept",
    "Authenticated",
    "AuthenticationFailed",
    "CommandRejected",
    "ConnectionClosed",
    "Maildrop",
    "MaildropEntry",
    "MessageChunk",
    "MessageEnd",
    "OpenMaildrop",
    "Quit",
    "Reject",
    "Retrieve",
    "StartTLS",
    "Update",
]

_UID_MAX = 70  # RFC 1939 §7: 1 to 70 characters in the range 0x21 to 0x7E


@dataclass(frozen=True, slots=True, kw_only=True)
class MaildropEntry:
    """One message of the maildrop as the application lists it at login.

    ``size`` is its exact size in octets *as it will be sent* (CRLF line ends, before
    dot-stuffing: RFC 1939 §5 LIST); ``uid`` its unique-id listing (RFC 1939 §7: 1 to 70
    characters from 0x21 to 0x7E, the same for the same message across sessions).
    """

    size: int
    uid: str

    def __post_init__(self) -> None:
        if self.size < 0:
            raise LocalProtocolError("MaildropEntry.size must not be negative")
        uid = self.uid
        if not 1 <= len(uid) <= _UID_MAX or not all("\x21" <= c <= "\x7e" for c in uid):
            raise LocalProtocolError(
                "MaildropEntry.uid must be 1-70 characters from 0x21 to 0x7E (RFC 1939 §7)"
            )


# --- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenMaildrop:
    """*Decision.* The credentials were right: open and lock the maildrop of
    ``identity``. Answer :class:`Maildrop` (the snapshot of its messages) or
    :class:`Reject` with for example ``Response(ok=False, code="IN-USE", ...)``
    (RFC 2449 §8.1.1), ``LOGIN-DELAY`` or ``SYS/TEMP`` (RFC 3206)."""

    identity: str
    """The authorised identity."""
    mechanism: str
    """``"USER"`` for USER/PASS, ``"APOP"``, or the SASL mechanism name."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticated:
    """The maildrop is open and ``+OK`` queued: the session is in TRANSACTION."""

    identity: str
    mechanism: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthenticationFailed:
    """USER/PASS, APOP or AUTH failed or was cancelled; ``reply`` has been queued. An
    adapter counts these to slow down password guessing, except the
    :attr:`temporary` ones."""

    mechanism: str
    reply: Response

    @property
    def temporary(self) -> bool:
        """The failure is the server's and may pass (``[SYS/TEMP]``, ``[IN-USE]``,
        ``[LOGIN-DELAY]``): not a wrong password, so not to be counted against the
        client; else it is permanent."""
        return is_temporary(self.reply)


@dataclass(frozen=True, slots=True, kw_only=True)
class Retrieve:
    """*Decision.* RETR (``lines`` is ``None``) or TOP (``lines`` body lines).

    Answer :class:`Accept`, then stream the message (CRLF or LF line ends, not
    dot-stuffed) with :class:`MessageChunk` and finish with :class:`MessageEnd`; or
    answer :class:`Reject` (``Response(ok=False, code="SYS/TEMP", ...)``) instead of
    :class:`Accept`."""

    number: int
    uid: str
    lines: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Update:
    """*Decision.* QUIT in TRANSACTION (RFC 1939 §6): remove the messages marked as
    deleted, then answer :class:`Accept`, or :class:`Reject` when some could not be
    removed. :class:`Quit` follows."""

    deleted: tuple[MaildropEntry, ...]
    numbers: tuple[int, ...]
    """The message numbers of ``deleted``, in the same order."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTLS:
    """STLS was accepted and ``+OK`` queued: send it, start TLS on the transport, then
    call :meth:`~mailagents.pop3.ServerConnection.tls_started` (RFC 2595 §4)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRejected:
    """The core answered a command with ``-ERR`` itself (unknown, out of sequence, bad
    arguments, too long). ``command`` is the verb as received, upper-cased (``""`` when
    it could not be read)."""

    command: str
    reply: Response

    @property
    def temporary(self) -> bool:
        """The refusal may pass (``[SYS/TEMP]``, ``[IN-USE]``, ``[LOGIN-DELAY]``)."""
        return is_temporary(self.reply)


@dataclass(frozen=True, slots=True, kw_only=True)
class Quit:
    """The session ended with QUIT and its response is queued: send it, then close."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    """The peer closed the connection without QUIT: nothing is deleted (RFC 1939 §6)."""


# --- decisions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Accept:
    """Accept a :class:`Retrieve` or an :class:`Update`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    """Refuse the event awaiting a decision with ``reply`` (an ``-ERR``)."""

    reply: Response

    def __post_init__(self) -> None:
        if self.reply.ok:
            raise LocalProtocolError("Reject needs an -ERR response (ok=False)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Maildrop:
    """The answer to :class:`OpenMaildrop`: the messages, numbered from 1 in order."""

    messages: tuple[MaildropEntry, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageChunk:
    """A piece of the message being retrieved, after :class:`Accept`. Any split is
    fine; the core dot-stuffs and fixes line ends."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEnd:
    """The message being retrieved is complete."""
