"""Where a request comes from, by country: ``requestOrigin.country`` of ``GET /``.

Two sources, in this order: a header that a CDN or load balancer in front of apiward sets
(``APIWARD_COUNTRY_HEADER``, e.g. ``CF-IPCountry`` or ``CloudFront-Viewer-Country``),
believed only when the request came through a trusted proxy (``APIWARD_TRUSTED_PROXIES``),
since anyone can send it; then a local MaxMind DB file (``APIWARD_GEOIP_DATABASE``, a
GeoLite2 or GeoIP2 Country or City database), read with the maintained ``maxminddb``
reader. Without either, the country is unknown (``None``).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import maxminddb

_COUNTRY = re.compile(r"^[A-Z]{2}$")


class Countries:
    """ISO 3166-1 alpha-2 country codes of client addresses."""

    def __init__(self, header: str | None = None, database: str | None = None) -> None:
        self.header = header.lower() if header else None
        self._reader: Any = maxminddb.open_database(database) if database else None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    @property
    def configured(self) -> bool:
        return bool(self.header) or self._reader is not None

    def told(self, value: str | None, *, via_trusted_proxy: bool) -> str | None:
        """The country the header's ``value`` names, if a trusted proxy set it."""
        if self.header and via_trusted_proxy:
            told = (value or "").strip().upper()
            if _COUNTRY.match(told) and told not in ("XX", "T1"):  # unknown, Tor
                return told
        return None

    def placed(self, ip: str | None) -> str | None:
        """The country the database places ``ip`` in, if one is configured."""
        if self._reader is None or not ip:
            return None
        try:
            found = self._reader.get(ipaddress.ip_address(ip))
        except ValueError:
            return None
        country = (found or {}).get("country") or (found or {}).get("registered_country")
        code = country.get("iso_code") if isinstance(country, dict) else None
        return code if isinstance(code, str) and _COUNTRY.match(code) else None
