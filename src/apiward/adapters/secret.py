"""The deployment's sealing secret: ``APIWARD_SECRET_KEY``, else a file beside the database.

The secret seals what apiward must read back (signing keys, webhook secrets, kept token
answers); hashes of credentials do not depend on it. With no ``APIWARD_SECRET_KEY`` the
first process to start writes a random one to a private file, which every later process
(and every worker starting at the same time) reads.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from apiward.adapters.settings import Settings


def deployment_secret(settings: Settings) -> bytes:
    """The sealing secret of the deployment ``settings`` describe (created if need be)."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    path = secret_file(settings.database_url)
    if not path.exists():
        _create(path)
    return path.read_text().strip().encode()


def secret_file(database_url: str) -> Path:
    """``<database>.secret`` beside a SQLite file; ``apiward.secret`` in the working
    directory otherwise."""
    if database_url.startswith("sqlite") and ":///" in database_url:
        db = database_url.split(":///", 1)[1]
        if db and db != ":memory:":
            return Path(db + ".secret")
    return Path("apiward.secret")


def _create(path: Path) -> None:
    """Write a new secret so that every process starting at once ends with the same one.

    The secret is written and flushed to a private temporary file first, then linked to
    its name, which fails if another process got there first: the name only ever points
    at a complete file (readable by its owner only), and the loser reads the winner's.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp's file is 0600
            f.write(secrets.token_urlsafe(48))
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
