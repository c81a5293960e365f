"""The command line: ``python -m mailagents``.

``python -m mailagents [--host H] [--port P] [--lmtp] [--max-size N]`` runs a demo: an
SMTP (or LMTP) server on loopback that accepts every recipient and prints each message
it receives. Stop it with Ctrl-C (SIGINT) or SIGTERM.

``python -m mailagents passwd FILE USER [--password-stdin] [--legacy-secret]
[--act-as NAME ...] [--delete] [--check]`` manages a password file
(:class:`mailagents.userdb.PasswordFile`): sets a user's password (asked twice on the
terminal, or read as one line from standard input), deletes a user, or checks a
password (exit status 0 when it is right, 1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import getpass
import signal
import sys
from collections.abc import Sequence

from mailagents import __version__
from mailagents.aio import Session, SMTPHandler, serve_smtp
from mailagents.smtp import Accept, Envelope, LMTPReplies, Reject, ServerConfig
from mailagents.userdb import PasswordFile

__all__ = ["PrintingHandler", "main", "parse_args", "parse_passwd_args", "passwd"]

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


def parse_passwd_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the arguments of the ``passwd`` sub-command (those after ``passwd``)."""
    parser = argparse.ArgumentParser(
        prog="python -m mailagents passwd",
        description="Set, check or delete a user's password in a mailagents password "
        "file (scrypt and SCRAM-SHA-256 secrets, never the password itself).",
    )
    parser.add_argument("file", metavar="FILE", help="the password file (created if missing)")
    parser.add_argument("user", metavar="USER", help="the user name")
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password as one line from standard input instead of the terminal",
    )
    parser.add_argument(
        "--legacy-secret",
        action="store_true",
        help="also store the password itself (plaintext-equivalent!) so that the user "
        "can log in with CRAM-MD5 or POP3 APOP",
    )
    parser.add_argument(
        "--act-as",
        action="append",
        metavar="NAME",
        help="an identity the user may act as (repeat for several; replaces the list; "
        "without it an existing user's list is kept)",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--delete", action="store_true", help="remove the user")
    action.add_argument(
        "--check",
        action="store_true",
        help="check a password: exit status 0 if it is right, 1 if not",
    )
    args = parser.parse_args(argv)
    if (args.delete or args.check) and (args.legacy_secret or args.act_as is not None):
        parser.error("--legacy-secret and --act-as only apply when setting a password")
    if args.delete and args.password_stdin:
        parser.error("--delete reads no password")
    return args


def _read_password(args: argparse.Namespace) -> str | None:
    """The password from standard input or the terminal; None (after a message) if none."""
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            print("mailagents passwd: no password on standard input", file=sys.stderr)
            return None
        return password
    password = getpass.getpass("Password: ")
    if not args.check and getpass.getpass("Password (again): ") != password:
        print("mailagents passwd: the passwords do not match", file=sys.stderr)
        return None
    if not password:
        print("mailagents passwd: empty password", file=sys.stderr)
        return None
    return password


def passwd(argv: Sequence[str]) -> int:
    """The ``passwd`` sub-command; returns the exit status. Prints nothing secret."""
    args = parse_passwd_args(argv)
    store = PasswordFile(args.file)
    try:
        if args.delete:
            if not store.delete(args.user):
                print(f"mailagents passwd: no user {args.user!r}", file=sys.stderr)
                return 1
            print(f"mailagents passwd: user {args.user!r} deleted")
            return 0
        password = _read_password(args)
        if password is None:
            return 1
        if args.check:
            ok = store.verify_password(args.user, password)
            print(f"mailagents passwd: password {'right' if ok else 'wrong'} for {args.user!r}")
            return 0 if ok else 1
        entry = store.set_password(
            args.user, password, legacy=args.legacy_secret, may_act_as=args.act_as
        )
    except ValueError as exc:
        print(f"mailagents passwd: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"mailagents passwd: {args.file}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    extra = " (with a plaintext-equivalent legacy secret)" if entry.legacy_secret else ""
    print(f"mailagents passwd: password set for {entry.name!r}{extra}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["passwd"]:
        return passwd(arguments[1:])
    args = parse_args(arguments)
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
