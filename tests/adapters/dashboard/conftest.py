"""Dashboard fixtures: the app at a loopback URL, and browsers signed in as someone."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from apiward.adapters.settings import Settings
from tests.conftest import Org

PASSWORD = "correct horse battery"
BASE_URL = "http://127.0.0.1:8000"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_SECRET = re.compile(r'id="secret"[^>]*value="([^"]+)"')


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The app at http://127.0.0.1, where the session cookie is not Secure (development)."""
    with TestClient(create_app(settings), base_url=BASE_URL, raise_server_exceptions=False) as c:
        yield c


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def secret_of(html: str) -> str:
    match = _SECRET.search(html)
    assert match, "the page shows no secret"
    return match.group(1)


class Browser:
    """One person's cookies on the shared TestClient (one app, one lifespan)."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.jar = httpx.Cookies()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        self.client.cookies = self.jar
        try:
            r: httpx.Response = self.client.request(method, path, follow_redirects=False, **kwargs)
            return r
        finally:
            self.jar = httpx.Cookies(self.client.cookies)
            self.client.cookies = httpx.Cookies()

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, data: dict[str, Any], *, csrf: str | None = None) -> httpx.Response:
        """POST a form with the token of this person's session (or the one given)."""
        token = csrf if csrf is not None else self.csrf()
        return self.request("POST", path, data={"csrf": token, **data})

    def csrf(self, page: str = "/dashboard/keys") -> str:
        return csrf_of(self.get(page).text)

    def sign_in(self, email: str, password: str = PASSWORD, **extra: str) -> httpx.Response:
        token = csrf_of(self.get("/dashboard/login").text)
        return self.request(
            "POST",
            "/dashboard/login",
            data={"csrf": token, "email": email, "password": password, **extra},
        )

    @property
    def session(self) -> str | None:
        return self.jar.get("apiward_session")


@pytest.fixture
def browser(client: TestClient) -> Callable[[], Browser]:
    """A factory of browsers with their own cookies."""
    return lambda: Browser(client)


@pytest.fixture
def owner(org: Org, browser: Callable[[], Browser]) -> Browser:
    """The owner of ``org``, signed in."""
    b = browser()
    assert b.sign_in("owner@acme.test").status_code == 303
    return b


@pytest.fixture
def signed_in(org: Org, browser: Callable[[], Browser]) -> Callable[..., Browser]:
    """A user of ``org`` with this role (in every space), signed in."""

    def make(role: str, email: str | None = None) -> Browser:
        org.create_user(email or f"{role}@acme.test", role, password=PASSWORD)
        b = browser()
        assert b.sign_in(email or f"{role}@acme.test").status_code == 303
        return b

    return make
