"""Every limit and deadline of a listener and its sessions, in one frozen
:class:`ListenerLimits` (exported as :class:`mailagents.aio.ListenerLimits`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ListenerLimits"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerLimits:
    """Every limit and deadline of a listener and its sessions, with defaults fit for a
    public server. Times are in seconds."""

    backlog: int = 1024
    """Connections the kernel queues before they are accepted (``listen(2)``)."""
    reuse_port: bool = False
    """Listen with ``SO_REUSEPORT`` (Linux, the BSDs): several processes, each with its
    own server on the same address and port, then share the connections, which the
    kernel spreads among them. That is how one machine's CPUs all serve one port (one
    Python process uses one). The limits per address and the failed-login throttle
    then count per process."""
    max_connections: int = 1000
    """Sessions served at once; beyond it a client gets the protocol's refusal (421 in
    SMTP) and is disconnected."""
    max_connections_per_address: int = 50
    """Sessions served at once for one source address (see ``ipv6_prefix``); beyond it
    the protocol's refusal (421 4.7.0 in SMTP) while the others go on."""
    ipv6_prefix: int = 64
    """IPv6 clients are counted per network of this prefix length (one host usually
    owns a whole /64); IPv4 clients per address. 128 counts each IPv6 address."""

    idle_timeout: float = 300.0
    """The longest wait for the client to start its next command after a reply, and
    the longest silence inside one (RFC 5321 §4.5.3.2.7 asks for at least 5 minutes)."""
    command_timeout: float = 300.0
    """The longest time one command may take to arrive, from its first octet to its
    end, however slowly it trickles in (reads do not reset it)."""
    transfer_timeout: float = 1800.0
    """The longest time the content of one message (or literal) may take to arrive."""
    send_timeout: float = 300.0
    """How long the server waits for a client that does not read its replies (the
    write buffer stays above ``write_high_water``) before aborting the connection."""
    tls_handshake_timeout: float = 60.0
    """The longest TLS handshake, implicit or after STARTTLS."""

    read_high_water: int = 256 * 1024
    """Octets received but not yet processed before reading from the socket pauses
    (back-pressure while the handler is busy or the client does not read)."""
    write_high_water: int = 64 * 1024
    """Octets queued for the client before the session stops processing its input."""

    auth_failure_delay: float = 1.0
    """The delay before a failed login is answered; it doubles with each failure of the
    connection or of its source address (whichever counts more)."""
    max_auth_failure_delay: float = 10.0
    """The delay grows no further than this."""
    max_auth_failures: int = 3
    """After this many failed logins in one session it is closed (421 in SMTP)."""
    max_auth_failures_per_address: int = 10
    """After this many failed logins from one source address within
    ``auth_failure_window``, every further failure closes its session."""
    auth_failure_window: float = 900.0
    """How long a failed login counts against its source address."""

    shutdown_grace: float = 30.0
    """On close, how long sessions may go on to finish what they were doing (a
    transaction, a handler call) before they are sent the protocol's shutdown reply."""
    shutdown_timeout: float = 5.0
    """After the grace period, how long to wait for sessions still inside a handler
    call before cancelling them."""

    def __post_init__(self) -> None:
        for name in ("backlog", "max_connections", "max_connections_per_address",
                     "read_high_water", "write_high_water", "max_auth_failures",
                     "max_auth_failures_per_address"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("idle_timeout", "command_timeout", "transfer_timeout", "send_timeout",
                     "tls_handshake_timeout", "auth_failure_window"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        for name in ("auth_failure_delay", "max_auth_failure_delay", "shutdown_grace",
                     "shutdown_timeout"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must not be negative")
        if not 0 <= self.ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix must be between 0 and 128")
