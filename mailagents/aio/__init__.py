"""Thin asyncio adapters around the protocol cores: sockets, TLS, time-outs, limits.

An adapter reads from the transport, feeds the core, answers the core's decision events
through the application's handler and writes what the core gives back. It makes no
protocol decision of its own: those live in the cores (:mod:`mailagents.smtp`).

- :class:`SMTPServer` (and :func:`serve_smtp`): an SMTP or LMTP server; the application
  subclasses :class:`SMTPHandler`, and each call gets the connection's :class:`Session`.
"""

from mailagents.aio.smtp import Session, SMTPHandler, SMTPServer, serve_smtp

__all__ = ["SMTPHandler", "SMTPServer", "Session", "serve_smtp"]
