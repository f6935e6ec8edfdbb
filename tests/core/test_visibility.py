"""Environment visibility: ``Principal.sees`` against the rule each place used to write."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from apiward.core.models import CredentialKind, Principal, visible_in
from apiward.core.scopes import ScopeSet

ENVIRONMENTS = ("live", "test", "staging")
environments = st.sampled_from(ENVIRONMENTS)
record_environments = st.one_of(st.none(), environments)


def principal(kind: CredentialKind, environment: str) -> Principal:
    return Principal(
        org_id="org_1",
        environment=environment,
        space_id="spc_1",
        user_id="usr_1",
        scopes=ScopeSet(["*"]),
        credential_id="cred_1",
        credential_kind=kind,
    )


def record_rule(p: Principal, environment: str) -> bool:
    """Keys, clients and webhook endpoints (``_get``): visible unless the principal is
    bound to an environment and the record is of another."""
    return not (not p.credential_kind.spans_environments and environment != p.environment)


def audit_rule(p: Principal, environment: str | None) -> bool:
    """The audit log: a bound principal's listing narrowed to its environment, which
    keeps events of none (``list_audit``); a spanning one sees every event."""
    if p.credential_kind.spans_environments:
        return True
    return environment == p.environment or environment is None


def verify_rule(p: Principal, environment: str) -> bool:
    """``POST /v1/keys/verify``: only the caller's own environment (HTTP callers are
    keys and tokens, which never span environments)."""
    return environment == p.environment


@given(st.sampled_from(list(CredentialKind)), environments, environments)
def test_records_of_an_environment_are_seen_as_every_place_saw_them(
    kind: CredentialKind, own: str, record: str
) -> None:
    p = principal(kind, own)
    assert p.sees(record) is record_rule(p, record)
    if not kind.spans_environments:
        assert p.sees(record) is verify_rule(p, record)


@given(st.sampled_from(list(CredentialKind)), environments, record_environments)
def test_audit_events_are_seen_as_the_audit_listing_saw_them(
    kind: CredentialKind, own: str, record: str | None
) -> None:
    p = principal(kind, own)
    assert p.sees(record) is audit_rule(p, record)
    # The listing's filter is the same rule, in the store.
    viewed = p.viewed_environment
    assert (viewed is None) is kind.spans_environments
    assert audit_rule(p, record) is (viewed is None or record in (viewed, None))


@given(environments, record_environments)
def test_a_webhook_endpoint_receives_what_a_principal_of_its_environment_sees(
    endpoint_environment: str, event_environment: str | None
) -> None:
    """``subscribed`` used ``event.environment in (None, endpoint.environment)``."""
    old = event_environment in (None, endpoint_environment)
    assert visible_in(event_environment, endpoint_environment) is old
    bound = principal(CredentialKind.API_KEY, endpoint_environment)
    assert bound.sees(event_environment) is old
