"""``apiward serve`` bounds a request's head: its size, its number of fields and the time
it takes to arrive, answering 431 or 408 in the deployment's envelope and closing the
connection, so that clients who never finish a head cannot hold the server's memory."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live import ServerProcess, spawn_server

TIMEOUT = 1.0
"""The server's header timeout in these tests (APIWARD_HEADER_TIMEOUT_SECONDS)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("serve") / "apiward.db"
    with spawn_server(
        f"sqlite+aiosqlite:///{db}",
        APIWARD_MIGRATE_ON_START="true",
        APIWARD_HEADER_TIMEOUT_SECONDS=str(TIMEOUT),
        APIWARD_ERROR_STYLE="nested",
    ) as running:
        yield running


def connect(server: ServerProcess) -> socket.socket:
    port = int(server.url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def until_closed(sock: socket.socket, limit: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (at most ``limit`` s)."""
    data = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"the server kept the connection open; it sent {data[:200]!r}")


def answers(data: bytes) -> list[tuple[int, bytes]]:
    """The status and body of each answer in ``data`` (bodies with a content-length)."""
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length")
        )
        found.append((int(lines[0].split()[1]), rest[:length]))
        data = rest[length:]
    return found


def request(*fields: bytes) -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(fields) + b"\r\n"


def test_a_head_within_the_limits_is_served(server: ServerProcess) -> None:
    """98 more fields and 30 KiB in all are within the defaults (100 fields, 32 KiB); two
    requests pipelined in one write are both answered."""
    big = request(b"X-Big: " + b"a" * 30_000 + b"\r\n", *(b"X-%d: v\r\n" % i for i in range(97)))
    with connect(server) as sock:
        sock.sendall(big + request(b"Connection: close\r\n"))
        got = answers(until_closed(sock))
    assert [status for status, _ in got] == [200, 200]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ([b"X-Big: " + b"a" * 40_000 + b"\r\n"], "exceed 32768 bytes"),
        ([b"X-%d: v\r\n" % i for i in range(100)], "more than 100 header fields"),
    ],
)
def test_a_head_beyond_the_limits_gets_431_and_the_connection_closes(
    server: ServerProcess, fields: list[bytes], message: str
) -> None:
    with connect(server) as sock:
        sock.sendall(request(*fields))
        [(status, body)] = answers(until_closed(sock))
    assert status == 431
    error = json.loads(body)["error"]  # the deployment's envelope (nested here)
    assert error["code"] == "HEADERS_TOO_LARGE"
    assert message in error["message"]
    assert error["request_id"]


def test_a_slow_head_is_cut_off_after_the_timeout(server: ServerProcess) -> None:
    """A client sending a field every 0.2 s gets 408 and the connection closes once the
    head has taken the timeout, however steadily it trickles."""
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sock.settimeout(0.2)
        received = b""
        for i in range(50):  # 10 s of trickling, unless cut off
            try:
                sock.sendall(b"X-%d: v\r\n" % i)
                received = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if received:
                break
        elapsed = time.monotonic() - started
        received += until_closed(sock)
    [(status, body)] = answers(received)
    assert status == 408
    assert json.loads(body)["error"]["code"] == "REQUEST_TIMEOUT"
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 3  # the clocks differ by a tick


def test_a_connection_that_sends_nothing_is_closed_after_the_timeout(
    server: ServerProcess,
) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        assert until_closed(sock) == b""  # nothing asked, nothing answered
    assert TIMEOUT * 0.9 <= time.monotonic() - started < TIMEOUT + 3


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_unfinished_heads_do_not_grow_the_server(server: ServerProcess) -> None:
    """8 connections each sending a 64 MB header that never ends: each is refused at the
    size limit, and the server's resident memory grows by a few MB at most."""
    pid = server.process.pid
    before = peak = rss_kib(pid)
    chunk = b"a" * 65_536
    sockets = [connect(server) for _ in range(8)]
    sent = dict.fromkeys(range(8), 0)
    try:
        for sock in sockets:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            sock.settimeout(0.5)
        open_ = set(range(8))
        deadline = time.monotonic() + 30
        while open_ and time.monotonic() < deadline:
            for i in list(open_):
                try:
                    sockets[i].sendall(chunk)
                    sent[i] += len(chunk)
                except (TimeoutError, OSError):
                    open_.discard(i)  # refused (or its buffers are full: it stops here)
                    continue
                if sent[i] >= 64 * 1024 * 1024:
                    open_.discard(i)
            peak = max(peak, rss_kib(pid))
        peak = max(peak, rss_kib(pid))
    finally:
        for sock in sockets:
            sock.close()
    assert (peak - before) < 16 * 1024, f"RSS grew by {(peak - before) // 1024} MB"
    assert max(sent.values()) < 8 * 1024 * 1024  # cut off long before 64 MB


def test_endless_trailer_fields_are_cut_off_like_a_head(server: ServerProcess) -> None:
    """The trailer fields after a chunked body's last chunk are buffered like header
    fields: 4 connections each sending a never-ending trailer are closed at the size
    limit, and the server does not grow."""
    pid = server.process.pid
    before = rss_kib(pid)
    chunk = b"a" * 65_536
    sockets = [connect(server) for _ in range(4)]
    sent = dict.fromkeys(range(4), 0)
    try:
        for sock in sockets:
            sock.sendall(
                b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                b"\r\n1\r\na\r\n0\r\nX-Trailer: "
            )
            sock.settimeout(0.5)
        open_ = set(range(4))
        deadline = time.monotonic() + 30
        while open_ and time.monotonic() < deadline:
            for i in list(open_):
                try:
                    sockets[i].sendall(chunk)
                    sent[i] += len(chunk)
                except (TimeoutError, OSError):
                    open_.discard(i)
                    continue
                if sent[i] >= 16 * 1024 * 1024:
                    open_.discard(i)
        peak = rss_kib(pid)
    finally:
        for sock in sockets:
            sock.close()
    assert (peak - before) < 16 * 1024, f"RSS grew by {(peak - before) // 1024} MB"
    assert max(sent.values()) < 8 * 1024 * 1024


BOUND = 32
"""APIWARD_MAX_CONNECTIONS of the next test's server."""


def closed(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (without waiting for it to)."""
    sock.settimeout(0.01)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_silent_connections_cannot_keep_clients_out(tmp_path: Path) -> None:
    """300 connections that never send a byte, against a bound of 32 open connections
    (and a header timeout long enough not to close them first): each new connection
    closes the one that has waited longest for a head, so requests keep being served
    and the process never holds more than the bound."""
    with spawn_server(
        f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
        APIWARD_MIGRATE_ON_START="true",
        APIWARD_HEADER_TIMEOUT_SECONDS="300",
        APIWARD_MAX_CONNECTIONS=str(BOUND),
    ) as server:
        silent = [connect(server) for _ in range(300)]
        try:
            for _ in range(10):
                with connect(server) as sock:
                    sock.sendall(request(b"Connection: close\r\n"))
                    assert [status for status, _ in answers(until_closed(sock))] == [200]
            deadline = time.monotonic() + 10
            while True:
                still_open = [s for s in silent if not closed(s)]
                if len(still_open) < BOUND or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert len(still_open) < BOUND, len(still_open)
            assert not closed(silent[-1])  # the newest silent ones are still waiting
        finally:
            for sock in silent:
                sock.close()


def test_a_body_that_stops_coming_is_cut_off_after_the_timeout(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /v1/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\ngrant_type="
        )
        started = time.monotonic()
        until_closed(sock)
    assert TIMEOUT * 0.9 <= time.monotonic() - started < TIMEOUT + 3


def test_stalled_bodies_cannot_keep_clients_out(tmp_path: Path) -> None:
    """As many connections as the bound, each stalled in a request body (headers sent,
    then part of the body, then nothing): new clients are still served, the first one
    closing the stalled connection whose last byte is oldest."""
    with spawn_server(
        f"sqlite+aiosqlite:///{tmp_path / 'b.db'}",
        APIWARD_MIGRATE_ON_START="true",
        APIWARD_HEADER_TIMEOUT_SECONDS="300",
        APIWARD_MAX_CONNECTIONS=str(BOUND),
    ) as server:
        stalled = [connect(server) for _ in range(BOUND)]
        try:
            for sock in stalled:
                sock.sendall(
                    b"POST /v1/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Length: 1000\r\n"
                    b"Content-Type: application/x-www-form-urlencoded\r\n\r\ngrant_type="
                )
            time.sleep(1.5)  # stalled for more than a second
            for _ in range(5):
                with connect(server) as sock:
                    sock.sendall(request(b"Connection: close\r\n"))
                    assert [status for status, _ in answers(until_closed(sock))] == [200]
            # The first new client made room by closing one stalled body; the others
            # found the room it left when it closed.
            assert sum(closed(s) for s in stalled) >= 1
        finally:
            for sock in stalled:
                sock.close()


def test_a_client_that_half_closes_after_its_request_is_answered(server: ServerProcess) -> None:
    """A request followed at once by the client's FIN (``shutdown(SHUT_WR)``, as
    ``nc -N`` does): the answer still arrives, every time."""
    for _ in range(20):
        with connect(server) as sock:
            sock.sendall(request())
            sock.shutdown(socket.SHUT_WR)
            got = answers(until_closed(sock))
        assert [status for status, _ in got] == [200]


def test_an_answer_pipelined_before_a_websocket_upgrade_comes_first(
    server: ServerProcess,
) -> None:
    upgrade = (
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    with connect(server) as sock:
        sock.sendall(request() + upgrade)
        data = until_closed(sock)
    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
    assert statuses[0] == 200 and len(statuses) == 2, data[:400]
