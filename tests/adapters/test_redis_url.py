"""``APIWARD_REDIS_URL`` names one server or a Sentinel group; a malformed one is one
line of the configuration check, with its password masked."""

from __future__ import annotations

import pytest

from apiward.adapters import redis_url
from apiward.adapters.redis_url import SentinelUrl
from apiward.adapters.settings import ConfigError, Settings


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", None),
        ("rediss://cache.internal:6380", None),
        (
            "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380,sentinel-3/apiward/7",
            SentinelUrl(
                (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("sentinel-3", 26379)), "apiward", 7
            ),
        ),
        (
            "rediss+sentinel://app:s%40cret@[::1]:26379/main",
            SentinelUrl((("::1", 26379),), "main", 0, "app", "s@cret", tls=True),
        ),
        (
            "redis+sentinel://:only-password@h:1/m",
            SentinelUrl((("h", 1),), "m", 0, None, "only-password"),
        ),
    ],
)
def test_a_url_names_a_server_or_a_sentinel_group(url: str, expected: SentinelUrl | None) -> None:
    redis_url.check(url)
    assert redis_url.sentinel(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:6379", "must start with redis://"),
        ("http://h:1", "must start with redis://"),
        ("redis+sentinel://h1:26379,h2:26379", "names the master after the hosts"),
        ("redis+sentinel:///apiward", "at least one sentinel"),
        ("redis+sentinel://h1:port/apiward", "port must be a number"),
        ("redis+sentinel://h1:70000/apiward", "port must be a number"),
        ("redis+sentinel://h1:26379/apiward/zero", "only a database number"),
    ],
)
def test_a_malformed_url_says_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        redis_url.check(url)


def test_the_configuration_check_reports_it_without_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(
            redis_url="redis+sentinel://:hunter2-secret@h1:26379",
            secret_key="test-secret-that-is-at-least-32-bytes-long",
        )
    [problem] = caught.value.problems
    assert problem.startswith("redis_url = ") and "names the master after the hosts" in problem
    assert "hunter2" not in str(caught.value)
