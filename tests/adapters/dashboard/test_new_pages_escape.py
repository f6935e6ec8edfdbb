"""Every string a tenant controls is shown escaped on the pages that show it: a key's,
a client's and a webhook endpoint's page, their lists and edit forms, and the overview
(the dashboard's CSP is the second line; this is the first)."""

from __future__ import annotations

from tests.adapters.dashboard.conftest import Browser
from tests.conftest import Org

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def test_tenant_strings_are_escaped_on_every_new_page(org: Org, owner: Browser) -> None:
    headers = org.headers()
    key = org.create_key(
        ["keys:read"], name=HOSTILE[:200], external_id="cus_<b>", meta={"<k>": HOSTILE}
    )
    client = org.client.post(
        "/v1/clients",
        headers=headers,
        json={"name": HOSTILE[:200], "scopes": ["keys:read"], "external_id": "cus_<i>"},
    ).json()
    hook = org.client.post(
        "/v1/webhooks",
        headers=headers,
        json={"url": "https://127.0.0.1:9/x", "events": ["*"], "description": HOSTILE},
    ).json()
    pages = [
        "/dashboard/overview",
        "/dashboard/keys",
        f"/dashboard/keys/{key['id']}",
        f"/dashboard/keys/{key['id']}/edit",
        "/dashboard/clients",
        f"/dashboard/clients/{client['client_id']}",
        f"/dashboard/clients/{client['client_id']}/edit",
        "/dashboard/webhooks",
        f"/dashboard/webhooks/{hook['id']}",
        f"/dashboard/keys?q={HOSTILE[:100]}",
    ]
    for path in pages:
        r = owner.get(path)
        assert r.status_code == 200, (path, r.status_code)
        assert "<script>alert" not in r.text, path
        assert "<img src=x" not in r.text, path
        assert '"><img' not in r.text, path  # no attribute value broken out of
    shown = owner.get(f"/dashboard/keys/{key['id']}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown  # shown, as text
