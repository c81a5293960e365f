"""The MTA's delivery loop: takes the due messages from the queue, delivers each
recipient (remote domains over SMTP to their MX hosts, local ones to a delivery
callable such as the MDA), records the outcomes, and queues the notices owed."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from mailagents.agents._bounce import DSNRecipient, build_dsn
from mailagents.agents._hop import MAX_RECIPIENTS, Hop, HopConfig, Job, refusal
from mailagents.agents._lifecycle import AsyncClosing
from mailagents.aio import TLSPolicy
from mailagents.aio.smtp_client import ClientTimeouts
from mailagents.delivery import Deliver, Handoff, RecipientResult
from mailagents.dns import DnsFailure, Exchanger, MXResolver, to_ascii
from mailagents.queue import Notice, Outcome, Queue, QueuedMessage, QueuedRecipient
from mailagents.smtp import (
    Envelope,
    Mailbox,
    MailParameters,
    Path,
    RcptParameters,
    Recipient,
    Reply,
    parse_mailbox,
)

__all__ = ["ConnectOptions", "Outbound", "QueueDelivery", "TLSChoice"]

log = logging.getLogger("mailagents.agents.mta")

P = ParamSpec("P")
T = TypeVar("T")

TLSChoice = TLSPolicy | Mapping[str, TLSPolicy] | Callable[[str, Exchanger], TLSPolicy] | None
"""The TLS policy of the outbound connections: one for all, one per destination
domain (a mapping; the domains it does not name get opportunistic TLS), or a callable
given the domain and the MX host. ``None``: opportunistic STARTTLS for all."""


def _tls_choice(choice: TLSChoice) -> Callable[[str, Exchanger], TLSPolicy] | None:
    if choice is None or callable(choice):
        return choice
    if isinstance(choice, TLSPolicy):
        policy = choice
        return lambda domain, exchanger: policy
    table = {to_ascii(domain): policy for domain, policy in choice.items()}
    default = TLSPolicy(mode="opportunistic")
    return lambda domain, exchanger: table.get(domain, default)


ConnectOptions = Callable[[str, Exchanger], dict[str, Any]]
"""Given the destination domain and the MX host, more keyword arguments for
:meth:`~mailagents.aio.SMTPClient.connect` (its TLS policy, say)."""

_LOCAL = ""  # the destination key of local recipients


async def _paired(
    job: Job, future: asyncio.Future[list[Outcome]]
) -> tuple[Job, list[Outcome] | BaseException]:
    try:
        return job, await future
    except Exception as error:
        return job, error


def _path(address: str) -> Path:
    """The path of an address as the queue keeps it (``str(Mailbox)``: a quoted local
    part stays quoted, so it is parsed, not split), or of a bare ``postmaster``."""
    if address.lower() == "postmaster":
        return Path(Mailbox(address, ""))
    return Path(parse_mailbox(address, utf8=True))


class _Destination:
    """The jobs waiting for one remote domain and the connections serving them."""

    def __init__(self, outbound: Outbound, domain: str, requiretls: bool = False) -> None:
        self.outbound = outbound
        self.domain = domain
        self.requiretls = requiretls  # its connections need verified TLS (RFC 8689)
        self.jobs: asyncio.Queue[tuple[Job, asyncio.Future[list[Outcome]]]] = asyncio.Queue()
        self.workers = 0
        self.idle = 0

    def submit(self, job: Job) -> asyncio.Future[list[Outcome]]:
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        self.jobs.put_nowait((job, future))
        self._staff()
        return future

    def _staff(self) -> None:
        out = self.outbound
        while self.workers < out.max_per_destination and self.jobs.qsize() > self.idle:
            self.workers += 1
            out._spawn(self._work())

    def _fail_waiting(self, first: tuple[Job, asyncio.Future[list[Outcome]]] | None,
                      status: str, reply: Reply) -> None:
        """Every job waiting here gets the same outcome (no route, no host answers)."""
        waiting = [first] if first is not None else []
        while not self.jobs.empty():
            waiting.append(self.jobs.get_nowait())
        for job, future in waiting:
            if not future.done():
                future.set_result([Outcome(index=i, status=status, reply=reply)  # type: ignore[arg-type]
                                   for i in job.indices])

    async def _work(self) -> None:
        out = self.outbound
        hop: Hop | None = None
        try:
            async with out._connections:
                route = await out.resolver.route(self.domain)
                if isinstance(route, DnsFailure):
                    code = 451 if route.temporary else 550
                    log.info("%s: %s", self.domain, route)
                    self._fail_waiting(None, "temporary" if route.temporary else "permanent",
                                       refusal(code, route.enhanced, route.reason))
                    return
                hop = Hop(out.hop_config, self.domain, list(route.targets()),
                          requiretls=self.requiretls)
                while True:
                    self.idle += 1
                    try:
                        item = await asyncio.wait_for(self.jobs.get(), out.idle_timeout)
                    except TimeoutError:
                        return
                    finally:
                        self.idle -= 1
                    job, future = item
                    if hop.client is None and not await hop.connect():
                        reply = hop.last_error or refusal(451, "4.4.4",
                                                          f"no host to reach for {self.domain}")
                        self._fail_waiting(item, "temporary", reply)
                        return
                    try:
                        content = await out._blocking(job.content)
                        try:
                            outcomes = await hop.deliver(job, content)
                        finally:
                            content.close()
                    except Exception as error:
                        # A bug or a broken disk: this job is tried again at the next
                        # pass (its message task logs it); the connection is dropped.
                        if not future.done():
                            future.set_exception(error)
                        await hop.close()
                        hop.rewind()  # the next job starts from the best MX again
                        continue
                    future.set_result(outcomes)
                    if hop.client is None:
                        hop.rewind()  # the connection ended: the next job tries every MX
        except Exception:
            log.exception("delivery to %s failed", self.domain)
            self._fail_waiting(None, "temporary",
                               refusal(451, "4.3.0", f"delivery to {self.domain} failed"))
        finally:
            if hop is not None:
                await hop.close()
            self.workers -= 1
            if not self.jobs.empty():
                self._staff()


class Outbound(AsyncClosing):
    """Delivers what is in ``queue``: the MTA's outbound side.

    Due recipients are grouped by destination domain. Each domain gets up to
    ``max_per_destination`` connections (``max_connections`` in all), found by MX
    lookup with ``resolver``; a connection delivers all of the domain's recipients of
    a message (in transactions of at most ``max_recipients``), then the next message
    waiting for that domain, and says QUIT after ``idle_timeout`` seconds without
    work. Recipients at ``local_domains`` (and a bare ``postmaster``) go to ``local``,
    a :data:`~mailagents.delivery.Deliver` such as the :class:`~mailagents.agents.MDA`.

    What each attempt did is recorded in the queue (see :mod:`mailagents.queue` for
    the retry schedule); the notices owed (failures, delays, successes asked for) are
    built (RFC 3464) and queued with ``MAIL FROM:<>``, and a failure of a message
    from ``<>`` is reported to ``postmaster`` instead.

    ``tls`` is the TLS policy of the outbound connections (see
    :data:`~mailagents.agents.TLSChoice`): by default opportunistic STARTTLS, the
    certificate not checked (RFC 7435), and a failed handshake defers to the next MX and
    a later try, never a silent retry in plaintext (a :class:`~mailagents.aio.TLSPolicy`
    with ``on_handshake_failure="plaintext"`` asks for that explicitly). A message that
    came with REQUIRETLS goes over connections of its own that require a verified
    certificate (RFC 8689 §4.1).
    ``connect_options`` gives more
    :meth:`~mailagents.aio.SMTPClient.connect` options per destination; ``port`` is
    the next hops' port (25; another one is for tests only) and ``source_address``
    the local address to connect from. ``clock`` is the time (``time.time``);
    blocking queue work runs in ``executor`` (a thread pool of its own by default).

    :meth:`start` runs the loop; :meth:`wake` says new mail was queued;
    :meth:`run_once` makes one pass (for tests and ``queue retry``).
    """

    def __init__(
        self,
        queue: Queue,
        *,
        hostname: str,
        resolver: MXResolver | None = None,
        local: Deliver | None = None,
        local_domains: Collection[str] = (),
        tls: TLSChoice = None,
        connect_options: ConnectOptions | None = None,
        port: int = 25,
        source_address: str | None = None,
        timeouts: ClientTimeouts | None = None,
        max_connections: int = 20,
        max_per_destination: int = 4,
        max_recipients: int = MAX_RECIPIENTS,
        idle_timeout: float = 2.0,
        poll_interval: float = 60.0,
        postmaster: str = "postmaster",
        clock: Callable[[], float] = time.time,
        executor: concurrent.futures.Executor | None = None,
    ) -> None:
        if max_connections < 1 or max_per_destination < 1 or max_recipients < 1:
            raise ValueError("the connection and recipient limits must be at least 1")
        self.queue = queue
        """The queue delivered from."""
        self.hostname = hostname
        """Our name: EHLO, Reporting-MTA, MAILER-DAEMON@."""
        self.resolver = resolver if resolver is not None else MXResolver()
        """The MX resolver."""
        self.local = local
        """Where local recipients go."""
        self.local_domains = frozenset(to_ascii(d) for d in local_domains)
        """The domains delivered locally (ASCII, lower-case)."""
        self.max_per_destination = max_per_destination
        """Connections per destination domain at most."""
        self.idle_timeout = idle_timeout
        """Seconds a connection waits for more work before QUIT."""
        self.poll_interval = poll_interval
        """Seconds between looks at the queue when nothing wakes the loop."""
        self.postmaster = postmaster
        """Where notices about failed notices go."""
        self.clock = clock
        """The time."""
        self.hop_config = HopConfig(
            hostname=hostname, port=port, source_address=source_address,
            timeouts=timeouts or ClientTimeouts(), max_recipients=max_recipients,
            tls=_tls_choice(tls), connect_options=connect_options,
        )
        """How next hops are spoken to."""
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=8, thread_name_prefix="mailagents-queue")
        self._own_executor = executor is None
        self._connections = asyncio.Semaphore(max_connections)
        self._destinations: dict[tuple[str, bool], _Destination] = {}
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self.attempts = 0
        """Recipient delivery attempts made (for logs and tests)."""

    # --- the loop ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the delivery loop (in the running event loop)."""
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run())

    def wake(self) -> None:
        """Look at the queue now (new mail was queued)."""
        self._wake.set()

    async def _run(self) -> None:
        refreshed = self.clock()
        while True:
            self._wake.clear()
            try:
                if self.clock() - refreshed >= self.poll_interval:
                    # What `python -m mailagents queue retry|delete` changed meanwhile.
                    refreshed = self.clock()
                    await self._blocking(self.queue.refresh)
                self._dispatch(await self._blocking(self.queue.due, self.clock()))
            except Exception:  # a broken disk must not end the loop
                log.exception("reading the queue failed")
            wait = self.poll_interval
            try:
                wakeup = await self._blocking(self.queue.next_wakeup, frozenset(self._busy))
            except Exception:
                log.exception("reading the queue failed")
                wakeup = None
            if wakeup is not None:
                # (Messages under way are left out: their end wakes the loop.)
                wait = min(wait, max(wakeup - self.clock(), 0.05))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def run_once(self, now: float | None = None) -> int:
        """Attempt every recipient due at ``now`` (default: the clock) and wait until
        each attempt is recorded; the number of messages attempted."""
        now = self.clock() if now is None else now
        tasks = self._dispatch(await self._blocking(self.queue.due, now), now)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        return len(tasks)

    def _dispatch(self, due: Sequence[QueuedMessage],
                  now: float | None = None) -> list[asyncio.Task[Any]]:
        started = []
        when = self.clock() if now is None else now
        for listed in due:
            if listed.id in self._busy:
                continue
            # The list was read in a worker thread: an attempt may have ended since.
            # Go by the message's state now, or not at all (it may be done).
            message = self.queue.current(listed.id)
            if message is None or not message.due(when):
                continue
            self._busy.add(message.id)
            started.append(self._spawn(self._attempt(message, now)))
        return started

    def offer(self, message: QueuedMessage) -> None:
        """Start on a message just queued, without a look at the whole queue (the
        loop must be running; otherwise it waits for the next pass)."""
        if self._runner is not None:
            self._dispatch([message])

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _blocking(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor,
                                          functools.partial(function, *args, **kwargs))

    # --- one message ----------------------------------------------------------------------

    def _destination_of(self, recipient: QueuedRecipient) -> str:
        domain = recipient.domain
        if not domain or domain in self.local_domains:
            return _LOCAL
        try:
            return to_ascii(domain) if not domain.startswith("[") else domain
        except ValueError:
            return domain

    async def _attempt(self, message: QueuedMessage, now: float | None) -> None:
        try:
            when = self.clock() if now is None else now
            groups: dict[str, list[int]] = {}
            for i in message.due(when):
                groups.setdefault(self._destination_of(message.recipients[i]), []).append(i)
            opener = functools.partial(self.queue.open, message.id)
            waits: list[Awaitable[tuple[Job, list[Outcome] | BaseException]]] = []
            for domain, indices in groups.items():
                job = Job(message=message, indices=tuple(indices), content=opener)
                if domain == _LOCAL:
                    future: asyncio.Future[list[Outcome]] = asyncio.ensure_future(
                        self._deliver_local(job))
                else:
                    key = (domain, message.requiretls)
                    destination = self._destinations.get(key)
                    if destination is None:
                        destination = self._destinations[key] = _Destination(
                            self, domain, message.requiretls)
                    future = destination.submit(job)
                waits.append(_paired(job, future))
            state = message
            for next_done in asyncio.as_completed(waits):
                job, result = await next_done
                if isinstance(result, BaseException):
                    # A bug or a broken disk: deferred by the schedule, not retried
                    # in a tight loop.
                    log.error("%s: delivery failed: %r", message.id, result)
                    reply = refusal(451, "4.3.0", "delivery failed here; will retry")
                    outcomes = [Outcome(index=i, status="temporary", reply=reply)
                                for i in job.indices]
                else:
                    outcomes = result
                self.attempts += len(outcomes)
                for o in outcomes:
                    r = message.recipients[o.index]
                    log.info("%s: to=<%s> relay=%s status=%s (%s)", message.id, r.address,
                             o.remote_mta or "local", o.status,
                             o.reply.text.splitlines()[0] if o.reply.text else o.reply.code)
                # Each destination's outcomes are on disk as soon as they are known:
                # a crash while another destination is slow sends nothing twice.
                when = self.clock() if now is None else now
                state = await self._blocking(self.queue.record, message.id, outcomes, now=when)
            await self._notify(state, self.clock() if now is None else now)
        except Exception:
            log.exception("%s: the attempt failed", message.id)
        finally:
            self._busy.discard(message.id)

    async def _deliver_local(self, job: Job) -> list[Outcome]:
        message = job.message
        if self.local is None:
            reply = refusal(451, "4.3.5", "no local delivery is configured")
            return [Outcome(index=i, status="temporary", reply=reply) for i in job.indices]
        recipients = [message.recipients[i] for i in job.indices]
        envelope = Envelope(
            mail_from=_path(message.sender) if message.sender else Path(None),
            mail_parameters=MailParameters(body=message.body, smtputf8=message.smtputf8),
            recipients=tuple(
                Recipient(path=_path(r.address),
                          parameters=RcptParameters(notify=r.notify, orcpt=r.orcpt))
                for r in recipients
            ),
            size=message.size,
        )
        content = await self._blocking(job.content)
        try:
            results = await self.local(Handoff(id=message.id, envelope=envelope,
                                               message=content, identity=message.identity))
        except Exception as error:
            log.error("%s: local delivery failed: %r", message.id, error)
            reply = refusal(451, "4.3.0", "local delivery failed")
            return [Outcome(index=i, status="temporary", reply=reply) for i in job.indices]
        finally:
            content.close()
        if len(results) != len(recipients):
            reply = refusal(451, "4.3.0", "local delivery gave no result")
            return [Outcome(index=i, status="temporary", reply=reply) for i in job.indices]
        return [Outcome(index=i, status=result.status, reply=result.reply)
                for i, result in zip(job.indices, results, strict=True)]

    # --- notices ----------------------------------------------------------------------

    async def _notify(self, state: QueuedMessage, now: float) -> None:
        for notice in self.queue.owed(state, now=now):
            try:
                await self._send_notice(state, notice, now)
            except Exception:
                log.exception("%s: could not queue the %s notice", state.id, notice.kind)
                continue
            state = await self._blocking(self.queue.mark_notified, state.id, notice.kind,
                                         notice.recipients, now=now)
            self.wake()  # the notice is due now
        if state.pending:
            self.wake()  # its next try changes when the loop must look again

    async def _send_notice(self, message: QueuedMessage, notice: Notice, now: float) -> None:
        to = self.postmaster if notice.to_postmaster else message.sender
        action = {"failure": "failed", "delay": "delayed", "success": "delivered"}[notice.kind]
        recipients = []
        for i in notice.recipients:
            r = message.recipients[i]
            this_action = "relayed" if r.state == "relayed" else action
            status = r.reply.enhanced if r.reply is not None and r.reply.enhanced else None
            if r.expired:
                status = "4.4.7"  # RFC 3463: delivery time expired
            if status is None:
                status = {"failed": "5.0.0", "delayed": "4.0.0"}.get(this_action, "2.0.0")
            recipients.append(DSNRecipient(
                final_recipient=r.address,
                original_recipient=r.orcpt,
                action=this_action,  # type: ignore[arg-type]
                status=status,
                remote_mta=r.remote_mta,
                diagnostic=r.reply,
                last_attempt=r.last_attempt,
                will_retry_until=(self.queue.schedule.expires(message.arrival)
                                  if notice.kind == "delay" else None),
            ))
        content = await self._blocking(self.queue.open, message.id)
        try:
            bounce = await self._blocking(
                functools.partial(
                    build_dsn, kind=notice.kind, reporting_mta=self.hostname,
                    recipients=recipients, original=content, to=to, envid=message.envid,
                    arrival=message.arrival, ret=message.ret,  # type: ignore[arg-type]
                    smtputf8=message.smtputf8, now=now,
                ))
        finally:
            content.close()
        envelope = Envelope(
            mail_from=Path(None),
            mail_parameters=MailParameters(body="8BITMIME" if bounce.eight_bit else None,
                                           smtputf8=bounce.smtputf8),
            recipients=(Recipient(path=_path(to), parameters=RcptParameters(
                notify=frozenset({"NEVER"}))),),
            size=bounce.message.size,
        )
        try:
            queued = await self._blocking(
                self.queue.enqueue, envelope, bounce.message, now=now,
                notice="postmaster" if notice.to_postmaster else "dsn")
        finally:
            bounce.message.close()
        log.info("%s: %s notice %s queued for <%s>", message.id, notice.kind, queued.id, to)

    # --- closing --------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the loop and every delivery under way (their recipients stay due)."""
        runner, self._runner = self._runner, None
        tasks = list(self._tasks) + ([runner] if runner is not None else [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._own_executor:
            self._executor.shutdown(wait=True)


class QueueDelivery:
    """A :data:`~mailagents.delivery.Deliver` that puts each message into ``queue``
    (durably) and hands it to ``outbound`` at once: every recipient is then "delivered" in the sense
    of the interface, the queue being responsible for it. The MSA's delivery when it
    submits into an MTA's queue."""

    def __init__(self, queue: Queue, outbound: Outbound | None = None) -> None:
        self.queue = queue
        """The queue written to."""
        self.outbound = outbound
        """The loop woken after each message, if any."""

    async def __call__(
        self, handoff: Handoff, *, client: str | None = None
    ) -> list[RecipientResult]:
        queued = await asyncio.to_thread(
            self.queue.enqueue, handoff.envelope, handoff.message,
            identity=handoff.identity, client=client,
        )
        if self.outbound is not None:
            self.outbound.offer(queued)
        reply = Reply(code=250, enhanced="2.0.0", lines=(f"Ok: queued as {queued.id}",))
        return [RecipientResult.ok(r, reply=reply) for r in handoff.envelope.recipients]
