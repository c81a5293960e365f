"""The mail retrieval agent (MRA): fetchmail's job. It polls remote POP3 (RFC 1939) or
IMAP (RFC 9051) accounts and hands each new message to a local delivery callable (an
:class:`~mailagents.agents.MDA`, :class:`~mailagents.agents.MaildirDelivery`, or
:class:`~mailagents.agents.SMTPForward` to re-inject it over SMTP or LMTP)::

    account = Account(name="work", protocol="imap", host="imap.example.org",
                      user="alice", password="secret", recipients=("alice@example.test",),
                      after="delete")
    mra = MRA([account], MaildirDelivery("mail/{user}/Maildir"), state_dir="fetch-state")
    reports = await mra.run_once()      # or: await mra.run(stop_event)

What it has fetched it remembers in one state file per account (POP3 by UIDL; IMAP by
UIDVALIDITY and UID, with a digest that recognises messages after a UIDVALIDITY
change), replaced atomically. A message is removed on the server (POP3 DELE then QUIT;
IMAP ``\\Deleted`` and UID EXPUNGE, or MOVE) only after the destination said it is
durable and the state file was saved: a crash between gives a duplicate on the next
run, never a loss.

TLS is required by default (implicit TLS, or ``tls="starttls"``, where a server that
does not offer STARTTLS is an error, not a reason to go on in the clear); the login
goes through the shared clients (SCRAM-SHA-256, PLAIN or LOGIN/USER). As a daemon
(:meth:`~mailagents.agents.MRA.run`), each account has its own schedule: IMAP IDLE
where the server offers it (RFC 2177), polling every ``interval`` seconds otherwise,
and a growing back-off after errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from mailagents.agents._lifecycle import AsyncClosing
from mailagents.agents._mra_fetch import (
    After,
    DeliveryRefused,
    FetchReport,
    HandOff,
    Limits,
    Skipped,
    fetch_imap,
    fetch_pop3,
)
from mailagents.agents._mra_handoff import SMTPForward, envelope_for, recipient
from mailagents.agents._mra_state import AccountMemory, StateError, state_path
from mailagents.aio.imap_client import IMAPClient, IMAPTimeouts
from mailagents.aio.pop3_client import POP3Client, POP3Timeouts
from mailagents.aio.tls import client_context
from mailagents.delivery import Deliver, Handoff, Message, all_delivered
from mailagents.imap.responses import ExistsData, RecentData
from mailagents.store._locking import FileLock, LockTimeout

__all__ = [
    "MRA",
    "Account",
    "AccountBusy",
    "After",
    "FetchReport",
    "SMTPForward",
    "Skipped",
    "StateError",
    "TLSMode",
]

log = logging.getLogger("mailagents.agents.mra")

TLSMode = Literal["implicit", "starttls", "none"]
"""How an account's connection is protected: implicit TLS (ports 995 and 993), STARTTLS
(STLS for POP3) required, or none (passwords in the clear: for a test server on
loopback only)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """One remote account the MRA fetches from."""

    name: str
    """A name of the user's choice: the key of the state file and the logs."""
    protocol: Literal["pop3", "imap"]
    """How to fetch."""
    host: str
    """The server's name (checked against its certificate)."""
    user: str
    """The login name."""
    password: str | Callable[[], str] = field(repr=False)
    """The password, or a callable giving it at each login (read from a file, a
    keyring...)."""
    recipients: tuple[str, ...]
    """The local addresses each message is handed to (its envelope recipients)."""
    port: int | None = None
    """The port (default 995/993 with implicit TLS, else 110/143)."""
    tls: TLSMode = "implicit"
    """See :data:`~mailagents.agents.mra.TLSMode`."""
    verify: bool = True
    """Verify the server's certificate and name (turn off for a test server only)."""
    ca_file: str | None = None
    """Trusted authorities instead of the system's (a PEM file)."""
    ssl_context: ssl.SSLContext | None = None
    """A TLS context of the caller's own, instead of ``verify`` and ``ca_file``."""
    mechanism: str | None = None
    """The login mechanism (default: SCRAM-SHA-256 when offered, else PLAIN, else
    LOGIN or USER/PASS)."""
    folders: tuple[str, ...] = ("INBOX",)
    """IMAP: the folders fetched, in order (IDLE watches the first)."""
    after: After = "keep"
    """What becomes of a remote message once it is safely here (POP3: ``"keep"`` or
    ``"delete"``)."""
    move_to: str | None = None
    """IMAP with ``after="move"``: the folder messages go to."""
    max_size: int | None = None
    """Messages larger than this (octets, as the server says) are left on the server
    and reported."""
    max_messages: int | None = None
    """At most this many messages per pass; the rest wait for the next."""
    interval: float = 300.0
    """Seconds between two passes when polling (and the longest wait in IDLE)."""
    idle: bool = True
    """IMAP: wait in IDLE for new mail where the server offers it."""
    timeout: float = 120.0
    """Seconds any one network step may take."""
    deliver: Deliver | None = field(default=None, repr=False)
    """This account's destination, instead of the MRA's."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("an account needs a name")
        if self.protocol not in ("pop3", "imap"):
            raise ValueError(f"{self.name}: protocol is 'pop3' or 'imap'")
        if self.tls not in ("implicit", "starttls", "none"):
            raise ValueError(f"{self.name}: tls is 'implicit', 'starttls' or 'none'")
        if self.after not in ("keep", "seen", "delete", "move"):
            raise ValueError(f"{self.name}: after is 'keep', 'seen', 'delete' or 'move'")
        if self.protocol == "pop3" and self.after not in ("keep", "delete"):
            raise ValueError(f"{self.name}: a POP3 account can only keep or delete")
        if (self.after == "move") != (self.move_to is not None):
            raise ValueError(f"{self.name}: move_to goes with after='move', and only with it")
        if self.move_to is not None and self.move_to in self.folders:
            # Moved messages get new UIDs there: each would be fetched a second time.
            raise ValueError(f"{self.name}: move_to may not be one of the folders fetched")
        if not self.recipients:
            raise ValueError(f"{self.name}: at least one recipient")
        for address in self.recipients:
            recipient(address)  # raises AddressError for a bad one
        if not self.folders:
            raise ValueError(f"{self.name}: at least one folder")
        for number, what in ((self.max_size, "max_size"), (self.max_messages, "max_messages")):
            if number is not None and number < 1:
                raise ValueError(f"{self.name}: {what} must be at least 1")
        if self.interval <= 0 or self.timeout <= 0:
            raise ValueError(f"{self.name}: interval and timeout must be positive")

    def secret(self) -> str:
        """The password now."""
        return self.password() if callable(self.password) else self.password

    def context(self) -> ssl.SSLContext | None:
        """The TLS context of the connection (``None`` without TLS)."""
        if self.tls == "none":
            return None
        if self.ssl_context is not None:
            return self.ssl_context
        return client_context(verify=self.verify, cafile=self.ca_file)


class MRA(AsyncClosing):
    """Fetches the ``accounts`` into ``deliver`` (each account may have its own
    ``deliver`` instead), remembering what it fetched in ``state_dir`` (one file per
    account; ``fsync=False`` is for tests only).

    :meth:`fetch` makes one pass over one account, :meth:`run_once` over every account
    (at the same time), :meth:`run` keeps going until told to stop. ``backoff`` is the
    first and the longest wait after a failed pass (doubling in between)."""

    def __init__(
        self,
        accounts: Sequence[Account],
        deliver: Deliver | None = None,
        *,
        state_dir: str | os.PathLike[str] = "fetch-state",
        fsync: bool = True,
        backoff: tuple[float, float] = (30.0, 3600.0),
    ) -> None:
        names = [a.name for a in accounts]
        if len(set(names)) != len(names):
            raise ValueError("account names must differ (each has its own state file)")
        if deliver is None and any(a.deliver is None for a in accounts):
            raise ValueError("give a deliver callable, to the MRA or to every account")
        first, longest = backoff
        if not 0 < first <= longest:
            raise ValueError("backoff is (first, longest) with 0 < first <= longest")
        self.accounts: tuple[Account, ...] = tuple(accounts)
        """The accounts, in order."""
        self.deliver = deliver
        """The destination of accounts without their own."""
        self.state_dir = os.fspath(state_dir)
        """Where the state files are."""
        self.fsync = fsync
        """Whether state files are fsynced."""
        self.backoff = (first, longest)
        """The first and the longest wait after a failed pass."""
        self._locks: dict[str, asyncio.Lock] = {}

    def account(self, name: str) -> Account:
        """The account called ``name`` (:class:`KeyError` if none)."""
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(name)

    def state_file(self, account: Account | str) -> str:
        """The path of an account's state file."""
        name = account if isinstance(account, str) else account.name
        return state_path(self.state_dir, name)

    # --- one pass ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, account: Account) -> AsyncIterator[None]:
        """One pass at a time per account, as they share its state file: in this MRA
        (a lock per account), and across processes (a daemon and a cron job, say) with
        ``flock`` on ``STATEFILE.lock``; a pass that finds it taken fails at once
        (:class:`AccountBusy`) rather than fetch the same messages twice."""
        async with self._locks.setdefault(account.name, asyncio.Lock()):
            path = self.state_file(account) + ".lock"
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            held = FileLock(path, timeout=0)
            try:
                held.acquire()
            except LockTimeout:
                raise AccountBusy(f"another pass over {account.name!r} is running "
                                  f"({path} is locked)") from None
            try:
                yield
            finally:
                held.release()

    async def fetch(self, account: Account | str) -> FetchReport:
        """One pass over ``account``: connect, log in, fetch what is new, act on the
        server, log out. Network and login errors propagate (a pass stopped by the
        destination reports it in ``error``)."""
        if isinstance(account, str):
            account = self.account(account)
        async with self._one_at_a_time(account):
            if account.protocol == "pop3":
                return await self._pop3_pass(account)
            async with await self._imap_connect(account) as client:
                return await self._imap_pass(account, client)

    async def run_once(self) -> list[FetchReport]:
        """One pass over every account, at the same time; a pass that failed is
        reported with its ``error``."""

        async def one(account: Account) -> FetchReport:
            try:
                return await self.fetch(account)
            except Exception as exc:
                log.warning("%s: %s", account.name, exc)
                return FetchReport(account=account.name, error=_describe(exc))

        return list(await asyncio.gather(*(one(a) for a in self.accounts)))

    # --- the daemon --------------------------------------------------------------------

    async def run(
        self,
        stop: asyncio.Event | None = None,
        *,
        on_report: Callable[[FetchReport], object] | None = None,
    ) -> None:
        """Fetch every account on its schedule until ``stop`` is set (forever without
        one); ``on_report`` is called with each pass's report."""
        stop = stop if stop is not None else asyncio.Event()
        tasks = [asyncio.create_task(self._loop(a, stop, on_report)) for a in self.accounts]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(
        self,
        account: Account,
        stop: asyncio.Event,
        on_report: Callable[[FetchReport], object] | None,
    ) -> None:
        failures = 0

        def succeeded() -> None:
            nonlocal failures
            failures = 0

        while not stop.is_set():
            try:
                if account.protocol == "imap" and account.idle:
                    await self._idle_session(account, on_report, succeeded)
                    wait = account.interval  # the server offers no IDLE: poll
                else:
                    report = await self.fetch(account)
                    _tell(on_report, report)
                    failures = failures + 1 if report.error else 0
                    wait = self._wait(failures, account)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if not isinstance(exc, _PassFailed):  # else its report was given
                    log.warning("%s: %s", account.name, _describe(exc))
                    _tell(on_report, FetchReport(account=account.name, error=_describe(exc)))
                wait = self._wait(failures, account)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    def _wait(self, failures: int, account: Account) -> float:
        if not failures:
            return account.interval
        first, longest = self.backoff
        return float(min(longest, first * 2.0 ** min(failures - 1, 30)))

    async def _idle_session(
        self,
        account: Account,
        on_report: Callable[[FetchReport], object] | None,
        succeeded: Callable[[], None],
    ) -> None:
        """Passes over one IMAP session, waiting in IDLE between them; returns when
        the server offers no IDLE (the caller polls) and raises when the session
        breaks. ``succeeded`` is called after each pass without error (the back-off
        starts afresh when a long session breaks)."""
        news = asyncio.Event()

        def heard(response: object) -> None:
            # A new message told of in the answer to one of the pass's own commands
            # (a UID EXPUNGE, a STORE) would not be told again in IDLE.
            if isinstance(response, ExistsData | RecentData):
                news.set()

        watched = account.folders[0]
        async with await self._imap_connect(account, on_update=heard) as client:
            at_once = 0
            while True:
                news.clear()
                marks: dict[str, int] = {}
                async with self._one_at_a_time(account):
                    report = await self._imap_pass(account, client, marks)
                _tell(on_report, report)
                if report.error is not None:
                    raise _PassFailed(report.error)
                succeeded()
                if not client.has("IDLE"):
                    return
                if report.left:
                    continue  # more to fetch at once
                if client.selected != watched:
                    again = await client.select(watched, readonly=account.after == "keep")
                    if again.uidnext and again.uidnext > marks.get(watched, again.uidnext):
                        news.set()  # arrived while the other folders were fetched
                if news.is_set() and at_once < 3:
                    at_once += 1  # bounded, should a server keep telling of news
                    continue
                at_once = 0
                await _wait_in_idle(client, account.interval)

    # --- the passes --------------------------------------------------------------------

    def _memory(self, account: Account) -> AccountMemory:
        return AccountMemory.load(self.state_file(account), fsync=self.fsync)

    def _limits(self, account: Account) -> Limits:
        return Limits(max_size=account.max_size, max_messages=account.max_messages)

    def _hand_off(self, account: Account) -> HandOff:
        deliver = account.deliver or self.deliver
        assert deliver is not None
        recipients = [recipient(a) for a in account.recipients]

        async def hand_off(id: str, message: Message) -> None:
            envelope = envelope_for(message, recipients)
            handoff = Handoff(id=f"{account.name}/{id}", envelope=envelope, message=message)
            results = await deliver(handoff)
            if all_delivered(results, recipients):
                return
            failed = [r for r in results if not r.delivered]
            text = "; ".join(f"{r.recipient.path}: {r.reply.code}" for r in failed)
            permanent = bool(failed) and all(r.status == "permanent" for r in failed)
            if permanent and any(r.delivered for r in results):
                # Delivered to some, refused for good for the others: the message is
                # here, and fetching it again would only give the first ones a copy
                # more at every pass.
                log.warning("%s: message %s refused for good for %s", account.name, id, text)
                return
            raise DeliveryRefused(text or "no result per recipient", permanent=permanent)

        return hand_off

    async def _pop3_pass(self, account: Account) -> FetchReport:
        memory = await asyncio.to_thread(self._memory, account)
        async with POP3Client.connect(
            account.host,
            account.port,
            implicit_tls=account.tls == "implicit",
            stls=account.tls == "starttls",
            ssl_context=account.context(),
            timeouts=POP3Timeouts.uniform(account.timeout),
        ) as client:
            await client.login(
                account.user,
                account.secret(),
                mechanism=account.mechanism,
                allow_plaintext=account.tls == "none",
            )
            report = await fetch_pop3(
                client,
                account.name,
                memory,
                self._hand_off(account),
                delete=account.after == "delete",
                limits=self._limits(account),
            )
            answer = await client.quit()  # commits the DELEs (RFC 1939 §6)
        if report.removed and (answer is None or not answer.ok):
            # The UPDATE state failed or went unconfirmed (RFC 1939 §6): the messages are
            # remembered, and the next pass finds and deletes those still there.
            said = f"-ERR {answer.text}" if answer is not None else "no answer"
            log.warning("%s: QUIT: %s; the deletions wait for the next pass", account.name, said)
            report = dataclasses.replace(report, removed=0, error=(
                f"QUIT: {said} (the deletions wait for the next pass)"))
        return report

    async def _imap_connect(
        self, account: Account, on_update: Callable[[object], None] | None = None
    ) -> IMAPClient:
        timeouts = IMAPTimeouts.uniform(account.timeout)
        client = await IMAPClient.connect(
            account.host,
            account.port,
            implicit_tls=account.tls == "implicit",
            starttls=account.tls == "starttls",
            ssl_context=account.context(),
            timeouts=timeouts,
            on_update=on_update,
        )
        try:
            await client.login(
                account.user,
                account.secret(),
                mechanism=account.mechanism,
                allow_plaintext=account.tls == "none",
            )
        except BaseException:
            await client.close()
            raise
        return client

    async def _imap_pass(
        self, account: Account, client: IMAPClient, uidnext: dict[str, int] | None = None
    ) -> FetchReport:
        memory = await asyncio.to_thread(self._memory, account)
        return await fetch_imap(
            client,
            account.name,
            memory,
            self._hand_off(account),
            folders=account.folders,
            after=account.after,
            move_to=account.move_to,
            limits=self._limits(account),
            uidnext=uidnext,
        )

    async def close(self) -> None:
        """Nothing to release: the destinations belong to the caller."""


async def _wait_in_idle(client: IMAPClient, longest: float) -> None:
    """IDLE until the server tells of new messages, or ``longest`` seconds."""
    async with client.idle() as news:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(longest):
                async for response in news:
                    if isinstance(response, ExistsData | RecentData):
                        return


class AccountBusy(Exception):
    """Another pass over the account (in this process or another) holds its lock."""


class _PassFailed(Exception):
    """A pass in an IDLE session stopped early (its report says why)."""


def _tell(on_report: Callable[[FetchReport], object] | None, report: FetchReport) -> None:
    if on_report is not None:
        try:
            on_report(report)
        except Exception:
            log.exception("on_report failed")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
