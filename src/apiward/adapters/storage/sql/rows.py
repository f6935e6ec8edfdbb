"""Rows to records and back: the JSON lists, the credit columns and the enums that the
tables flatten."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from apiward.core.hygiene import HygienePolicy
from apiward.core.limits import Credits, Refill
from apiward.core.models import (
    ApiKey,
    EmailLink,
    LinkPurpose,
    OAuthClient,
    Organisation,
    RateOverride,
    Role,
)
from apiward.core.webhooks import WebhookDelivery, WebhookEndpoint

KEY_LISTS = ("scopes", "ip_allow", "space_allow")
BOUND_LISTS = ("operator_ip_allow", "operator_space_allow")
"""Lists of a key that may be NULL (not set by the operator)."""
CREDIT_COLUMNS = (
    "credits_remaining",
    "refill_amount",
    "refill_interval",
    "refill_day",
    "credits_refilled",
)
_BULK_FIELDS = tuple(name for name in ApiKey.__dataclass_fields__ if name != "credits")


def record(r: Any, cls: type[Any], **extra: Any) -> Any:
    """A record of ``cls`` from a row whose columns are its fields (``extra`` overrides)."""
    data = dict(r._mapping)
    data.update(extra)
    return cls(**data)


def credits_of(m: Any) -> Credits | None:
    """A key's credits from its credit columns; None for a key without credits."""
    if m["credits_remaining"] is None:
        return None
    refill = None
    if m["refill_amount"] is not None:
        refill = Refill(int(m["refill_amount"]), m["refill_interval"], int(m["refill_day"] or 1))
    refilled = m["credits_refilled"]
    return Credits(int(m["credits_remaining"]), refill, None if refilled is None else int(refilled))


def credit_values(credits: Credits | None) -> dict[str, Any]:
    """The credit columns of ``credits`` (all None for a key without credits)."""
    refill = credits.refill if credits else None
    return {
        "credits_remaining": credits.remaining if credits else None,
        "refill_amount": refill.amount if refill else None,
        "refill_interval": refill.interval if refill else None,
        "refill_day": refill.day if refill else None,
        "credits_refilled": credits.refilled if credits else None,
    }


def key_record(r: Any) -> ApiKey:
    m = r._mapping
    skip = {*KEY_LISTS, *BOUND_LISTS, *CREDIT_COLUMNS, "rate_limits", "meta"}
    return ApiKey(
        **{k: m[k] for k in m if k not in skip},
        meta=dict(m["meta"] or {}),
        scopes=tuple(m["scopes"]),
        ip_allow=tuple(m["ip_allow"]),
        space_allow=tuple(m["space_allow"]),
        rate_limits=tuple(RateOverride(**o) for o in m["rate_limits"] or ()),
        credits=credits_of(m),
        operator_ip_allow=_tuple_or_none(m["operator_ip_allow"]),
        operator_space_allow=_tuple_or_none(m["operator_space_allow"]),
    )


def _tuple_or_none(value: list[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def key_values(key: ApiKey) -> dict[str, Any]:
    values = asdict(key)
    for name in KEY_LISTS:
        values[name] = list(values[name])
    _bound_lists(values)
    values["rate_limits"] = [asdict(o) for o in key.rate_limits]
    values.pop("credits")
    values.update(credit_values(key.credits))
    return values


def bulk_key_values(key: ApiKey) -> dict[str, Any]:
    """``key_values`` without ``asdict``'s deep copies, a third of the cost."""
    values = {name: getattr(key, name) for name in _BULK_FIELDS}
    for name in KEY_LISTS:
        values[name] = list(values[name])
    _bound_lists(values)
    values["rate_limits"] = [asdict(o) for o in key.rate_limits]
    values.update(credit_values(key.credits))
    return values


def _bound_lists(values: dict[str, Any]) -> None:
    for name in BOUND_LISTS:
        if values[name] is not None:
            values[name] = list(values[name])


def client_record(r: Any) -> OAuthClient:
    m = r._mapping
    return OAuthClient(
        **{k: m[k] for k in m if k not in ("scopes", "meta")},
        scopes=tuple(m["scopes"]),
        meta=dict(m["meta"] or {}),
    )


def client_values(client: OAuthClient) -> dict[str, Any]:
    values = asdict(client)
    values["scopes"] = list(values["scopes"])
    return values


def role_record(r: Any) -> Role:
    m = r._mapping
    return Role(
        m["name"], tuple(m["scopes"]), m["description"], False, m["org_id"], m["created_at"]
    )


def link_record(r: Any) -> EmailLink:
    return record(r, EmailLink, purpose=LinkPurpose(r.purpose))  # type: ignore[no-any-return]


def webhook_record(r: Any) -> WebhookEndpoint:
    m = r._mapping
    return WebhookEndpoint(**{k: m[k] for k in m if k != "events"}, events=tuple(m["events"]))


def webhook_values(endpoint: WebhookEndpoint) -> dict[str, Any]:
    values = asdict(endpoint)
    values["events"] = list(endpoint.events)
    return values


def delivery_record(r: Any) -> WebhookDelivery:
    m = r._mapping
    fields = {k: m[k] for k in m if k not in ("locked_until", "attempt_log")}
    return WebhookDelivery(**fields, attempt_log=tuple(m["attempt_log"] or ()))


def delivery_values(delivery: WebhookDelivery) -> dict[str, Any]:
    values = asdict(delivery)
    values["attempt_log"] = list(delivery.attempt_log)
    return values


def policy_values(org: Organisation) -> dict[str, Any] | None:
    own = org.key_hygiene
    if own is None:
        return None
    return {
        "unused_days": own.unused_days,
        "expiry_days": list(own.expiry_days),
        "credit_percents": list(own.credit_percents),
        "shared_networks": own.shared_networks,
        "shared_countries": own.shared_countries,
        "shared_disable": own.shared_disable,
    }


def policy_of(value: Any) -> HygienePolicy | None:
    if value is None:
        return None
    return HygienePolicy(
        unused_days=value.get("unused_days"),
        expiry_days=tuple(value.get("expiry_days", ())),
        credit_percents=tuple(value.get("credit_percents", ())),
        shared_networks=value.get("shared_networks"),
        shared_countries=value.get("shared_countries"),
        shared_disable=bool(value.get("shared_disable", False)),
    )


def org_values(org: Organisation) -> dict[str, Any]:
    values = asdict(org)
    values["key_hygiene"] = policy_values(org)
    return values


def org_record(r: Any) -> Organisation:
    org: Organisation = record(r, Organisation, key_hygiene=policy_of(r._mapping["key_hygiene"]))
    return org
