"""Waiting for something another thread or process does: the one polling helper of tests and benchmarks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_until(
    condition: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.01,
    gives_up: Callable[[], object] | None = None,
) -> bool:
    """Poll `condition` every `interval` seconds: True once it holds, False after `timeout` seconds.

    `gives_up` ends the wait early, with False, once it holds (the process being watched exited).
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if (gives_up is not None and gives_up()) or time.monotonic() > deadline:
            return bool(condition())
        time.sleep(interval)
    return True


async def until(
    condition: Callable[[], object], timeout: float = 20.0, what: str = "condition", interval: float = 0.02
) -> None:
    """`wait_until` on the event loop, which goes on meanwhile; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)
