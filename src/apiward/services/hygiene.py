"""Keys that look after themselves: unused keys disabled, expiries and spent credits
announced (core/hygiene.py says which notice is due; README, "Keeping keys healthy").

The scheduler of every server process runs ``Hygiene.run``. Each notice is written in
one transaction: the claim of its mark (``key_notices``, unique per key, kind and mark),
its audit event (and so its webhook, through the outbox), and for a disablement the
key's change. A claim another process made first inserts nothing, and that notice is
skipped, so that however many processes run at once, a notice goes out once. The email
to the key's creator is posted only after that transaction commits.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from apiward.core.clock import Clock
from apiward.core.hygiene import (
    ANOMALY,
    CREDITS_LOW,
    DISABLED_UNUSED,
    EXPIRING,
    Due,
    HygienePolicy,
    anomaly_due,
    credits_due,
    expiry_due,
    unused_due,
)
from apiward.core.jsontext import rfc3339
from apiward.core.models import ApiKey, Notice, RequestContext
from apiward.core.readings import Reading
from apiward.core.scope_usage import date_of, day_of
from apiward.services.addresses import figures_of
from apiward.services.audit import new_event
from apiward.services.keys import KeysTx, write_key_change
from apiward.services.ports import AnalyticsTx, Cache, HygieneTx, Mailer, Store

log = structlog.get_logger("apiward.hygiene")

_BATCH = 500
_SYSTEM = RequestContext(user_agent="apiward-hygiene")
_TEMPLATES = {
    EXPIRING: "key_expiring",
    CREDITS_LOW: "key_credits_low",
    DISABLED_UNUSED: "key_disabled_unused",
}


_DUE = {EXPIRING: expiry_due, CREDITS_LOW: credits_due, DISABLED_UNUSED: unused_due}


def _due(key: ApiKey, policy: HygienePolicy, now: datetime) -> list[Due]:
    found = (check(key, policy, now) for check in _DUE.values())
    return [due for due in found if due is not None]


class HygieneServiceTx(KeysTx, HygieneTx, AnalyticsTx, Protocol):
    """What a hygiene run reads and writes."""


@dataclass(frozen=True, slots=True)
class _Sent:
    key: ApiKey
    due: Due
    notice: Notice | None


class Hygiene:
    def __init__(
        self,
        store: Store[HygieneServiceTx],
        clock: Clock,
        cache: Cache,
        mailer: Mailer,
        policy: HygienePolicy,
    ) -> None:
        self._store = store
        self._clock = clock
        self._cache = cache
        self._mailer = mailer
        self.policy = policy
        """The operator's; an organisation's own only tightens it."""
        self.sent: Counter[str] = Counter()
        """Notices this process sent, by kind (for metrics)."""

    def readings(self) -> list[Reading]:
        return [
            Reading.counts(
                "key_hygiene_notices",
                "Key hygiene notices this process sent, by kind (key.expiring, "
                "key.credits_low, key.disabled_unused, key.anomaly).",
                ("kind",),
                self.sent,
            )
        ]

    async def run(self) -> Counter[str]:
        """Send every notice due now, once; what this call sent, by kind."""
        now = self._clock.now()
        async with self._store.begin() as tx:
            own = await tx.org_hygiene_policies()
        policies = {org_id: self.policy.tightened_by(p) for org_id, p in own.items()}
        every = [self.policy, *policies.values()]
        # Candidates for the widest policy in force; each key is then judged by its own.
        within = max((p.reminds_within for p in every if p.reminds_within), default=None)
        unused = min((p.unused_days for p in every if p.unused_days), default=None)
        sent: Counter[str] = Counter()
        after = ""
        while True:
            async with self._store.begin() as tx:
                keys = await tx.hygiene_candidates(
                    after,
                    _BATCH,
                    expiring_before=now + within if within else None,
                    unused_before=now - timedelta(days=unused) if unused else None,
                    refilling=any(p.credit_percents for p in every),
                )
                done = await tx.key_notices([k.id for k in keys])
            for key in keys:
                policy = policies.get(key.org_id, self.policy)
                for due in _due(key, policy, now):
                    if (key.id, due.kind, due.mark) in done:
                        continue
                    if await self._send(key, policy, due, now):
                        sent[due.kind] += 1
            if len(keys) < _BATCH:
                break
            after = keys[-1].id
        sent[ANOMALY] += await self._anomalies(now, policies)
        if not sent[ANOMALY]:
            del sent[ANOMALY]
        self.sent.update(sent)
        if sent:
            log.info(
                "key_hygiene_notices_sent", **{k.replace(".", "_"): n for k, n in sent.items()}
            )
        return sent

    async def _anomalies(self, now: datetime, policies: dict[str, HygienePolicy]) -> int:
        """Announce each key whose networks or countries of today (or of yesterday, whose
        last counts may have been flushed after midnight) reach its policy's threshold,
        once per key and day: ``key.anomaly``, and its disablement when the policy says.
        OAuth clients are counted and shown, not announced."""
        every = [self.policy, *policies.values()]
        networks = min((p.shared_networks for p in every if p.shared_networks), default=None)
        countries = min((p.shared_countries for p in every if p.shared_countries), default=None)
        if networks is None and countries is None:
            return 0
        sent = 0
        today = day_of(now)
        for day in (today - 1, today):
            async with self._store.begin() as tx:
                found = await tx.address_candidates(day, networks, countries)
                done = await tx.key_notices([cred for _, _, cred in found])
            mark = date_of(day).isoformat()
            for org_id, environment, credential in found:
                policy = policies.get(org_id, self.policy)
                if (credential, ANOMALY, mark) in done:
                    continue
                if await self._anomaly(org_id, environment, credential, day, policy, now):
                    sent += 1
        return sent

    async def _anomaly(
        self,
        org_id: str,
        environment: str,
        credential: str,
        day: int,
        policy: HygienePolicy,
        now: datetime,
    ) -> bool:
        async with self._store.begin() as tx:
            key = await tx.get_key(org_id, credential)
            if key is None or key.environment != environment or key.revoked_at is not None:
                return False  # an OAuth client, or a key revoked since
            found = await figures_of(tx, org_id, environment, credential, day, day)
            due = anomaly_due(found[0], policy) if found else None
            if due is None:
                return False
            if not await tx.claim_key_notice(key.id, org_id, due.kind, due.mark, now):
                return False  # another process sent it
            disable = policy.shared_disable and key.disabled_at is None
            event = new_event(
                ANOMALY,
                now,
                _SYSTEM,
                org_id=org_id,
                environment=environment,
                target_type="api_key",
                target_id=key.id,
                data={"name": key.name, **due.data, "disabled": disable},
            )
            if disable:
                await write_key_change(tx, replace(key, disabled_at=now, updated_at=now), event)
            else:
                await tx.insert_audit(event)
        if disable:
            self._cache.invalidate(key.digest)
        return True

    async def _send(self, key: ApiKey, policy: HygienePolicy, due: Due, now: datetime) -> bool:
        async with self._store.begin() as tx:
            current = await tx.get_key(key.org_id, key.id)
            fresh = _DUE[due.kind](current, policy, now) if current else None
            if current is None or fresh is None or fresh.mark != due.mark:
                return False  # used, changed or revoked since it was read
            due = fresh
            if not await tx.claim_key_notice(key.id, key.org_id, due.kind, due.mark, now):
                return False  # another process sent it
            event = new_event(
                due.kind,
                now,
                _SYSTEM,
                org_id=key.org_id,
                environment=key.environment,
                target_type="api_key",
                target_id=key.id,
                data={"name": current.name, **due.data},
            )
            if due.kind == DISABLED_UNUSED:
                await write_key_change(tx, replace(current, disabled_at=now, updated_at=now), event)
            else:
                await tx.insert_audit(event)
            notice = await self._notice(tx, current, due)
        if due.kind == DISABLED_UNUSED:
            self._cache.invalidate(key.digest)
        if notice is not None:
            self._mailer.post(notice)
        return True

    async def _notice(self, tx: HygieneServiceTx, key: ApiKey, due: Due) -> Notice | None:
        """The email to the key's creator, when that user has an address and is active."""
        user = await tx.get_user(key.org_id, key.created_by)
        if user is None or user.disabled_at is not None or not user.email:
            return None
        org = await tx.get_org(key.org_id)
        values = {
            "name": user.name or user.email,
            "key_name": key.name,
            "key_id": key.id,
            "environment": key.environment,
            "project": org.name if org else key.org_id,
        }
        data = due.data
        if due.kind == EXPIRING:
            assert key.expires_at is not None
            values |= {"days": str(data["days"]), "expires_at": rfc3339(key.expires_at)}
        elif due.kind == CREDITS_LOW:
            values |= {
                "percent": str(data["threshold_percent"]),
                "remaining": str(data["remaining"]),
                "amount": str(data["refill_amount"]),
                "interval": str(data["refill_interval"]),
            }
        else:
            last = key.last_used_at
            values |= {
                "days": str(data["unused_days"]),
                "last_used": rfc3339(last) if last else "never",
            }
        return Notice(_TEMPLATES[due.kind], user.email, values)
