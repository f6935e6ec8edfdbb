"""``apiward serve`` says where it listens and where people find the API, the reference
and the dashboard, before anything else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.adapters.cli.conftest import SECRET
from tests.live import free_port


def _first_lines(tmp_path: Path, count: int, **env: str) -> tuple[list[str], str]:
    """The first ``count`` lines the server prints, and all it printed after them."""
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "apiward"), "serve", "--port", str(port)],
        env={
            **os.environ,
            "APIWARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 's.db'}",
            "APIWARD_SECRET_KEY": SECRET,
            "APIWARD_LOG_LEVEL": "warning",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    try:
        lines = [proc.stdout.readline().rstrip("\n") for _ in range(count)]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    with proc.stdout:
        return lines, proc.stdout.read()


def test_serve_prints_its_addresses(tmp_path: Path) -> None:
    lines, _ = _first_lines(tmp_path, 4)
    port = lines[0].rsplit(":", 1)[1]
    assert lines == [
        f"apiward listening on 127.0.0.1:{port}",
        f"  API        http://127.0.0.1:{port}/",
        f"  reference  http://127.0.0.1:{port}/docs",
        f"  dashboard  http://127.0.0.1:{port}/dashboard",
    ]


def test_serve_prints_the_public_url_and_only_what_it_serves(tmp_path: Path) -> None:
    lines, rest = _first_lines(
        tmp_path,
        2,
        APIWARD_PUBLIC_URL="https://auth.example.test",
        APIWARD_DOCS_ENABLED="false",
        APIWARD_DASHBOARD_ENABLED="false",
    )
    assert lines[1] == "  API        https://auth.example.test/"
    assert rest == ""
