"""The SDK quickstart (the Monogoto scenario) runs as written, against the fake server.

``QUICKSTART`` is the README's SDK example. Once the README holds it, the README's own
copy is executed too, so the two cannot drift apart silently.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from apiward.client.testing import FakeApiward

README = Path(__file__).parents[2] / "README.md"

QUICKSTART = """\
import os

from apiward.client import Client

with Client(
    os.environ.get("APIWARD_URL", "http://127.0.0.1:8000"),
    username=os.environ["APIWARD_USER"],
    password=os.environ["APIWARD_PASSWORD"],
) as client:
    things = client.get("/v1/things").json()  # signs in on first use
    print(f"Found {things['total']} thing(s):")
    for thing in client.paginate("/v1/things"):  # every page, 100 items a request
        print(f"  {thing['iccid']}  {thing['name']}  [{thing['status']}]")
"""

EXPECTED = """\
Found 2 thing(s):
  89370100002471565102  Device-001  [active]
  89370100002471565103  Device-002  [suspended]
"""


@pytest.fixture
def monogoto(monkeypatch: pytest.MonkeyPatch) -> FakeApiward:
    """The quickstart's world: one account, two SIMs, every HTTP call served by the fake."""
    fake = FakeApiward()
    fake.add_user("you@example.com", "your-password")
    fake.add_collection(
        "/v1/things",
        [
            {"iccid": "89370100002471565102", "name": "Device-001", "status": "active"},
            {"iccid": "89370100002471565103", "name": "Device-002", "status": "suspended"},
        ],
    )
    monkeypatch.setenv("APIWARD_URL", "https://api.monogoto.example")
    monkeypatch.setenv("APIWARD_USER", "you@example.com")
    monkeypatch.setenv("APIWARD_PASSWORD", "your-password")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    # The example builds its own client; give every default transport to the fake.
    monkeypatch.setattr(httpx._client, "HTTPTransport", lambda **kwargs: fake.transport())
    return fake


def run(code: str) -> None:
    exec(compile(code, "quickstart.py", "exec"), {"__name__": "__main__"})  # noqa: S102


def test_quickstart_signs_in_and_prints_the_things(
    monogoto: FakeApiward, capsys: pytest.CaptureFixture[str]
) -> None:
    """Password sign-in, ``client.get("/v1/things")``, and every item printed."""
    run(QUICKSTART)
    assert capsys.readouterr().out == EXPECTED
    assert monogoto.grants == {"password": 1}
    assert [r.url.host for r in monogoto.requests] == ["api.monogoto.example"] * 3


def test_readme_sdk_example_is_the_quickstart_and_runs(
    monogoto: FakeApiward, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's SDK block, once there, is this quickstart and runs the same."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    sdk_blocks = [block for block in blocks if "apiward.client" in block]
    if not sdk_blocks:
        pytest.skip("README.md has no apiward.client example yet")
    assert sdk_blocks[0] == QUICKSTART
    run(sdk_blocks[0])
    assert capsys.readouterr().out == EXPECTED
