"""The command line of the MRA (layer 5, beside ``__main__``): ``python -m mailagents
fetch --config FILE [--daemon] [--account NAME ...] [--check]``.

Without ``--daemon`` it makes one pass over every account (or those named) and prints
a line per account: what was fetched, removed, left for later, and each message left
on the server with the reason (too large, refused). With ``--daemon`` it keeps going,
each account on its schedule (IMAP IDLE where offered), until SIGINT or SIGTERM.
``--check`` only reads the configuration and reports its errors. Exit status: 0; 1
when a pass failed; 64 for bad arguments; 78 for a bad configuration (sysexits'
EX_CONFIG), with the key at fault.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TextIO

from mailagents._fetch_config import ConfigError, load_fetch_config
from mailagents.agents.mra import MRA, FetchReport

__all__ = ["main", "print_report"]

EX_CONFIG = 78


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the arguments of ``fetch`` (those after it)."""
    parser = argparse.ArgumentParser(
        prog="python -m mailagents fetch",
        description="Fetch mail from remote POP3 and IMAP accounts into local delivery "
        "(a fetchmail-like MRA), as the TOML configuration says.",
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="the TOML file")
    parser.add_argument("--daemon", action="store_true", help="keep fetching until stopped")
    parser.add_argument(
        "--account", action="append", default=[], metavar="NAME",
        help="only this account (may be repeated)",
    )
    parser.add_argument("--check", action="store_true", help="check the configuration only")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    return parser.parse_args(argv)


def print_report(report: FetchReport, out: TextIO) -> None:
    """One line for the account, one more per message left on the server."""
    parts = [f"{len(report.fetched)} fetched", f"{report.removed} removed"]
    if report.recognised:
        parts.append(f"{report.recognised} recognised after a UIDVALIDITY change")
    if report.left:
        parts.append(f"{report.left} left for the next pass")
    if report.skipped:
        parts.append(f"{len(report.skipped)} skipped")
    status = f"error: {report.error}" if report.error else "ok"
    print(f"{report.account}: {', '.join(parts)} ({status})", file=out, flush=True)
    for skipped in report.skipped:
        where = f"{skipped.folder} " if skipped.folder else ""
        print(f"  {where}{skipped.id}: {skipped.reason}", file=out, flush=True)


def main(argv: Sequence[str]) -> int:
    """Run ``fetch``; returns the exit status."""
    try:
        args = parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 64
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = load_fetch_config(args.config)
    except ConfigError as exc:
        print(f"mailagents fetch: {args.config}: {exc}", file=sys.stderr)
        return EX_CONFIG
    try:
        accounts = config.accounts
        if args.account:
            unknown = set(args.account) - {a.name for a in accounts}
            if unknown:
                print(f"mailagents fetch: no account {sorted(unknown)[0]!r}", file=sys.stderr)
                return 64
            accounts = tuple(a for a in accounts if a.name in args.account)
        if args.check:
            print(f"{args.config}: {len(accounts)} account(s), configuration valid")
            return 0
        mra = MRA(accounts, state_dir=config.state_dir)
        if args.daemon:
            asyncio.run(_daemon(mra))
            return 0
        reports = asyncio.run(mra.run_once())
        for report in reports:
            print_report(report, sys.stdout)
        return 1 if any(r.error for r in reports) else 0
    finally:
        config.close()


async def _daemon(mra: MRA) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # pragma: no cover - Windows
            loop.add_signal_handler(signum, stop.set)
    await mra.run(stop, on_report=lambda r: print_report(r, sys.stdout))
