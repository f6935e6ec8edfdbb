"""Who a credential belongs to in the vendor's own systems: ``external_id`` and ``meta``.

An API key or OAuth client may carry the vendor's id for the customer or account it
was made for (``external_id``, searchable) and a small JSON object of the vendor's
own (``meta``). Both come back on the principal, in the verify API's answer and, for
forward auth, in headers. Their bounds, stated once here:

- ``external_id``: 1 to 255 visible ASCII characters (``!`` to ``~``: letters, digits,
  punctuation; no space, no control, nothing outside ASCII), so that it is matched
  exactly and fits in a header as it is.
- ``meta``: a JSON object of at most 64 properties, whose names are 1 to 64 characters
  without control characters, and whose values are strings, numbers (finite; integers
  within ±(2^53 - 1), what every JSON reader holds exactly), booleans or null, not
  nested objects or arrays; at most 4096 bytes as compact UTF-8 JSON.

A ``meta`` field forwarded in a header (``APIWARD_FORWARD_META``) is sent as its text (a
string as it is, a number or boolean as its JSON text, null as nothing),
percent-encoded as RFC 3986 section 2.1 encodes UTF-8: every byte but the unreserved
characters (``A-Z a-z 0-9 - . _ ~``) becomes ``%XX``. No value can then break a header
(no CR, LF, NUL or byte above 0x7E reaches it), and any URL decoder gives it back
(``decodeURIComponent``, ``urllib.parse.unquote``).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import quote

from apiward.core.errors import InvalidInput

MAX_EXTERNAL_ID = 255
MAX_META_BYTES = 4096
MAX_META_PROPERTIES = 64
MAX_META_NAME = 64
MAX_SAFE_INTEGER = 2**53 - 1

MetaValue = str | int | float | bool | None
Meta = Mapping[str, MetaValue]
EMPTY: Meta = MappingProxyType({})
"""The ``meta`` of a credential that has none (read-only, shared)."""


def empty() -> Meta:
    """``EMPTY``, as a dataclass's ``default_factory`` (a mapping is no plain default)."""
    return EMPTY


_EXTERNAL_ID = re.compile(rf"[!-~]{{1,{MAX_EXTERNAL_ID}}}")
_FIELD = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_META_NAME}}}")
META_HEADER_PREFIX = "X-Apiward-Meta-"


def check_external_id(value: str) -> str:
    """``value`` if it is a valid ``external_id``, else ``InvalidInput`` saying why."""
    if not _EXTERNAL_ID.fullmatch(value):
        raise InvalidInput(
            f"external_id must be 1 to {MAX_EXTERNAL_ID} visible ASCII characters (letters, "
            "digits and punctuation, no spaces), e.g. 'cus_123' or an account's UUID."
        )
    return value


def _is_text(value: str) -> bool:
    """Encodable as UTF-8 (no lone surrogate, which a JSON ``\\ud800`` escape can give)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check_name(name: object) -> str:
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= MAX_META_NAME
        or not _is_text(name)
        or any(unicodedata.category(ch) == "Cc" for ch in name)
    ):
        raise InvalidInput(
            f"meta: property names are 1 to {MAX_META_NAME} characters without control "
            f"characters; {str(name)[:80]!r} is not one."
        )
    return name


def _check_value(name: str, value: object) -> MetaValue:
    where = f"meta.{name}"
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if not _is_text(value):
            raise InvalidInput(f"{where}: the text is not valid Unicode (a lone surrogate).")
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise InvalidInput(
                f"{where}: integers are kept within ±{MAX_SAFE_INTEGER} (2^53 - 1), what "
                "every JSON reader holds exactly; send a larger one as a string."
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{where}: numbers must be finite (no NaN or Infinity).")
        return value
    raise InvalidInput(
        f"{where}: values are strings, numbers, booleans or null; nested objects and "
        "arrays are not kept (flatten them, or send them as a JSON string)."
    )


def check_meta(meta: object) -> dict[str, MetaValue]:
    """``meta`` if it is within the bounds of the module's docstring, else
    ``InvalidInput`` naming the field and the bound."""
    if not isinstance(meta, Mapping):
        raise InvalidInput('meta must be a JSON object, e.g. {"plan": "pro"}.')
    if len(meta) > MAX_META_PROPERTIES:
        raise InvalidInput(
            f"meta holds at most {MAX_META_PROPERTIES} properties; this one has {len(meta)}."
        )
    checked = {_check_name(name): _check_value(name, value) for name, value in meta.items()}
    size = len(serialised(checked))
    if size > MAX_META_BYTES:
        raise InvalidInput(
            f"meta is at most {MAX_META_BYTES} bytes as compact UTF-8 JSON; this one is {size}."
        )
    return checked


def serialised(meta: Meta) -> bytes:
    """``meta`` as compact UTF-8 JSON: what its size bound measures."""
    return json.dumps(dict(meta), separators=(",", ":"), ensure_ascii=False).encode()


def frozen(meta: dict[str, MetaValue]) -> Meta:
    """A read-only view of a record's ``meta`` (``EMPTY`` for none): what a principal
    carries, shared by every request of the credential, so that no route can change it
    for the next. A view, not a copy (a cached key holds its meta once): records are
    replaced, never changed in place."""
    return MappingProxyType(meta) if meta else EMPTY


def header_value(value: MetaValue) -> str:
    """A ``meta`` value as a header carries it (the module's docstring): its text,
    percent-encoded but for unreserved characters; empty for null."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value)
    return quote(text, safe="", encoding="utf-8")


def forwarded_header(name: str) -> str:
    """The header a forwarded ``meta`` field is sent in: ``plan`` → ``X-Apiward-Meta-Plan``,
    ``billing_tier`` → ``X-Apiward-Meta-Billing-Tier``. ``ValueError`` for a name that
    cannot make one (only letters, digits, ``-`` and ``_``, 1 to 64 of them)."""
    if not _FIELD.fullmatch(name):
        raise ValueError(
            f"meta field {name!r}: 1 to {MAX_META_NAME} letters, digits, '-' or '_' "
            "(it names a header)"
        )
    words = name.replace("_", "-").split("-")
    return META_HEADER_PREFIX + "-".join(w[:1].upper() + w[1:] for w in words)
