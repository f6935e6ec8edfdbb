"""A real apiward server on a loopback port, in a thread, for clients that need a socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from starlette.types import ASGIApp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serve(app: ASGIApp, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` (lifespan included) until the block ends; yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


SECRET = "test-secret-that-is-at-least-32-bytes-long"


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def spawn_server(database_url: str, **env_extra: str) -> Iterator[ServerProcess]:
    """``apiward serve`` as a real process on ``database_url``, started and stopped, in a
    process group of its own (its pid), which a test may signal as a whole: with
    ``--workers``, the supervisor and every worker at once."""
    port = free_port()
    env = {
        **os.environ,
        "APIWARD_DATABASE_URL": database_url,
        "APIWARD_SECRET_KEY": SECRET,
        "APIWARD_LOG_LEVEL": "warning",
        "APIWARD_MIGRATE_ON_START": "false",
        **env_extra,
    }
    apiward = Path(sys.executable).parent / "apiward"
    proc = subprocess.Popen(
        [str(apiward), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # a loaded machine starts a process slowly
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                # A server still running past the deadline is stopped before its stderr is
                # read: reading the pipe of a live process would wait for ever.
                if proc.poll() is None:
                    proc.kill()
                _, stderr = proc.communicate(timeout=15)
                raise RuntimeError(stderr.decode() if stderr else "the server did not start")
            time.sleep(0.05)
        yield ServerProcess(base, proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=15)
        if proc.stderr:
            proc.stderr.close()


@contextmanager
def server_process(database_url: str, **env_extra: str) -> Iterator[str]:
    """``apiward serve`` as a real process on ``database_url``; yields its base URL."""
    with spawn_server(database_url, **env_extra) as server:
        yield server.url
