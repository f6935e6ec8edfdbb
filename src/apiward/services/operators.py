"""The deployment's operator: who the CLI and the leak responder act as.

The operator acts for an organisation as its first active owner, holding every scope
(the reserved ``owner:*`` and ``operator:*`` included: docs/authority.md); the
credential is ``cli``, which no request can present.
"""

from __future__ import annotations

from apiward.core.authority import EVERYTHING
from apiward.core.errors import NotFound
from apiward.core.models import (
    CredentialKind,
    Organisation,
    PageRequest,
    Principal,
    RequestContext,
)
from apiward.core.roles import OWNER
from apiward.services.ports import Store, TenancyTx
from apiward.services.tenancy import Tenancy

_ALL = PageRequest(page=1, page_size=1000)


class Operators:
    def __init__(self, store: Store[TenancyTx], tenancy: Tenancy) -> None:
        self._store = store
        self._tenancy = tenancy

    async def principal(self, org_id: str | None = None, environment: str = "live") -> Principal:
        """The principal the CLI acts as: the org's first active owner, with every scope."""
        org = await self.resolve_org(org_id)
        async with self._store.begin() as tx:
            space = await tx.default_space(org.id)
            users = await tx.list_users(org.id, _ALL)
            owner = None
            for user in users.items:
                memberships = await tx.list_memberships(org.id, user.id)
                if user.disabled_at is None and any(
                    m.role == OWNER and m.space_id is None for m in memberships
                ):
                    owner = user
                    break
        if owner is None or space is None:
            raise NotFound("owner of organisation", org.id)
        return Principal(
            org_id=org.id,
            environment=environment,
            space_id=space.id,
            user_id=owner.id,
            scopes=EVERYTHING,
            credential_id="cli",
            credential_kind=CredentialKind.OPERATOR,
            context=RequestContext(user_agent="apiward-cli"),
        )

    async def resolve_org(self, org_id: str | None) -> Organisation:
        """The organisation named by id or name; without one, the deployment's first
        organisation (the one ``apiward init`` made on a new deployment)."""
        orgs = await self._tenancy.list_orgs()
        if org_id:
            for org in orgs:
                if org_id in (org.id, org.name):
                    return org
            raise NotFound("organisation", org_id)
        if not orgs:
            raise NotFound(
                "organisation", "", message="No organisation exists yet: run 'apiward init'."
            )
        return orgs[0]  # oldest first

    async def chosen_by_default(self) -> Organisation | None:
        """The organisation a command acts on when none is named, if there is a choice."""
        orgs = await self._tenancy.list_orgs()
        return orgs[0] if len(orgs) > 1 else None
