"""The store contract of second factors: an authenticator waiting, enabled once, its
time steps used once and in order, recovery codes used once. Each test runs on SQLite
and on PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from apiward.core.models import MfaFactor, Organisation
from apiward.services.ports import Store, Transaction

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
OWNER = "acc_ada"


def _factor(sealed: str = "sealed-1", owner: str = OWNER) -> MfaFactor:
    return MfaFactor(owner_id=owner, secret_sealed=sealed, created_at=NOW)


async def test_an_enrolment_waits_is_replaced_and_is_enabled_once(
    store: Store[Transaction],
) -> None:
    async with store.begin() as tx:
        assert await tx.get_mfa(OWNER) is None
        await tx.put_mfa(_factor("sealed-1"))
        await tx.put_mfa(_factor("sealed-2"))  # started again: the new key waits
        assert await tx.get_mfa(OWNER) == _factor("sealed-2")

    async def confirm(i: int) -> bool:
        async with store.begin() as tx:
            return await tx.enable_mfa(OWNER, NOW, 100, [f"{i:064d}", f"{i + 10:064d}"])

    results = await asyncio.gather(*(confirm(i) for i in range(4)))
    assert sorted(results) == [False] * 3 + [True]
    async with store.begin() as tx:
        factor = await tx.get_mfa(OWNER)
        assert factor is not None and factor.enabled_at == NOW and factor.last_step == 100
        assert await tx.recovery_codes_left(OWNER) == 2  # one confirmation's codes only
        assert not await tx.enable_mfa(OWNER, NOW, 101, [])


async def test_a_step_is_used_once_and_never_an_earlier_one(store: Store[Transaction]) -> None:
    async with store.begin() as tx:
        await tx.put_mfa(_factor())
        assert not await tx.use_mfa_step(OWNER, 99)  # not enabled yet
        await tx.enable_mfa(OWNER, NOW, 100, [])

    async def use(step: int) -> bool:
        async with store.begin() as tx:
            return await tx.use_mfa_step(OWNER, step)

    assert not await use(100)  # the confirming code's step
    results = await asyncio.gather(*(use(101) for _ in range(6)))
    assert sorted(results) == [False] * 5 + [True]
    assert not await use(100)
    assert await use(103)
    assert not await use(102)
    async with store.begin() as tx:
        factor = await tx.get_mfa(OWNER)
    assert factor is not None and factor.last_step == 103


async def test_a_recovery_code_is_used_once_and_only_by_its_owner(
    store: Store[Transaction],
) -> None:
    digests = [f"{i:064x}" for i in range(3)]
    async with store.begin() as tx:
        await tx.put_mfa(_factor())
        await tx.enable_mfa(OWNER, NOW, 1, digests)
        await tx.put_mfa(_factor(owner="usr_bob"))
        await tx.enable_mfa("usr_bob", NOW, 1, [f"{9:064x}"])

    async def use(owner: str, digest: str) -> bool:
        async with store.begin() as tx:
            return await tx.use_recovery_code(owner, digest, NOW + timedelta(seconds=1))

    assert not await use("usr_bob", digests[0])  # another person's code
    results = await asyncio.gather(*(use(OWNER, digests[0]) for _ in range(6)))
    assert sorted(results) == [False] * 5 + [True]
    async with store.begin() as tx:
        assert await tx.recovery_codes_left(OWNER) == 2
        assert await tx.recovery_codes_left("usr_bob") == 1


async def test_turning_it_off_removes_the_factor_and_its_codes(store: Store[Transaction]) -> None:
    async with store.begin() as tx:
        await tx.put_mfa(_factor())
        await tx.enable_mfa(OWNER, NOW, 1, [f"{1:064x}"])
        assert await tx.delete_mfa(OWNER)
        assert await tx.get_mfa(OWNER) is None
        assert await tx.recovery_codes_left(OWNER) == 0
        assert not await tx.delete_mfa(OWNER)
        assert not await tx.use_recovery_code(OWNER, f"{1:064x}", NOW)
        # Enrolled again: the old codes are gone for good.
        await tx.put_mfa(_factor("sealed-3"))
        await tx.enable_mfa(OWNER, NOW, 1, [f"{2:064x}"])
        assert not await tx.use_recovery_code(OWNER, f"{1:064x}", NOW)


async def test_an_organisation_records_whether_it_requires_a_second_factor(
    store: Store[Transaction],
) -> None:
    org = Organisation("org_a", "Acme", NOW)
    async with store.begin() as tx:
        await tx.insert_org(org)
        assert await tx.get_org(org.id) == org
        assert org.require_mfa is False
        await tx.update_org(replace(org, require_mfa=True))
    async with store.begin() as tx:
        assert await tx.get_org(org.id) == replace(org, require_mfa=True)
