"""A fetchmail replacement: pull the POP3 and IMAP accounts of a TOML file into local
Maildirs, once (from cron) or as a daemon.

    python examples/fetchmail_replacement.py fetch.toml            # one pass, then stop
    python examples/fetchmail_replacement.py fetch.toml --daemon   # until Ctrl-C/SIGTERM

The file has the keys of ``python -m mailagents fetch --config`` (docs/mra.rst), those
this example reads: ``state_dir``, the ``maildir`` template of ``[destination]``, and
for each ``[[account]]`` its settings with the password in ``password_env`` or
``password_file``::

    state_dir = "fetch-state"
    [destination]
    maildir = "mail/{user}/Maildir"

    [[account]]
    name = "home"
    protocol = "pop3"              # tls = "implicit": port 995
    host = "pop.example.org"
    user = "alice"
    password_env = "HOME_PASSWORD"
    recipients = ["alice@example.test"]
    after = "delete"               # removed there once it is durable here

    [[account]]
    name = "work"
    protocol = "imap"
    host = "imap.example.org"
    tls = "starttls"               # port 143, STARTTLS required
    user = "alice@work.example"
    password_file = "work.password"
    recipients = ["alice@example.test"]
    folders = ["INBOX", "Lists"]

Relative paths are from the file's folder. The :class:`~mailagents.agents.MRA` does
the work: TLS with the certificate verified, the strongest login offered, only new
messages (remembered in ``state_dir``, one file per account), each written durably
(:class:`~mailagents.agents.MaildirDelivery`) before the server copy is removed, so a
crash may fetch a message twice, never lose one; as a daemon, IMAP IDLE where offered.
The real command adds the other destinations (an MDA, SMTP, LMTP) and checks every key,
naming the one at fault.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tomllib
from pathlib import Path
from typing import Any

from mailagents.agents import MRA, Account, FetchReport, MaildirDelivery


def account(table: dict[str, Any], base: Path) -> Account:
    """One ``[[account]]`` table as an :class:`~mailagents.agents.Account`."""
    settings: dict[str, Any] = {key: tuple(value) if isinstance(value, list) else value
                                for key, value in table.items()}
    if "password_env" in settings:
        variable = settings.pop("password_env")
        if variable not in os.environ:
            raise SystemExit(f"account {table.get('name')!r}: {variable} is not set")
        settings["password"] = os.environ[variable]
    elif "password_file" in settings:
        password_file = base / settings.pop("password_file")
        settings["password"] = lambda: password_file.read_text().splitlines()[0]
    if "ca_file" in settings:
        settings["ca_file"] = str(base / settings["ca_file"])
    return Account(**settings)


def show(report: FetchReport) -> None:
    status = f"error: {report.error}" if report.error else "ok"
    print(f"{report.account}: {len(report.fetched)} new, {report.removed} removed ({status})",
          flush=True)


async def main(path: Path, daemon: bool) -> int:
    config = tomllib.loads(path.read_text())
    base = path.parent
    accounts = [account(table, base) for table in config["account"]]
    delivery = MaildirDelivery(str(base / config["destination"]["maildir"]))
    mra = MRA(accounts, delivery, state_dir=base / config.get("state_dir", "fetch-state"))
    try:
        if not daemon:
            reports = await mra.run_once()
            for report in reports:
                show(report)
            return 1 if any(report.error for report in reports) else 0
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await mra.run(stop, on_report=show)
        return 0
    finally:
        await delivery.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Fetch POP3 and IMAP mail into Maildirs.")
    parser.add_argument("config", type=Path, help="the TOML file")
    parser.add_argument("--daemon", action="store_true", help="keep fetching until stopped")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.config.absolute(), args.daemon)))
