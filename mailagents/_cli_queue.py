"""The command line of the queue (layer 5, beside ``__main__``): ``python -m
mailagents queue [--queue DIR] list|show|retry|delete``.

``list`` prints each queued message (its id, arrival, size, sender) and each recipient
still queued or failed, with its attempts, next try and last reply, as ``mailq``
does. ``show ID`` prints one message's whole state and its header section.
``retry [ID ...]`` makes the recipients of the messages named (all, without an id)
due now; ``delete ID ...`` removes messages without any notice. A running MTA takes
in what ``retry`` and ``delete`` changed within its poll interval (a minute by
default). Exit status: 0, 1 when an id is not in the queue, 64 for bad arguments.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from mailagents.queue import Queue, QueuedMessage, UnknownMessage

__all__ = ["DEFAULT_QUEUE", "main"]

DEFAULT_QUEUE = "spool/queue"
"""The queue directory when ``--queue`` is not given."""
EX_USAGE = 64


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _print_message(m: QueuedMessage, out: TextIO, *, all_recipients: bool) -> None:
    pending = len(m.pending)
    print(f"{m.id}  {m.size:>9}  {_when(m.arrival)}  <{m.sender}>  "
          f"({pending} of {len(m.recipients)} to go)", file=out)
    for r in m.recipients:
        if not all_recipients and r.state in ("delivered", "transferred", "relayed"):
            continue
        reply = ""
        if r.reply is not None:
            enhanced = f" {r.reply.enhanced}" if r.reply.enhanced else ""
            reply = f"  {r.reply.code}{enhanced} {' '.join(r.reply.lines)}"
        nxt = f" next {_when(r.next_attempt)}" if r.state == "queued" else ""
        print(f"    <{r.address}>  {r.state}, {r.attempts} attempt(s){nxt}"
              f"{'  via ' + r.remote_mta if r.remote_mta else ''}{reply}", file=out)


def main(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    """Run ``queue`` with ``argv`` (the words after it); returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m mailagents queue",
                                     description="Look at and act on the outbound queue.")
    parser.add_argument("--queue", metavar="DIR", default=DEFAULT_QUEUE,
                        help=f"the queue directory (default {DEFAULT_QUEUE})")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every queued message")
    show = commands.add_parser("show", help="one message, whole")
    show.add_argument("id")
    retry = commands.add_parser("retry", help="make messages due now (all without an id)")
    retry.add_argument("ids", nargs="*", metavar="ID")
    delete = commands.add_parser("delete", help="remove messages without a notice")
    delete.add_argument("ids", nargs="+", metavar="ID")
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exit:
        return EX_USAGE if exit.code else 0
    queue = Queue(args.queue)
    try:
        if args.command == "list":
            messages = queue.messages()
            for m in messages:
                _print_message(m, out, all_recipients=False)
            print(f"-- {len(messages)} message(s) in {queue.directory}", file=out)
        elif args.command == "show":
            m = queue.get(args.id)
            _print_message(m, out, all_recipients=True)
            for name in ("body", "smtputf8", "requiretls", "ret", "envid", "identity",
                         "client", "notice"):
                print(f"  {name}: {getattr(m, name)}", file=out)
            with queue.open(m.id) as content:
                print(content.header.decode("utf-8", "replace").rstrip("\r\n")
                      .replace("\r\n", "\n"), file=out)
        elif args.command == "retry":
            now = time.time()
            ids = args.ids or [m.id for m in queue.messages()]
            for id in ids:
                queue.retry(id, now=now)
            print(f"{len(ids)} message(s) due now", file=out)
        else:
            for id in args.ids:
                queue.delete(id)
            print(f"{len(args.ids)} message(s) deleted", file=out)
    except UnknownMessage as error:
        print(f"mailagents queue: no message {error.args[0]} in the queue", file=sys.stderr)
        return 1
    return 0
