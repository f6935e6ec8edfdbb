"""A PostgreSQL server of a test's own (initdb in a temporary directory, a free port),
which the test may stop, restart and freeze (SIGSTOP) without touching the shared one."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.live import free_port


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class PrivatePostgres:
    def __init__(self) -> None:
        initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            self._unavailable("initdb and pg_ctl are not installed (`apt-get install postgresql`)")
        self._initdb, self._pg_ctl = str(initdb), str(pg_ctl)
        # PostgreSQL refuses to run as root: as the postgres user where there is one.
        self._as: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                self._unavailable("running as root without runuser to start PostgreSQL as postgres")
            self._as = [str(runuser), "-u", "postgres", "--"]
        self.directory = Path(tempfile.mkdtemp(prefix="apiward-pg-"))
        if self._as:
            shutil.chown(self.directory, "postgres")
        self.port = free_port()
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def _unavailable(why: str) -> None:
        message = f"A private PostgreSQL cannot be started: {why}."
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        data = self.directory / "data"
        if not data.exists():
            self._run(self._initdb, "-D", str(data), "-A", "trust", "-U", "postgres",
                      "--no-sync", "-E", "UTF8")  # fmt: skip
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(self._pg_ctl, "-D", str(data), "-o", options, "-w", "-l",
                  str(self.directory / "log"), "start")  # fmt: skip

    def stop(self) -> None:
        self._run(self._pg_ctl, "-D", str(self.directory / "data"), "-m", "immediate", "stop")

    def _processes(self) -> list[int]:
        """The postmaster and every process it started (the backends)."""
        pid_file = self.directory / "data" / "postmaster.pid"
        postmaster = int(pid_file.read_text().split()[0])
        found = [postmaster]
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                found.append(int(stat.split("/")[2]))
        return found

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Every process of the server stopped (SIGSTOP) until the block ends: it
        accepts connections (the kernel does) but answers nothing."""
        stopped = self._processes()
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    server.start()
    try:
        yield server
    finally:
        server.remove()
