"""What the agents that serve one protocol on two listeners share: a port with
STARTTLS/STLS and one with implicit TLS (RFC 8314), started together, each one's bound
port, closed together, ``async with``; and the escaping that turns an address into a
safe path component for the agents' path templates."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from mailagents.aio import AuthThrottle
from mailagents.store import safe_name

__all__ = ["AsyncClosing", "Listener", "bound_port", "close_listeners", "safe_name", "start_pair"]


class Listener(Protocol):
    """What the agents need of a listener (:class:`~mailagents.aio.SMTPServer`,
    :class:`~mailagents.aio.POP3Server`)."""

    @property
    def port(self) -> int:
        """The bound port."""
        ...

    @property
    def throttle(self) -> AuthThrottle:
        """The failed-login throttle."""
        ...

    async def start(self, host: str | Sequence[str], port: int) -> None:
        """Start listening."""
        ...

    async def close(self, timeout: float | None = None) -> None:
        """Stop listening and end the sessions."""
        ...


L = TypeVar("L", bound=Listener)


class AsyncClosing:
    """``async with agent:`` closes the agent (its :meth:`close`) on the way out."""

    async def close(self) -> None:
        """Stop the agent (each agent says what that means)."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def start_pair(
    agent: AsyncClosing,
    make: Callable[[bool, Mapping[str, Any]], L],
    keep: Callable[[bool, L], None],
    host: str | Sequence[str],
    plain_port: int | None,
    tls_port: int | None,
    options: Mapping[str, Any],
) -> None:
    """Start the listener on ``plain_port`` (STARTTLS/STLS), then the one on
    ``tls_port`` (implicit TLS); ``None`` skips one. ``make(implicit_tls, options)``
    builds a listener with the agent's server ``options`` and ``keep(implicit_tls,
    listener)`` stores it in the agent before it starts, so that if anything fails,
    ``agent.close()`` (called before the exception propagates) stops whatever had
    started. Both listeners count failed logins together (unless ``options`` gives a
    throttle), so that a password guesser gets no second allowance on the other
    port."""
    shared = dict(options)
    try:
        for implicit_tls, port in ((False, plain_port), (True, tls_port)):
            if port is None:
                continue
            listener = make(implicit_tls, shared)
            shared.setdefault("throttle", listener.throttle)
            keep(implicit_tls, listener)
            await listener.start(host, port)
    except BaseException:
        await agent.close()
        raise


def bound_port(listener: Listener | None, what: str) -> int:
    """The bound port of ``listener``; :class:`RuntimeError` naming ``what`` if it is
    not running."""
    if listener is None:
        raise RuntimeError(f"the {what} listener is not running")
    return listener.port


async def close_listeners(*listeners: Listener | None) -> None:
    """Close every listener given (``None`` ones skipped) at once."""
    await asyncio.gather(*(x.close() for x in listeners if x is not None))


