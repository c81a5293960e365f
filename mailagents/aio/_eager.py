"""Eager calls: run session work and the application's handler coroutines as far as
they go at once, without a task switch, and hand what must wait to a task.

Two pieces, both used by the SMTP adapter (:mod:`mailagents.aio.smtp`):

- :func:`run_as_task` runs a function from a transport callback as if the session's
  task ran it: in the task's :mod:`contextvars` context and with the task as
  ``asyncio.current_task()``, so that a handler's ``asyncio.timeout()`` and
  ``current_task()`` behave as they do inside the task. It needs asyncio's private
  ``_enter_task`` and ``_leave_task`` (what asyncio's eager tasks use); where they are
  missing (:data:`TASK_HOOKS` false) the caller leaves the work to the task.
- :func:`start` runs a coroutine up to its first suspension, as an eager task would:
  a handler that decides without waiting is finished there and then; one that waits
  comes back as a :class:`Suspended` for the task to await.

This is the only module of the package that calls asyncio's private functions.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import CoroutineType
from typing import Any, Generic, TypeVar, cast

__all__ = ["NOT_RUN", "TASK_HOOKS", "Suspended", "run_as_task", "start"]

_T = TypeVar("_T")

try:
    from asyncio.tasks import _enter_task, _leave_task

    TASK_HOOKS = True
    """asyncio has the hooks :func:`run_as_task` needs (every CPython from 3.7 to 3.13)."""
except ImportError:  # pragma: no cover - every CPython from 3.7 to 3.13 has them
    TASK_HOOKS = False


class _NotRun:
    """The type of :data:`NOT_RUN`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_RUN"


NOT_RUN = _NotRun()
"""What :func:`run_as_task` returns when it could not run the function."""


def run_as_task(
    loop: asyncio.AbstractEventLoop,
    task: asyncio.Task[Any],
    context: contextvars.Context,
    func: Callable[[], _T],
) -> _T | _NotRun:
    """Call ``func()`` now, in ``context`` and with ``task`` as the current task of
    ``loop``, and return its result; or :data:`NOT_RUN`, without calling it, when that
    cannot be done: another task is running (the caller is inside a task, not in a
    plain loop callback), ``context`` is entered already, or asyncio lacks the hooks.

    ``func`` must not raise: catch its exceptions and return them (a
    :class:`RuntimeError` from it would be taken for "context entered")."""
    if not TASK_HOOKS:  # pragma: no cover
        return NOT_RUN
    try:
        _enter_task(loop, task)
    except RuntimeError:  # inside another task
        return NOT_RUN
    try:
        return context.run(func)
    except RuntimeError:  # the context is in use
        return NOT_RUN
    finally:
        _leave_task(loop, task)


_UNSTARTED: Any = object()


class Suspended(Generic[_T]):
    """The rest of a call that could not finish at once: await it (once) for its
    result. What the awaiting task passes in (results, exceptions, cancellation) goes
    on to the coroutine.

    :attr:`call` is what was started (for the logs)."""

    __slots__ = ("_first", "call")

    def __init__(self, call: Awaitable[_T], first: Any = _UNSTARTED) -> None:
        self.call = call
        """The coroutine (started, suspended on ``first``) or other awaitable (not
        started)."""
        self._first = first

    def __await__(self) -> Generator[Any, Any, _T]:
        call = self.call
        value = self._first
        if value is _UNSTARTED:
            return (yield from call.__await__())
        coro = cast(Coroutine[Any, Any, _T], call)
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    value = coro.throw(exc)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]


def start(call: Awaitable[_T]) -> _T | Suspended[_T]:
    """Run the coroutine ``call`` as far as it goes without waiting: its result if it
    finished, else a :class:`Suspended` holding the rest. Its exception, if it raised
    before suspending, propagates. An awaitable that is not a coroutine is not started:
    it comes back as a :class:`Suspended` to await."""
    if type(call) is not CoroutineType:
        return Suspended(call)
    try:
        first = call.send(None)
    except StopIteration as done:
        return cast(_T, done.value)
    return Suspended(call, first)
