"""``python -m mailagents sendmail [-t] [-i] [-f SENDER] [RECIPIENT ...]`` (layer 5): a
message on standard input into the MTA's queue, as programs call ``sendmail -t -i``.

``-t`` takes the recipients from the To, Cc and Bcc fields as well (as Postfix does:
those named on the command line are added), and removes Bcc from what is sent.
Without ``-i`` (or ``-oi``) a line holding only ``.`` ends the message, as in
sendmail. ``-f`` is the envelope sender (default: the login name at ``--domain``).
The message gets a ``Received:`` field naming the local user, and ``Date:`` and
``Message-ID:`` at the end of its header when it has none, as the MSA adds them (RFC
5322 §3.6 requires Date, §3.6.4 asks for a Message-ID). ``--queue DIR`` is the queue
(default ``spool/queue``, the serve configuration's default); a running MTA takes the
message within its poll interval (a minute by default). Exit status, from
``sysexits.h``: 0 once the message is durable in the queue, 64 for bad arguments or no
recipient, 65 for an address in error, 75 when the queue cannot be written (try again).
"""

from __future__ import annotations

import argparse
import email.utils
import getpass
import os
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from typing import BinaryIO

from mailagents._cli_mda import _lines, _mailbox
from mailagents.agents._headers import missing_fields, parse_fields
from mailagents.delivery import MessageSpool
from mailagents.queue import Queue
from mailagents.smtp import AddressError, Envelope, Mailbox, Path, Recipient
from mailagents.smtp._params import MailParameters

__all__ = ["main"]

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_TEMPFAIL = 75
_ADDRESS_FIELDS = (b"to", b"cc", b"bcc")


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mailagents sendmail",
        description="Put the message on standard input into the MTA's queue "
        "(sendmail -t -i compatible).",
    )
    parser.add_argument("-t", dest="from_headers", action="store_true",
                        help="recipients from To, Cc and Bcc too (Bcc removed)")
    parser.add_argument("-i", dest="ignore_dots", action="store_true",
                        help="a line with only '.' does not end the message")
    parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPT",
                        help="sendmail options: -oi is -i, the others are ignored")
    parser.add_argument("-f", "-r", dest="sender", metavar="SENDER",
                        help="the envelope sender")
    parser.add_argument("-F", dest="full_name", metavar="NAME", help="ignored")
    parser.add_argument("--queue", default="spool/queue", metavar="DIR",
                        help="the queue directory (default: %(default)s)")
    parser.add_argument("--domain", default=None, metavar="D",
                        help="the domain of bare user names (default: this host's name)")
    parser.add_argument("--hostname", default=None, help="the name in Received:")
    parser.add_argument("recipients", nargs="*", metavar="RECIPIENT")
    return parser.parse_args(argv)


def _header_fields(header: bytes) -> list[tuple[bytes, bytes]]:
    """The header section as (name, whole field with its folded lines)."""
    fields: list[tuple[bytes, bytes]] = []
    for line in header.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            name, text = fields[-1]
            fields[-1] = (name, text + line)
        elif b":" in line:
            fields.append((line.split(b":", 1)[0].strip().lower(), line))
    return fields


def _addresses(fields: Iterable[tuple[bytes, bytes]]) -> list[str]:
    values = [text.split(b":", 1)[1].decode("utf-8", "replace")
              for name, text in fields if name in _ADDRESS_FIELDS]
    return [address for _, address in email.utils.getaddresses(values) if address]


def main(argv: Sequence[str], stdin: BinaryIO | None = None) -> int:
    """Run ``sendmail``; returns the exit status (see the module text)."""
    try:
        args = _parse(argv)
    except SystemExit as exc:
        return EX_USAGE if exc.code else EX_OK
    ignore_dots = args.ignore_dots or "i" in args.options
    stream = stdin if stdin is not None else sys.stdin.buffer
    lines: list[bytes] = []
    for line in _lines(stream):
        if not ignore_dots and line == b".\r\n":
            break
        lines.append(line)
    data = b"".join(lines)
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, body = (b"", data) if not data or b":" not in data.split(b"\r\n", 1)[0] \
            else (data, b"")
    header = head + b"\r\n" if head and not head.endswith(b"\r\n") else head
    fields = _header_fields(header)
    domain = args.domain or socket.getfqdn() or "localhost"
    hostname = args.hostname or socket.getfqdn() or "localhost"
    wanted = list(args.recipients)
    if args.from_headers:
        wanted += _addresses(fields)
        fields = [(n, t) for n, t in fields if n != b"bcc"]
    try:
        mailboxes: list[Mailbox] = list(dict.fromkeys(_mailbox(r, domain) for r in wanted))
        sender = Path(_mailbox(args.sender or getpass.getuser(), domain)) \
            if args.sender not in ("<>", "") else Path(None)
    except AddressError as exc:
        print(f"mailagents sendmail: {exc}", file=sys.stderr)
        return EX_DATAERR
    if not mailboxes:
        print("mailagents sendmail: no recipient (name some, or use -t)", file=sys.stderr)
        return EX_USAGE
    received = (
        f"Received: by {hostname} (mailagents sendmail, from userid {os.getuid()});\r\n"
        f"\t{email.utils.formatdate(time.time(), localtime=True)}\r\n".encode()
    )
    # Date: and Message-ID: where missing, as the MSA adds them (RFC 6409 §8).
    missing = missing_fields(parse_fields(header), hostname)
    spool = MessageSpool()
    for piece in (received, *(text for _, text in fields), missing, b"\r\n", body):
        spool.write(piece)
    message = spool.finish()
    envelope = Envelope(
        mail_from=sender,
        mail_parameters=MailParameters(),
        recipients=tuple(Recipient(path=Path(m)) for m in mailboxes),
        size=message.size,
    )
    try:
        queued = Queue(args.queue).enqueue(envelope, message, identity=getpass.getuser())
    except OSError as exc:
        print(f"mailagents sendmail: cannot queue: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    finally:
        message.close()
    print(f"mailagents sendmail: queued as {queued.id}", file=sys.stderr)
    return EX_OK
