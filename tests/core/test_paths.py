"""The canonical path of an original request: every spelling an upstream routes alike is
one path to the route rules; what has no single meaning is refused."""

from __future__ import annotations

import string
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apiward.core.errors import InvalidInput
from apiward.core.paths import canonical, original_method


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("/v1/things", "/v1/things"),
        ("/v1/things?page=2", "/v1/things"),
        ("/v1/%74hings", "/v1/things"),
        ("/v1/%74%68ings", "/v1/things"),
        ("/v1//things", "/v1/things"),
        ("/v1///things", "/v1/things"),
        ("/v1/./things", "/v1/things"),
        ("/v1/x/../things", "/v1/things"),
        ("/v1/things/", "/v1/things"),
        ("/v1/things/.", "/v1/things"),
        ("/v1/things/./", "/v1/things"),
        ("/v1/things//", "/v1/things"),
        ("/v1/things/x/..", "/v1/things"),
        ("/v1/a%2eb", "/v1/a.b"),
        ("/v1/things?x=;\\#", "/v1/things"),
        ("/v1/a!$&'()*+,=:@b", "/v1/a!$&'()*+,=:@b"),
        ("/v1/a%20b", "/v1/a%20b"),
        ("/v1/a%3ab", "/v1/a%3Ab"),
        ("/v1/caf%c3%a9", "/v1/caf%C3%A9"),
        ("/", "/"),
        ("/.", "/"),
    ],
)
def test_spellings_of_one_path(raw: str, path: str) -> None:
    assert canonical(raw) == path


@pytest.mark.parametrize(
    "raw",
    [
        "v1/things",
        "",
        "/v1/%2Fthings",
        "/v1/%2fthings",
        "/v1/%5Cthings",
        "/v1/%00",
        "/v1/%0a",
        "/v1/%zz",
        "/v1/%4",
        "/v1/../../etc",
        "/..",
        "/v1/caf\u00e9",
        "/v1/a b",
        "/v1/\x00",
        "/" + "a" * 3000,
        # what WHATWG URL parsers (RFC 3986's rival) read differently
        "/v1/invoices\\..\\things",
        "/v1/things\\",
        "/v1/\tthings",
        "/v1/things\n",
        "/v1/%2e/things",
        "/v1/x/%2E%2E/things",
        "/v1/x/.%2e/things",
        "/v1/things/%2e",
        "//v1/things",
        "/v1/invoices#/../things",
        "/v1/things#",
        '/v1/a"b',
        "/v1/<b>",
        "/v1/a^b",
        "/v1/a|b",
        "/v1/{b}",
        "/v1/a`b",
        "/v1/[b]",
        # path parameters, which servlet containers strip from a segment
        "/v1/things;x",
        "/v1/things;",
        "/v1/things%3Bx",
        "/v1/things%3b",
    ],
)
def test_paths_without_one_meaning_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput, match="original request's path"):
        canonical(raw)


SEGMENT = st.text(alphabet=string.ascii_letters + string.digits + "-._~", min_size=1, max_size=6)


@given(st.lists(SEGMENT.filter(lambda s: s not in (".", "..")), max_size=5))
def test_canonical_is_idempotent_and_ignores_escaping_of_unreserved(segments: list[str]) -> None:
    plain = "/" + "/".join(segments)
    escaped = "/" + "/".join("".join(f"%{ord(c):02x}" for c in s) for s in segments)
    assert canonical(escaped) == canonical(plain) == plain
    assert canonical(canonical(plain)) == canonical(plain)
    assert canonical("/" + plain.replace("/", "//").removeprefix("//")) == plain
    if segments:  # a trailing slash or '.' names the same resource
        assert canonical(plain + "/") == canonical(plain + "/.") == plain


@pytest.mark.parametrize(
    ("raw", "method"),
    [("GET", "GET"), ("POST", "POST"), ("delete", "DELETE"), ("M-SEARCH", "M-SEARCH")],
)
def test_an_original_method_is_one_token(raw: str, method: str) -> None:
    assert original_method(raw) == method


@pytest.mark.parametrize("raw", ["", "GET POST", "GET\n", "G(ET", "\u00c9T", "X" * 40])
def test_an_original_method_that_is_no_token_is_refused(raw: str) -> None:
    with pytest.raises(InvalidInput, match="original request's method"):
        original_method(raw)


def _segments(path: str) -> list[str]:
    return [s for s in path.split("?", 1)[0].split("/") if s]


def _resolve(segments: list[str]) -> list[str]:
    out: list[str] = []
    for s in segments:
        if s == "..":
            out = out[:-1]
        elif s != ".":
            out.append(s)
    return out


def permissive(path: str) -> list[str]:
    """The segments a permissive upstream routes on: ';' parameters stripped, decoded,
    '\\\\' read as '/', then dot segments resolved (the reading of upstream.mjs)."""
    decoded = "/".join(unquote(s.split(";")[0]) for s in path.split("?", 1)[0].split("/"))
    return _resolve(_segments(decoded.replace("\\", "/")))


def strict(path: str) -> list[str]:
    """The segments a strict RFC 3986 upstream routes on: dot segments resolved as
    written (section 5.2.4), then each segment decoded."""
    return [unquote(s) for s in _resolve(_segments(path))]


HOSTILE = st.text(alphabet="/.\\;#%?25eEfFcCbB03 \t~:@!$'\"<>^`{}|[]vthings", max_size=24)


@given(HOSTILE)
def test_a_path_canonical_accepts_reads_alike_to_every_upstream(tail: str) -> None:
    """Whatever a client writes, a path that is not refused names one route: the one
    its canonical form names, to a permissive upstream and to a strict one."""
    raw = "/" + tail
    try:
        path = canonical(raw)
    except InvalidInput:
        return
    assert canonical(path) == path
    assert permissive(raw) == strict(raw) == strict(path) == permissive(path)
