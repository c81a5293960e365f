"""``python -m mailagents serve --config FILE`` and ``python -m mailagents check-config
FILE`` (layer 5): run any set of agents from one TOML file (:mod:`mailagents._serve_config`).

:class:`Agents` builds them from a :class:`~mailagents._serve_config.ServeConfig`,
sharing what they can: one password file, one store resolver (one executor, one store
object per mailbox) and one MDA for local delivery, one queue between the MSA and the
MTA. It starts them, reloads the users and aliases on SIGHUP, and stops them on SIGTERM
or SIGINT: the listeners first (SMTP sessions get 421, IMAP ``* BYE``, POP3 sessions
end without deleting), then the MTA's delivery loop and the MRA; what is queued stays
queued.

Logs go to standard error through :mod:`logging`, one line each::

    2026-12-07 15:40:00,123 INFO mailagents.agents.mta: ...

(``%(asctime)s %(levelname)s %(name)s: %(message)s``, level from ``log_level``).
Standard output gets one line per listener once it listens (``listening: msa
submission 127.0.0.1:587``) and ``stopped`` at the end. Exit status: 0, 1 when an
agent could not start (a port in use), 78 for a configuration error (with its key).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mailagents._fetch_config import FetchConfig, parse_fetch_config
from mailagents._serve_config import ConfigError, ServeConfig, load_serve_config, local_recipients
from mailagents.agents import MAA, MDA, MRA, MSA, MTA, LMTPServer
from mailagents.delivery import Deliver, Handoff, RecipientResult
from mailagents.dns import MXResolver, ResolverConfig
from mailagents.store import StoreResolver
from mailagents.userdb import PasswordFile

__all__ = ["LOG_FORMAT", "Agents", "check_config", "serve"]

log = logging.getLogger("mailagents.serve")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The format of every log line."""
EX_CONFIG = 78


def _where(hosts: Sequence[str], port: int) -> str:
    host = hosts[0]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


Observer = Callable[[Handoff, Sequence[RecipientResult]], object]
"""Told of each local delivery the MDA made (the demo prints them)."""


class _Observed:
    """The MDA, with ``observe`` told of each delivery (its RCPT check passed on)."""

    def __init__(self, mda: MDA, observe: Observer) -> None:
        self.mda = mda
        self.observe = observe
        self.check_recipient = mda.check_recipient

    async def __call__(self, handoff: Handoff) -> list[RecipientResult]:
        results = await self.mda(handoff)
        try:
            self.observe(handoff, results)
        except Exception:
            log.exception("the delivery observer failed")
        return results


class Agents:
    """The agents a :class:`~mailagents._serve_config.ServeConfig` describes, built
    but not started (see the module text). ``observe`` is told of each local
    delivery."""

    def __init__(self, config: ServeConfig, *, observe: Observer | None = None) -> None:
        self.config = config
        """What was configured."""
        self.observe = observe
        self.users = PasswordFile(config.passwords) if config.passwords else None
        """The password file, if any."""
        self.stores: StoreResolver | None = None
        """Each local user's store."""
        self.mda: MDA | None = None
        """Local delivery."""
        self.msa: MSA | None = None
        self.mta: MTA | None = None
        self.lmtp: LMTPServer | None = None
        self.maa: MAA | None = None
        self.mra: MRA | None = None
        self.fetch: FetchConfig | None = None
        self._mra_stop = asyncio.Event()
        self._mra_task: asyncio.Task[None] | None = None
        self.listening: list[str] = []
        """``"msa submission 127.0.0.1:587"`` for each listener started."""
        try:
            self._build()
        except BaseException:
            self._close_sync()
            raise

    def _build(self) -> None:
        config = self.config
        context = config.ssl_context()
        local = config.local
        if local is not None:
            self.stores = StoreResolver(local.mailboxes, format=local.format)
            self.mda = MDA(self.stores, local_recipients(local, self.users or config.passwords))
        local_delivery: Deliver | None = self.mda
        if self.mda is not None and self.observe is not None:
            local_delivery = _Observed(self.mda, self.observe)
        if config.mta is not None:
            assert local is not None and self.mda is not None
            section = config.mta
            resolver = None
            if section.nameservers is not None:
                resolver = MXResolver(ResolverConfig(nameservers=section.nameservers,
                                                     port=section.dns_port))
            self.mta = MTA(
                config.hostname,
                local_domains=local.domains,
                queue=config.queue,
                deliver=local_delivery,
                relay_domains=section.relay_domains,
                relay_networks=section.relay_networks,
                users=self.users if section.auth else None,
                ssl_context=context,
                resolver=resolver,
                outbound_port=section.outbound_port,
                max_message_size=section.max_message_size,
            )
        if config.msa is not None:
            assert local is not None and self.users is not None and context is not None
            deliver = self.mta.delivery if self.mta is not None else local_delivery
            assert deliver is not None
            self.msa = MSA(
                config.hostname,
                self.users,
                deliver,
                local_domains=local.domains,
                ssl_context=context,
                relay=config.msa.relay,
                max_message_size=config.msa.max_message_size,
            )
        if config.lmtp is not None:
            assert self.mda is not None
            assert local_delivery is not None
            self.lmtp = LMTPServer(config.hostname, local_delivery)
        if config.maa is not None:
            assert self.users is not None and context is not None and self.stores is not None
            self.maa = MAA(config.hostname, self.users, self.stores, ssl_context=context,
                           allow_plaintext=config.maa.allow_plaintext)
        if config.fetch is not None:
            self.fetch = parse_fetch_config(config.fetch.table, base=config.base,
                                            where="fetch", default=local_delivery)
            self.mra = MRA(self.fetch.accounts, state_dir=self.fetch.state_dir)

    # --- running -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start every agent; if one cannot, stop those started and raise."""
        config = self.config
        try:
            if self.mta is not None and config.mta is not None:
                if config.mta.port is None:
                    self.mta.outbound.start()
                else:
                    await self.mta.serve(list(config.mta.host), config.mta.port)
                    self._listen("mta smtp", config.mta.host, self.mta.port)
            if self.msa is not None and config.msa is not None:
                section = config.msa
                await self.msa.serve(list(section.host), section.submission, section.submissions)
                if section.submission is not None:
                    self._listen("msa submission", section.host, self.msa.submission_port)
                if section.submissions is not None:
                    self._listen("msa submissions", section.host, self.msa.submissions_port)
            if self.lmtp is not None and config.lmtp is not None:
                if config.lmtp.socket is not None:
                    await self.lmtp.serve_unix(config.lmtp.socket)
                    self.listening.append(f"lmtp unix:{config.lmtp.socket}")
                else:
                    assert config.lmtp.port is not None
                    await self.lmtp.serve(list(config.lmtp.host), config.lmtp.port)
                    self._listen("lmtp", config.lmtp.host, self.lmtp.port)
            if self.maa is not None and config.maa is not None:
                m = config.maa
                await self.maa.serve(list(m.host), m.pop3, m.pop3s, m.imap, m.imaps)
                for name, wanted in (("pop3", m.pop3), ("pop3s", m.pop3s), ("imap", m.imap),
                                     ("imaps", m.imaps)):
                    if wanted is not None:
                        self._listen(f"maa {name}", m.host, getattr(self.maa, f"{name}_port"))
            if self.mra is not None:
                self._mra_task = asyncio.create_task(self.mra.run(self._mra_stop))
        except BaseException:
            await self.close()
            raise

    def _listen(self, what: str, hosts: Sequence[str], port: int) -> None:
        self.listening.append(f"{what} {_where(hosts, port)}")

    def reload(self) -> None:
        """Read the users and aliases files again (SIGHUP); on an error the tables in
        use stay and the error is logged. The password file is read again by itself
        whenever it changes."""
        if self.mda is None:
            return
        try:
            self.mda.recipients.reload()
        except (OSError, ValueError) as exc:
            log.error("reload failed, the old users and aliases stay: %s", exc)
            return
        log.info("users and aliases reloaded")

    async def close(self) -> None:
        """Stop the listeners, then the delivery loop and the MRA; close the stores."""
        listeners = [a for a in (self.msa, self.lmtp, self.maa) if a is not None]
        await asyncio.gather(*(a.close() for a in listeners), return_exceptions=True)
        if self.mta is not None:
            with contextlib.suppress(Exception):
                await self.mta.close()
        if self._mra_task is not None:
            self._mra_stop.set()
            with contextlib.suppress(Exception):
                await self._mra_task
        await asyncio.to_thread(self._close_sync)

    def _close_sync(self) -> None:
        if self.fetch is not None:
            self.fetch.close()
        if self.mda is not None:
            with contextlib.suppress(Exception):
                self.mda.close()
        if self.stores is not None:
            self.stores.close()
        if self.users is not None:
            self.users.close()


# --- the sub-commands -------------------------------------------------------------------


def _parse(prog: str, argv: Sequence[str], *, config_option: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m mailagents {prog}",
        description="Run the agents a TOML file describes (see docs/configuration.rst)."
        if config_option else "Check a serve configuration file and report every error.",
    )
    if config_option:
        parser.add_argument("--config", required=True, metavar="FILE", help="the TOML file")
    else:
        parser.add_argument("config", metavar="FILE", help="the TOML file")
    return parser.parse_args(argv)


def check_config(argv: Sequence[str]) -> int:
    """``check-config FILE``: 0 and a summary when the file is valid, else 78 and the
    error with its key."""
    try:
        args = _parse("check-config", argv, config_option=False)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 64
    try:
        config = load_serve_config(args.config)
        if config.fetch is not None:  # the accounts too (their destinations not opened)
            parse_fetch_config(config.fetch.table, base=config.base, where="fetch",
                               default=_NoDelivery()).close()
    except ConfigError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return EX_CONFIG
    agents = [name for name in ("msa", "mta", "lmtp", "maa", "fetch")
              if getattr(config, name) is not None]
    print(f"{args.config}: valid ({', '.join(agents)})")
    return 0


class _NoDelivery:
    """The stand-in destination while only checking."""

    async def __call__(self, handoff: Any) -> list[Any]:  # pragma: no cover - never called
        raise RuntimeError("checking only")


def serve(argv: Sequence[str]) -> int:
    """``serve --config FILE``: run until SIGTERM or SIGINT (see the module text)."""
    try:
        args = _parse("serve", argv, config_option=True)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 64
    try:
        config = load_serve_config(args.config)
    except ConfigError as exc:
        print(f"mailagents serve: {args.config}: {exc}", file=sys.stderr)
        return EX_CONFIG
    logging.basicConfig(level=config.log_level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    try:
        return asyncio.run(_run(config))
    except ConfigError as exc:
        print(f"mailagents serve: {args.config}: {exc}", file=sys.stderr)
        return EX_CONFIG


async def _run(config: ServeConfig) -> int:
    agents = Agents(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # pragma: no cover - Windows
            loop.add_signal_handler(signum, stop.set)
    with contextlib.suppress(NotImplementedError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, agents.reload)
    try:
        await agents.start()
    except OSError as exc:
        print(f"mailagents serve: cannot start: {exc}", file=sys.stderr)
        return 1
    for line in agents.listening:
        print(f"listening: {line}", flush=True)
    log.info("serving from %s", config.path)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await agents.close()
        print("stopped", flush=True)
    return 0
