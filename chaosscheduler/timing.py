"""Deadlines, not sleeps: poll a condition until it holds or the deadline passes (``time.monotonic``)."""

import time
from typing import Callable, Optional, TypeVar

__all__ = ["wait_until", "Deadline"]

T = TypeVar("T")


class Deadline:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.started = clock()
        self.at = self.started + seconds

    def remaining(self) -> float:
        return max(0.0, self.at - self.clock())

    def expired(self) -> bool:
        return self.clock() >= self.at

    def elapsed(self) -> float:
        return self.clock() - self.started


def wait_until(condition: Callable[[], Optional[T]], timeout: float, interval: float = 0.02,
               message: str = "condition", sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``condition`` every ``interval`` seconds until it returns a truthy value, and return that value.
    Raises ``TimeoutError`` naming ``message`` when ``timeout`` seconds pass first."""
    deadline = Deadline(timeout)
    while True:
        value = condition()
        if value:
            return value
        if deadline.expired():
            raise TimeoutError(f"{message} not reached within {timeout} s")
        sleep(min(interval, deadline.remaining()) or interval)
