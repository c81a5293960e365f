"""The command line: ``python -m mailagents``.

For now a demo: an SMTP (or LMTP) server on loopback that accepts every recipient and
prints each message it receives. Stop it with Ctrl-C (SIGINT) or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import signal
import sys
from collections.abc import Sequence

from mailagents import __version__
from mailagents.aio import Session, SMTPHandler, serve_smtp
from mailagents.smtp import Accept, Envelope, LMTPReplies, Reject, ServerConfig

__all__ = ["PrintingHandler", "main", "parse_args"]

BODY_LINES = 10
"""How many lines of each message body the demo prints."""


class PrintingHandler(SMTPHandler):
    """Accept every recipient and print each message: envelope, headers, first lines."""

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        """Print the message and accept it."""
        print(describe(envelope, message), flush=True)
        return Accept()


def describe(envelope: Envelope, message: bytes) -> str:
    """The text the demo prints for one message."""
    recipients = ", ".join(str(r.path) for r in envelope.recipients)
    out = [
        "-" * 72,
        f"From:     {envelope.mail_from}",
        f"To:       {recipients}",
        f"Size:     {envelope.size} octets{' (BDAT)' if envelope.chunked else ''}",
        "",
    ]
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    for name, value in parsed.items():
        out.append(f"{name}: {value}")
    _, sep, body = message.partition(b"\r\n\r\n")
    if sep:
        lines = body.split(b"\r\n")
        out.append("")
        out.extend(line.decode("utf-8", "replace") for line in lines[:BODY_LINES])
        if len(lines) > BODY_LINES and any(lines[BODY_LINES:]):
            out.append(f"[... {len(lines) - BODY_LINES} more lines]")
    out.append("-" * 72)
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m mailagents",
        description="mailagents demo: an SMTP server on loopback that accepts every "
        "recipient and prints each message it receives.",
    )
    parser.add_argument("--version", action="version", version=f"mailagents {__version__}")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=2525, help="port to listen on (0: any free port)"
    )
    parser.add_argument("--lmtp", action="store_true", help="speak LMTP (RFC 2033)")
    parser.add_argument(
        "--max-size",
        type=int,
        default=ServerConfig().max_message_size,
        metavar="N",
        help="largest message accepted, in octets (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    if args.max_size is not None and args.max_size < 1:
        parser.error("--max-size must be positive")
    return args


async def _serve(args: argparse.Namespace) -> None:
    config = ServerConfig(lmtp=args.lmtp, max_message_size=args.max_size)
    server = await serve_smtp(PrintingHandler(), config, host=args.host, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # pragma: no cover - Windows
            loop.add_signal_handler(signum, stop.set)
    async with server:
        kind = "LMTP" if args.lmtp else "SMTP"
        host = f"[{args.host}]" if ":" in args.host else args.host
        port = server.port
        print(
            f"mailagents demo: {kind} server listening on {host}:{port} (Ctrl-C to stop)",
            flush=True,
        )
        client = "LMTP" if args.lmtp else "SMTP"
        print(
            "Send a test message: python -c \"import smtplib; "
            f"smtplib.{client}('{args.host}', {port}).sendmail('me@example.test', "
            "['you@example.test'], 'Subject: hello\\r\\n\\r\\nHi!\\r\\n')\""
            + ("" if args.lmtp else f"  or: swaks --server {host}:{port} --to you@example.test"),
            flush=True,
        )
        await stop.wait()
        print("mailagents demo: stopping", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        asyncio.run(_serve(args))
    except OSError as exc:
        print(f"mailagents: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover - a signal before the handler was set
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
