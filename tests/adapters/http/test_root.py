"""``GET /``, health, readiness, OpenAPI and docs."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import Org


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
