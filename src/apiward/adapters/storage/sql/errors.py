"""Driver errors turned into domain errors at the store's edge."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from apiward.core.errors import Conflict, InvalidInput, ServiceUnavailable, StoreSaturated

_CONNECTION_LOST = ("connection", "could not connect", "server closed", "terminating")
_DATA_EXCEPTION = "22"
"""SQLSTATE class 22, data exception: a value the database cannot store (PostgreSQL
refuses a NUL character in text, which SQLite keeps)."""


@contextlib.contextmanager
def map_db_errors() -> Iterator[None]:
    """Translate driver errors into domain errors at the adapter's edge: a constraint
    violated is a ``Conflict``, a database out of reach ``ServiceUnavailable``, a value
    the database cannot store ``InvalidInput``."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict("The change conflicts with an existing record.") from exc
    except PoolTimeout as exc:
        raise StoreSaturated("Every database connection is busy. Retry shortly.") from exc
    except (OperationalError, OSError, ConnectionError) as exc:
        raise ServiceUnavailable("The database is unreachable. Retry shortly.") from exc
    except DBAPIError as exc:
        if str(getattr(exc.orig, "sqlstate", "") or "").startswith(_DATA_EXCEPTION):
            raise InvalidInput(
                "A value cannot be stored: text must not contain a NUL character, and "
                "numbers and dates must be in range."
            ) from exc
        if exc.connection_invalidated or any(w in str(exc).lower() for w in _CONNECTION_LOST):
            raise ServiceUnavailable("The database is unreachable. Retry shortly.") from exc
        raise
