"""The key formats of a deployment over time.

A deployment may change how it spells keys (a profile's ``key_prefix``, alphabet or
length). The format applies to new keys; keys issued earlier keep working. The store
records every format the server has issued keys in, and each start reads them back, so
an earlier key passes the offline format and checksum check of its own format
(``docs/operations.md``, "Changing the key format").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from apiward.core.clock import Clock
from apiward.core.keys import KeyFormat, KeyFormats
from apiward.services.ports import CredentialsTx, Store


@dataclass(frozen=True, slots=True)
class FormatsSeen:
    """What a start learnt: keys (not revoked) by display prefix."""

    earlier: dict[str, int]
    """Keys of an earlier recorded format, which keep working."""
    unrecorded: dict[str, int]
    """Keys of no recorded format and no imported prefix, which are refused: issued in a
    format changed before this deployment recorded formats."""


async def learn_formats(
    store: Store[CredentialsTx],
    clock: Clock,
    formats: KeyFormats,
    imported_prefixes: Sequence[str] = (),
    *,
    record: bool = True,
) -> FormatsSeen:
    """Teach ``formats`` the deployment's earlier formats; with ``record`` (a server
    start, not a CLI command), first record the current one."""
    async with store.begin() as tx:
        if record:
            await tx.record_key_format(formats.current.spec, clock.now())
        specs = await tx.key_formats()
        counts = await tx.key_prefix_counts()
    formats.learn([KeyFormat.from_spec(spec) for spec in specs])
    earlier: dict[str, int] = {}
    unrecorded: dict[str, int] = {}
    for prefix, count in sorted(counts.items()):
        kind = formats.issued_by(prefix)
        if kind == "earlier":
            earlier[prefix] = count
        elif kind is None and not imported(prefix, imported_prefixes):
            unrecorded[prefix] = count
    return FormatsSeen(earlier, unrecorded)


def imported(prefix: str, imported_prefixes: Sequence[str]) -> bool:
    """Whether a stored display prefix is one of keys brought from another system."""
    return any(prefix.startswith(p) or p.startswith(prefix) for p in imported_prefixes)


def format_of(prefix: str, formats: KeyFormats, imported_prefixes: Sequence[str]) -> str:
    """How a key of this display prefix is checked: ``current``, ``earlier``,
    ``imported`` (digest alone), or ``unrecorded`` (refused)."""
    kind = formats.issued_by(prefix)
    if kind is not None:
        return kind
    return "imported" if imported(prefix, imported_prefixes) else "unrecorded"
