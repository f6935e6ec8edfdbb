"""Slowing down password guessing: failed sign-ins counted per username and per IP."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from apiward.core.errors import LoginThrottled

_MAX_TRACKED = 100_000


class LoginThrottle:
    """Fixed windows of failures; past the limit, sign-in answers 429 until the window ends.

    Counts live in this process; a deployment of several processes multiplies the
    allowance by their number.
    """

    def __init__(
        self,
        max_per_user: int,
        max_per_ip: int,
        window: float,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = {"user": max_per_user, "ip": max_per_ip}
        self._window = window
        self._timer = timer
        self._failures: dict[tuple[str, str], tuple[float, int]] = {}

    def _count(self, kind: str, value: str) -> tuple[float, int]:
        now = self._timer()
        start, count = self._failures.get((kind, value), (now, 0))
        if now - start >= self._window:
            return now, 0
        return start, count

    def check(self, username: str, ip: str | None) -> None:
        for kind, value in (("user", username.lower()), ("ip", ip or "-")):
            start, count = self._count(kind, value)
            if count >= self._limits[kind]:
                retry = math.ceil(start + self._window - self._timer())
                raise LoginThrottled(max(retry, 1))

    def failed(self, username: str, ip: str | None) -> None:
        if len(self._failures) > _MAX_TRACKED:
            self._failures.clear()
        for kind, value in (("user", username.lower()), ("ip", ip or "-")):
            start, count = self._count(kind, value)
            self._failures[(kind, value)] = (start, count + 1)

    def succeeded(self, username: str) -> None:
        self._failures.pop(("user", username.lower()), None)
