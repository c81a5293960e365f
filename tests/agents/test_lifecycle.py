"""The lifecycle the MSA and the MAA share (mailagents/agents/_lifecycle.py): two
listeners started together, closed together even when starting fails half-way, their
ports, ``async with``; and the safe path component made from an address."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.agents._lifecycle import (
    AsyncClosing,
    bound_port,
    close_listeners,
    safe_name,
    start_pair,
)


class FakeListener:
    def __init__(self, implicit_tls: bool, fail: bool = False, throttle: Any = None) -> None:
        self.implicit_tls = implicit_tls
        self.fail = fail
        self.throttle = throttle if throttle is not None else object()
        self.started: tuple[Any, int] | None = None
        self.closed = False

    @property
    def port(self) -> int:
        assert self.started is not None
        return self.started[1] or 4242

    async def start(self, host: str | Sequence[str], port: int) -> None:
        if self.fail:
            raise OSError("address in use")
        self.started = (host, port)

    async def close(self, timeout: float | None = None) -> None:
        self.closed = True


class Agent(AsyncClosing):
    def __init__(self, fail_tls: bool = False, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})
        self.plain: FakeListener | None = None
        self.tls: FakeListener | None = None
        self.fail_tls = fail_tls
        self.closes = 0
        self.made: list[FakeListener] = []

    async def serve(self, plain: int | None, tls: int | None) -> None:
        def make(implicit_tls: bool, options: Mapping[str, Any]) -> FakeListener:
            listener = FakeListener(implicit_tls, fail=implicit_tls and self.fail_tls,
                                    throttle=options.get("throttle"))
            self.made.append(listener)
            return listener

        def keep(implicit_tls: bool, listener: FakeListener) -> None:
            if implicit_tls:
                self.tls = listener
            else:
                self.plain = listener

        await start_pair(self, make, keep, "127.0.0.1", plain, tls, self.options)

    async def close(self) -> None:
        self.closes += 1
        listeners = (self.plain, self.tls)
        self.plain = self.tls = None
        await close_listeners(*listeners)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 5))


def test_both_listeners_start_in_order_and_report_their_ports() -> None:
    agent = Agent()
    run(agent.serve(587, 465))
    assert [(x.implicit_tls, x.started) for x in agent.made] == [
        (False, ("127.0.0.1", 587)),
        (True, ("127.0.0.1", 465)),
    ]
    assert bound_port(agent.plain, "plain") == 587 and bound_port(agent.tls, "tls") == 465
    assert agent.closes == 0


def test_none_skips_a_listener() -> None:
    agent = Agent()
    run(agent.serve(None, 0))
    assert agent.plain is None and agent.tls is not None
    with pytest.raises(RuntimeError, match="the plain listener is not running"):
        bound_port(agent.plain, "plain")


def test_a_failed_start_closes_what_started_and_raises() -> None:
    agent = Agent(fail_tls=True)
    with pytest.raises(OSError, match="address in use"):
        run(agent.serve(587, 465))
    assert agent.closes == 1
    assert all(x.closed for x in agent.made) and len(agent.made) == 2
    assert agent.plain is None and agent.tls is None


def test_both_listeners_share_one_failed_login_throttle() -> None:
    agent = Agent()
    run(agent.serve(0, 0))
    assert agent.plain is not None and agent.tls is not None
    assert agent.tls.throttle is agent.plain.throttle
    given_throttle = object()
    agent = Agent(options={"throttle": given_throttle})
    run(agent.serve(0, 0))
    assert agent.plain is not None and agent.tls is not None
    assert agent.plain.throttle is agent.tls.throttle is given_throttle
    assert agent.options == {"throttle": given_throttle}  # the agent's own left as is


def test_async_with_closes() -> None:
    async def main() -> Agent:
        async with Agent() as agent:
            await agent.serve(1, 2)
            assert agent.closes == 0
        return agent

    agent = run(main())
    assert agent.closes == 1 and all(x.closed for x in agent.made)


def test_the_base_close_must_be_overridden() -> None:
    with pytest.raises(NotImplementedError):
        run(AsyncClosing().close())


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("alice@example.test", "alice@example.test"),
        ("a/b", "a%2Fb"),
        ("..", "%2E."),
        (".hidden", "%2Ehidden"),
        ("", "%00"),
        ("zoë", "zoë"),
        ("a b\x00", "a%20b%00"),
        ("../../etc", "%2E.%2F..%2Fetc"),
    ],
)
def test_safe_name(text: str, safe: str) -> None:
    assert safe_name(text) == safe


@given(st.text(max_size=30))
def test_safe_name_is_one_harmless_component(text: str) -> None:
    safe = safe_name(text)
    assert safe and "/" not in safe and "\x00" not in safe
    assert not safe.startswith(".")
