"""Slowing down password guessing: failed sign-ins counted per username and per IP.

The counts live in the rate limiter, so they are shared by every process when Redis is
configured, like every other limit.
"""

from __future__ import annotations

import hashlib
import math

from apiward.core.errors import LoginThrottled, RateLimited
from apiward.core.limits import Hit, Policy
from apiward.services.ports import Limiter


class LoginThrottle:
    """Past ``per_user`` failures for a username, or ``per_ip`` from an address, within
    their window, sign-in answers 429 until enough time has passed.

    Every attempt reserves one failure from both budgets *before* its password is
    checked, in one limiter call, and a success gives them back: concurrent guesses can
    never get more checks than the budget, and during a lockout even the right password
    is refused.
    """

    def __init__(self, limiter: Limiter, per_user: Policy, per_ip: Policy) -> None:
        self._limiter = limiter
        self._policies = {"user": per_user, "ip": per_ip}

    def _keys(self, username: str, ip: str | None) -> list[tuple[Policy, str]]:
        values = {"user": username.strip().lower(), "ip": ip or "-"}
        return [(p, f"login:{kind}:{values[kind]}") for kind, p in self._policies.items()]

    def _hits(self, username: str, ip: str | None) -> list[Hit]:
        return [Hit(key, p.limit, p.period) for p, key in self._keys(username, ip)]

    async def reserve(self, username: str, ip: str | None) -> None:
        """Count this attempt as a failure now, or refuse it (429) past either budget."""
        decisions = await self._limiter.hit_all(self._hits(username, ip))
        refused = [d for d in decisions if not d.allowed]
        if refused:
            raise LoginThrottled(max(1, math.ceil(max(d.retry_after for d in refused))))

    async def succeeded(self, username: str, ip: str | None, *, forget: bool = True) -> None:
        """The attempt signed in: its reservation is given back and, with ``forget``,
        every failure counted against the username is forgotten.

        ``forget`` is for a username that names one person only: where several people
        share it (users that several organisations made with one address), one of them
        signing in must not wipe the failures counted against the others' passwords.
        """
        user, address = self._hits(username, ip)
        if forget:
            await self._limiter.reset(user.key)
        else:
            await self._limiter.refund([user])
        await self._limiter.refund([address])


class ActionThrottle:
    """Every attempt counts: sign-ups and emailed links, per address and per IP.

    An address is counted by its SHA-256, so the limiter (Redis, say) never holds it.
    Past either budget the action answers 429 with ``Retry-After``, whether or not the
    address has an account: the answer tells nothing about it.
    """

    def __init__(self, limiter: Limiter, per_email: Policy, per_ip: Policy) -> None:
        self._limiter = limiter
        self._per_email = per_email
        self._per_ip = per_ip

    async def spend(self, action: str, email: str, ip: str | None) -> None:
        address = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        hits = [
            Hit(f"portal:{action}:email:{address}", self._per_email.limit, self._per_email.period),
            Hit(f"portal:{action}:ip:{ip or '-'}", self._per_ip.limit, self._per_ip.period),
        ]
        decisions = await self._limiter.hit_all(hits)
        refused = [d for d in decisions if not d.allowed]
        if refused:
            wait = max(1, math.ceil(max(d.retry_after for d in refused)))
            raise RateLimited(
                wait,
                {"Retry-After": str(wait)},
                message=f"Too many attempts. Retry after {wait} seconds.",
            )
