"""``GET /``, health, readiness, OpenAPI and docs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from tests.conftest import Org, bootstrap, fast_settings, migrated_sqlite


def test_root_without_credential(client: TestClient) -> None:
    body = client.get("/").json()
    assert body["platform"] == "apiward"
    assert body["status"] == {"environment": None, "isAuthenticated": False}
    assert body["apiVersion"] is None
    assert body["requestOrigin"]["ipAddress"] == "testclient"


def test_root_with_test_and_live_keys(org: Org) -> None:
    test = org.client.get("/", headers=org.headers(org.owner_test_key)).json()
    assert test["status"] == {"environment": "test", "isAuthenticated": True}
    version = test["apiVersion"]
    assert version["id"] == "2026-11-01" and version["release"]["date"] == "2026-11-01"
    assert version["deprecated"] is False
    assert version["apiSchemas"]["openApi"].endswith("/openapi.json")
    live = org.client.get("/", headers=org.headers()).json()
    assert live["status"]["environment"] == "live"
    bad = org.client.get("/", headers=org.headers("aw_live_garbage")).json()
    assert bad["status"]["isAuthenticated"] is False


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"


def test_openapi_is_3_1_with_bearer_scheme(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    op = spec["paths"]["/v1/keys"]["post"]
    assert op["security"] == [{"bearer": []}]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text


def test_the_reference_needs_nothing_but_this_server(client: TestClient) -> None:
    import re

    page = client.get("/docs")
    assert "default-src 'none'; script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text  # no inline script: the CSP would refuse it
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text)  # nothing from elsewhere
    for asset in re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', page.text):
        answer = client.get(asset)
        assert answer.status_code == 200 and answer.content, asset
    assert client.get("/docs/assets/../../etc/passwd").status_code == 404
    assert client.get("/docs/assets/core.py").status_code == 404


def test_version_header_selects_a_known_version_and_rejects_others(tmp_path: Path) -> None:
    from apiward.adapters.settings import ApiVersion

    versions = [
        ApiVersion(id="2024-01-31", date=dt.date(2024, 1, 31), deprecated=True),
        ApiVersion(id="2025-06-20", name="caph", date=dt.date(2025, 6, 20)),
    ]
    settings = fast_settings(
        database_url=migrated_sqlite(tmp_path / "v.db"),
        api_versions=versions,
        version_header="X-Monite-Version",
    )
    with TestClient(create_app(settings)) as client:
        org = bootstrap(client)
        current = client.get("/", headers=org.headers()).json()["apiVersion"]
        assert current["id"] == "2025-06-20" and current["release"]["name"] == "caph"
        old = client.get("/", headers=org.headers(**{"X-Monite-Version": "2024-01-31"}))
        assert old.json()["apiVersion"]["deprecated"] is True
        bad = client.get("/v1/keys", headers=org.headers(**{"X-Monite-Version": "1999-01-01"}))
        assert bad.status_code == 400
        assert "2024-01-31, 2025-06-20" in bad.json()["message"]


def _geoip(path: Path) -> Path:
    """A small MaxMind DB built here: 203.0.113.0/24 is in Sierra Leone."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["203.0.113.0/24"]), {"country": {"iso_code": "SL"}})
    writer.insert_network(IPSet(["2001:db8::/32"]), {"registered_country": {"iso_code": "DE"}})
    writer.to_db_file(str(path))
    return path


def test_the_request_origins_country(tmp_path: Path) -> None:
    settings = fast_settings(
        database_url=migrated_sqlite(tmp_path / "geo.db"),
        trusted_proxies=["10.0.0.0/8"],
        country_header="CF-IPCountry",
        geoip_database=str(_geoip(tmp_path / "countries.mmdb")),
    )
    app = create_app(settings)
    via_proxy = TestClient(app, client=("10.0.0.2", 40000))
    direct = TestClient(app, client=("203.0.113.9", 40000))
    with via_proxy, direct:

        def origin(c: TestClient, **headers: str) -> dict[str, str]:
            found: dict[str, str] = c.get("/", headers=headers).json()["requestOrigin"]
            return found

        # From the trusted proxy: its country header, else the database on the client's IP.
        assert origin(via_proxy, **{"CF-IPCountry": "gh", "X-Forwarded-For": "198.51.100.1"}) == {
            "country": "GH",
            "ipAddress": "198.51.100.1",
        }
        assert origin(via_proxy, **{"X-Forwarded-For": "203.0.113.7"})["country"] == "SL"
        assert origin(via_proxy, **{"X-Forwarded-For": "2001:db8::1"})["country"] == "DE"
        assert (
            origin(via_proxy, **{"CF-IPCountry": "XX", "X-Forwarded-For": "198.51.100.1"})[
                "country"
            ]
            is None
        )
        # From anyone else the header is not believed: the database decides.
        assert origin(direct, **{"CF-IPCountry": "GH"}) == {
            "country": "SL",
            "ipAddress": "203.0.113.9",
        }


def test_without_a_source_the_country_is_null(client: TestClient) -> None:
    assert client.get("/", headers={"CF-IPCountry": "GH"}).json()["requestOrigin"] == {
        "country": None,
        "ipAddress": "testclient",
    }


def test_the_space_header_can_be_required(tmp_path: Path) -> None:
    settings = fast_settings(
        database_url=migrated_sqlite(tmp_path / "space.db"),
        space_header="Monime-Space-Id",
        require_space_header=True,
    )
    with TestClient(create_app(settings)) as c:
        org = bootstrap(c)
        r = c.get("/v1/keys", headers=org.headers())
        assert (r.status_code, r.json()["reason"]) == (400, "MISSING_SPACE")
        assert "Monime-Space-Id" in r.json()["message"]
        ok = c.get("/v1/keys", headers=org.headers(**{"Monime-Space-Id": org.space_id}))
        assert ok.status_code == 200
