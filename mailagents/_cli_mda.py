"""The command line of the MDA (layer 5, beside ``__main__``): ``python -m mailagents
deliver`` and ``python -m mailagents lmtp``.

``deliver -d USER [-d USER ...] [-f SENDER] [options]`` reads one message on standard
input and delivers it to the local users named, as sendmail-style MDAs do, so that
fetchmail (``mda "python3 -m mailagents deliver -d %T -f %F ..."``), Postfix's
``mailbox_command`` or a procmail-style setup can call it. A leading mbox ``From ``
line is dropped (its sender used when ``-f`` is not given) and line ends become CRLF.
Exit status, from ``sysexits.h``: 0 when every copy is durable, 67 (EX_NOUSER) when a
recipient is unknown, 75 (EX_TEMPFAIL) when a failure is temporary (the caller keeps
the message and retries), 69 (EX_UNAVAILABLE) for another permanent failure (a loop,
a full mailbox with ``--quota-reply permanent``), 64 (EX_USAGE) for bad arguments, 78
(EX_CONFIG) for a users or aliases file in error.

``lmtp [--host H --port P | --socket PATH] [options]`` runs the LMTP server (RFC
2033) in front of the same MDA until SIGTERM or Ctrl-C.

The options both share: ``--users FILE`` and ``--aliases FILE`` (see
:class:`~mailagents.agents.LocalRecipients`; without ``--users``, each ``-d`` names a
user; without ``--aliases``, postmaster is the first user), ``--domain D`` (a local
domain, repeatable; by default the domains of the ``-d`` addresses and of the users
file, else ``localhost``), ``--mail TEMPLATE`` (each user's store, ``{user}``,
``{local}``, ``{domain}``; default ``mail/{user}/Maildir``), ``--format
maildir|mbox``, ``--quota-reply temporary|permanent`` and ``--max-received N``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
from collections.abc import Iterable, Sequence
from typing import BinaryIO

from mailagents.agents import MDA, LMTPServer, LocalRecipients
from mailagents.agents._recipients import parse_users
from mailagents.delivery import Handoff, MessageSpool, RecipientResult
from mailagents.smtp import AddressError, Envelope, Mailbox, Path, Recipient, parse_mailbox
from mailagents.smtp._params import MailParameters

__all__ = ["deliver", "lmtp"]

EX_OK = 0
EX_USAGE = 64
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75
EX_CONFIG = 78

_DEFAULT_MAIL = os.path.join("mail", "{user}", "Maildir")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", metavar="FILE", help="the users file (one per line, "
                        "an optional quota after it)")
    parser.add_argument("--aliases", metavar="FILE", help="the aliases file (aliases(5))")
    parser.add_argument("--domain", action="append", default=[], metavar="DOMAIN",
                        help="a local domain (repeat for several)")
    parser.add_argument("--mail", default=_DEFAULT_MAIL, metavar="TEMPLATE",
                        help="each user's store: {user}, {local}, {domain} "
                        f"(default {_DEFAULT_MAIL})")
    parser.add_argument("--format", choices=("maildir", "mbox"), default="maildir",
                        help="what --mail names (default maildir)")
    parser.add_argument("--quota-reply", choices=("temporary", "permanent"),
                        default="temporary", help="a full mailbox is 4.2.2 or 5.2.2")
    parser.add_argument("--max-received", type=int, default=100, metavar="N",
                        help="more Received: fields than this is a loop (default 100)")


def _recipients(args: argparse.Namespace, named: Sequence[str]) -> LocalRecipients:
    listed: list[str] = list(named)  # without a users file, each -d names a user
    if args.users is not None:
        with open(args.users, encoding="utf-8") as file:
            listed = list(parse_users(file.read(), args.users))
        if not listed:
            raise ValueError(f"{args.users}: no users")
    names = [*named, *listed]
    domains = list(args.domain) or sorted(
        {n.rpartition("@")[2].lower() for n in names if "@" in n}
    ) or ["localhost"]
    users: str | list[str] = args.users if args.users is not None else listed
    if not names:
        raise ValueError("--users is needed (no -d names a user)")
    if args.aliases is not None:
        return LocalRecipients(users, args.aliases, local_domains=domains)
    # No aliases file: postmaster is the first user (of the users file, not a -d
    # recipient, which may be an address extension or nobody at all).
    first = listed[0] if "@" in listed[0] else f"{listed[0]}@{domains[0]}"
    return LocalRecipients(users, {"postmaster": [first]}, local_domains=domains)


def _mda(args: argparse.Namespace, recipients: LocalRecipients) -> MDA:
    return MDA(args.mail, recipients, format=args.format, quota_reply=args.quota_reply,
               max_received=args.max_received)


# ---------------------------------------------------------------------------- deliver


def _lines(stream: BinaryIO) -> Iterable[bytes]:
    """The lines of ``stream`` with CRLF line ends (LF or CRLF in)."""
    for line in stream:
        if line.endswith(b"\r\n"):
            yield line
        elif line.endswith(b"\n"):
            yield line[:-1] + b"\r\n"
        else:
            yield line + b"\r\n"


def _error(text: str, command: str = "deliver") -> None:
    """A message for the user of the command line (standard error)."""
    print(f"mailagents {command}: {text}", file=sys.stderr)


def _mailbox(text: str, domain: str) -> Mailbox:
    text = text.strip().removeprefix("<").removesuffix(">")
    if "@" not in text:
        text = f"{text}@{domain}"
    return parse_mailbox(text, utf8=not text.isascii())


def deliver(argv: Sequence[str], stdin: BinaryIO | None = None) -> int:
    """The ``deliver`` sub-command; returns the exit status (see the module)."""
    parser = argparse.ArgumentParser(
        prog="python -m mailagents deliver",
        description="Deliver the message on standard input to local users "
        "(exit 0, 67 unknown user, 75 try again later, 69 refused).",
    )
    parser.add_argument("-d", dest="recipients", action="append", required=True,
                        metavar="USER", help="a recipient (repeat for several)")
    parser.add_argument("-f", dest="sender", metavar="SENDER",
                        help="the envelope sender (default: the From_ line's, else <>)")
    _common(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EX_USAGE if exc.code else EX_OK
    try:
        recipients = _recipients(args, args.recipients)
    except (OSError, ValueError) as exc:
        _error(str(exc))
        return EX_CONFIG
    domain = min(recipients.local_domains)
    try:
        rcpts = [_mailbox(r, domain) for r in args.recipients]
    except AddressError as exc:
        _error(str(exc))
        return EX_USAGE
    stream = stdin if stdin is not None else sys.stdin.buffer
    spool = MessageSpool()
    sender_text = args.sender
    first = True
    for line in _lines(stream):
        if first and line.startswith(b"From "):  # an mbox From_ line: not the message's
            if sender_text is None:
                sender_text = line[5:].split(None, 1)[0].decode("utf-8", "replace") \
                    if line[5:].strip() else ""
            first = False
            continue
        first = False
        spool.write(line)
    message = spool.finish()
    try:
        if not sender_text or sender_text in ("<>", "MAILER-DAEMON"):
            sender = Path(None)
        else:
            sender = Path(_mailbox(sender_text, domain))
    except AddressError as exc:
        _error(f"the sender: {exc}")
        return EX_USAGE
    envelope = Envelope(
        mail_from=sender,
        mail_parameters=MailParameters(),
        recipients=tuple(Recipient(path=Path(m)) for m in rcpts),
        size=message.size,
    )
    handoff = Handoff(id=secrets.token_hex(8), envelope=envelope, message=message)
    mda = _mda(args, recipients)
    try:
        results = asyncio.run(mda(handoff))
    except Exception as exc:  # the whole delivery failed: try again later
        _error(str(exc))
        return EX_TEMPFAIL
    finally:
        mda.close()
        message.close()
    return _exit_status(results)


def _exit_status(results: Sequence[RecipientResult]) -> int:
    """The worst fate among ``results`` as a sysexits status, each failure printed."""
    status = EX_OK
    for result in results:
        if result.delivered:
            continue
        reply = result.reply
        _error(f"{result.recipient.path}: {reply.code} {reply.enhanced} {' '.join(reply.lines)}")
        if result.status == "temporary":
            status = EX_TEMPFAIL  # retry: the worst for the caller to get wrong
        elif status != EX_TEMPFAIL:
            code = EX_NOUSER if reply.enhanced == "5.1.1" else EX_UNAVAILABLE
            status = code if status == EX_OK else min(status, code)
    return status


# ------------------------------------------------------------------------------- lmtp


def lmtp(argv: Sequence[str]) -> int:
    """The ``lmtp`` sub-command: run the LMTP server; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m mailagents lmtp",
        description="An LMTP server (RFC 2033) delivering to local users, on TCP or a "
        "Unix socket.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=2424, help="TCP port (0: a free one)")
    parser.add_argument("--socket", metavar="PATH", help="listen on this Unix socket instead")
    parser.add_argument("--socket-mode", type=lambda s: int(s, 8), default=0o660,
                        metavar="MODE", help="the socket file's mode (octal, default 660)")
    parser.add_argument("--hostname", default="localhost", help="the server's name")
    _common(parser)
    args = parser.parse_args(argv)
    if args.users is None:
        parser.error("--users is needed")
    try:
        recipients = _recipients(args, [])
    except (OSError, ValueError) as exc:
        _error(str(exc), "lmtp")
        return EX_CONFIG
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve_lmtp(args, recipients))
    except OSError as exc:
        _error(str(exc), "lmtp")
        return 1
    return EX_OK


async def _serve_lmtp(args: argparse.Namespace, recipients: LocalRecipients) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    mda = _mda(args, recipients)
    async with LMTPServer(args.hostname, mda, close_deliver=True) as server:
        if args.socket is not None:
            await server.serve_unix(args.socket, mode=args.socket_mode)
            where = args.socket
        else:
            await server.serve(args.host, args.port)
            where = f"{args.host}:{server.port}"
        print(f"mailagents lmtp: listening on {where}", flush=True)
        await stop.wait()
        print("mailagents lmtp: stopping", flush=True)
