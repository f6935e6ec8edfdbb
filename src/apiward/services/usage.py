"""Keys' and clients' "last used", collected in memory and written in batches."""

from __future__ import annotations

from datetime import datetime

from apiward.services.ports import CredentialsTx, Store


class UsageRecorder:
    """Collects "last used" per credential in memory; the server flushes it in batches.

    Keys are recorded by id, OAuth clients as ``client:<id>``.
    """

    def __init__(self) -> None:
        self._pending: dict[str, tuple[datetime, str | None]] = {}

    def record(self, credential_id: str, at: datetime, ip: str | None) -> None:
        self._pending[credential_id] = (at, ip)

    def drain(self) -> list[tuple[str, datetime, str | None]]:
        pending, self._pending = self._pending, {}
        return [(cid, at, ip) for cid, (at, ip) in pending.items()]

    async def flush(self, store: Store[CredentialsTx]) -> int:
        """Write what was recorded since the last flush; the credentials written.

        A write that fails (the database is down) or is cancelled puts its times back,
        unless a later use was recorded meanwhile, so the next flush writes them: a use
        during an outage is not lost.
        """
        batch = self.drain()
        keys = [row for row in batch if not row[0].startswith("client:")]
        clients = [(cid[7:], at, ip) for cid, at, ip in batch if cid.startswith("client:")]
        if batch:
            try:
                async with store.begin() as tx:
                    if keys:
                        await tx.touch_keys(keys)
                    if clients:
                        await tx.touch_clients(clients)
            except BaseException:
                for cid, at, ip in batch:
                    self._pending.setdefault(cid, (at, ip))  # a later use stays
                raise
        return len(batch)
