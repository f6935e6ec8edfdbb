"""The answers of ``GET /v1/keys/{id}/addresses`` and ``GET /v1/keys/{id}/impact`` (and
the clients' same routes): networks, never full addresses (``apiward.core.addresses``)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from apiward.core.addresses import EXACT_CAP, DayFigures
from apiward.core.impact import Impact, Refused
from apiward.core.scope_usage import date_of


class NetworkOut(BaseModel):
    prefix: str = Field(examples=["203.0.113.0/24"], description="A /24 (IPv4) or /48 (IPv6).")
    country: str | None = Field(
        examples=["FR"], description="ISO 3166-1 alpha-2; null: no country source placed it."
    )
    requests: int


class DayOut(BaseModel):
    day: date = Field(description="The UTC day.")
    requests: int = Field(description="Allowed requests counted on that day.")
    networks: int = Field(description="Distinct networks (/24 of IPv4, /48 of IPv6).")
    networks_exact: bool = Field(
        description=f"False: more than {EXACT_CAP} networks were seen by a process, and "
        "`networks` is a HyperLogLog estimate (standard error about 3.3%)."
    )
    countries: int | None = Field(
        description="Distinct countries (exact); null when no country source placed any."
    )
    top: list[NetworkOut] = Field(
        description=f"The networks kept exactly (up to {EXACT_CAP} per process and day), "
        "most requests first."
    )
    unlisted_requests: int = Field(
        description="Requests from networks beyond the exact ones: counted, network unknown."
    )

    @classmethod
    def of(cls, f: DayFigures) -> DayOut:
        return cls(
            day=date_of(f.day),
            requests=f.requests,
            networks=f.networks,
            networks_exact=f.exact,
            countries=f.countries,
            top=[
                NetworkOut(prefix=n.prefix, country=n.country, requests=n.requests) for n in f.top
            ],
            unlisted_requests=f.unlisted_requests,
        )


class AddressesOut(BaseModel):
    id: str
    since: datetime
    until: datetime
    days: list[DayOut] = Field(description="Each UTC day with counts, oldest first.")

    @classmethod
    def of(
        cls, credential_id: str, found: tuple[datetime, datetime, list[DayFigures]]
    ) -> AddressesOut:
        since, until, days = found
        return cls(id=credential_id, since=since, until=until, days=[DayOut.of(d) for d in days])


class RefusedOut(BaseModel):
    name: str = Field(description="A route, a scope or a network prefix.")
    requests: int
    verdict: str = Field(
        description="`refused`; or `unknown` for a network the proposed allow-list only "
        "partly covers (counted in the upper bound only)."
    )

    @classmethod
    def of(cls, r: Refused) -> RefusedOut:
        return cls(name=r.name, requests=r.requests, verdict=r.verdict)


class ImpactOut(BaseModel):
    id: str
    since: datetime = Field(description="The start of the UTC day six days before today.")
    until: datetime
    requests: int = Field(description="Allowed requests counted in the window (exact).")
    refused_at_least: int
    refused_at_most: int
    exact: bool = Field(description="Whether the two bounds are equal.")
    by_route: list[RefusedOut] = Field(
        description="Revoking or disabling: every route's requests (all refused)."
    )
    by_scope: list[RefusedOut] = Field(
        description="Scopes the proposal no longer grants, with the requests that needed "
        "them (a request needing two such scopes is in both)."
    )
    by_network: list[RefusedOut] = Field(
        description="Networks outside (`refused`) or partly outside (`unknown`) the "
        "proposed allow-list."
    )
    unlisted_requests: int = Field(
        description="Requests whose network was beyond the exact cap: their verdict is "
        "unknown (in the upper bound only)."
    )

    @classmethod
    def of(cls, credential_id: str, i: Impact) -> ImpactOut:
        return cls(
            id=credential_id,
            since=i.since,
            until=i.until,
            requests=i.requests,
            refused_at_least=i.refused_at_least,
            refused_at_most=i.refused_at_most,
            exact=i.exact,
            by_route=[RefusedOut.of(r) for r in i.by_route],
            by_scope=[RefusedOut.of(r) for r in i.by_scope],
            by_network=[RefusedOut.of(r) for r in i.by_network],
            unlisted_requests=i.unlisted_requests,
        )
