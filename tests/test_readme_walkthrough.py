"""The README's walkthroughs, run as written against real servers in a fresh directory:
"Five minutes with it" (the CLI and curl against `apiward serve`), the SDK quickstart
against the example API, the embedded example under `uvicorn app:app` with its access
log, and a vendor profile. A README change that breaks a step fails here.

Each shell line runs in bash as the README writes it, with only what a reader fills in
themselves replaced: the port (`localhost:8000`), `.venv/bin/` (this interpreter's), and
the placeholders a reader copies from an earlier output (`aw_test_...`, `key_...`). The
comments after a command state its answer; those are checked too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.live import free_port

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent
CHEAP = {
    "APIWARD_ARGON2_TIME_COST": "1",
    "APIWARD_ARGON2_MEMORY_KIB": "1024",
    "APIWARD_ARGON2_PARALLELISM": "1",
}


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def environment(**extra: str) -> dict[str, str]:
    """The shell of a reader: no APIWARD_* of the test run, cheap hashing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APIWARD_")}
    return {**env, **CHEAP, "APIWARD_LOG_LEVEL": "warning", **extra}


@contextmanager
def serving(command: list[str], cwd: Path, port: int, env: dict[str, str]) -> Iterator[Path]:
    """A server started as the README starts it; yields the file its output goes to."""
    log = cwd / f"server-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@dataclass
class Shell:
    """Runs README lines in bash, filling in what a reader would."""

    cwd: Path
    env: dict[str, str]
    port: int = 8000
    filled: dict[str, str] = field(default_factory=dict)

    def fill(self, line: str) -> str:
        line = line.replace(".venv/bin/", f"{BIN}/")
        line = line.replace("localhost:8000", f"localhost:{self.port}")
        for placeholder, value in self.filled.items():
            line = line.replace(placeholder, value)
        assert "..." not in line.split("#")[0], f"nothing to fill in for {line!r}"
        return line

    def run(self, line: str) -> str:
        result = subprocess.run(
            ["bash", "-c", self.fill(line)],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        return result.stdout


def steps(block: str) -> Iterator[tuple[str, list[str]]]:
    """Each command of a shell block with the comments that state its answer: the one
    at the end of its line and the comment lines under it."""
    command: str | None = None
    notes: list[str] = []
    for raw in block.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            notes.append(line[1:].strip())
            continue
        if command is not None:
            yield command, notes
        code, _, note = line.partition("   #")
        command, notes = code.strip(), [note.strip()] if note else []
    if command is not None:
        yield command, notes


def check_answer(output: str, notes: list[str]) -> None:
    """A curl's body against what its comments say: a status, a message, a body."""
    if not notes:
        return
    status = re.match(r"(\d{3})\b", notes[0])
    body = json.loads(output)
    if status and int(status[1]) >= 400:
        assert body["status_code"] == int(status[1]), output
        for quoted in re.findall(r'"([^"]+)"', notes[0]):
            assert quoted in body["message"], output
    elif status:
        assert "status_code" not in body, output
    written = " ".join(n for n in notes[1:] if n.startswith(("{", '"'))).strip()
    if written:
        expected = json.loads(written)
        assert body.keys() == expected.keys(), output
        for key, value in expected.items():
            if value != "...":
                assert body[key] == value, (key, output)


def check_eventually(shell: Shell, command: str, output: str, notes: list[str]) -> None:
    """`check_answer`, allowing the server the few invalidation polls the README gives it
    to learn of a change another process (the CLI) made: on a loaded machine a poll can
    come late, but the answer must come well within the bound."""
    deadline = time.monotonic() + 5
    while True:
        try:
            check_answer(output, notes)
            return
        except (AssertionError, KeyError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)
        output = shell.run(command)


def test_five_minutes_with_it(tmp_path: Path) -> None:
    port = free_port()
    shell = Shell(tmp_path, environment(), port)
    # `make run`, in a fresh directory: `apiward serve` on its embedded default.
    with serving([str(BIN / "apiward"), "serve", "--port", str(port)], tmp_path, port, shell.env):
        said = list(steps(blocks(section("Five minutes with it"), "sh")[0]))
        assert len(said) == 7
        for command, notes in said:
            output = shell.run(command)
            if " init " in command:
                assert re.search(r"^aw_live_\w+$", output, re.M), output
            elif " keys create " in command:
                key = re.search(r"^(aw_test_\w+)$", output, re.M)
                key_id = re.search(r"\b(key_\w+)\b", output)
                assert key and key_id, output
                shell.filled = {"aw_test_...": key[1], "key_...": key_id[1]}
            elif " keys list" in command:
                ids = re.findall(r"\bkey_\w+", output)
                assert len(set(ids)) == 2 and all(len(i) == len(ids[0]) for i in ids), output
            elif command.startswith("curl"):
                check_eventually(shell, command, output, notes)
                if "/v1/keys" in command and "200" in notes[0]:
                    assert {k["environment"] for k in json.loads(output)["items"]} == {"test"}
        assert (tmp_path / "apiward.db").exists()


def test_the_sdk_quickstart_against_the_example_api(tmp_path: Path) -> None:
    text = section("Calling an API protected by apiward, from Python")
    (tmp_path / "quickstart.py").write_text(blocks(text, "python")[0])
    port = free_port()
    shell = Shell(tmp_path, environment(PYTHONPATH=str(ROOT)), port)
    make = subprocess.run(
        ["make", "-n", "example"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "uvicorn examples.things:app --port 8001" in make
    said = list(steps(blocks(text, "sh")[0]))
    assert said[0][0] == "make example &"
    server = [str(BIN / "uvicorn"), "examples.things:app", "--port", str(port)]
    env = {**shell.env, "APIWARD_DATABASE_URL": "sqlite+aiosqlite:///./things.db"}
    with serving(server, tmp_path, port, env):
        for command, _ in said[1:]:
            output = shell.run(command.replace("127.0.0.1:8001", f"127.0.0.1:{port}"))
        notes = said[-1][1]
        assert output.splitlines()[0] == notes[0] == "Found 45 thing(s):"
        assert output.splitlines()[1].strip() == notes[1]
        assert len(output.splitlines()) == 46


def test_the_embedded_example_under_uvicorn_logs_its_requests(tmp_path: Path) -> None:
    """`uvicorn app:app`, as the README says, with uvicorn's access log on: each request
    has its line, credentials masked, and no logging error."""
    (tmp_path / "app.py").write_text(blocks(section("Protecting your own routes"), "python")[0])
    port = free_port()
    shell = Shell(tmp_path, environment(), port)
    server = [str(BIN / "uvicorn"), "app:app", "--port", str(port)]
    with serving(server, tmp_path, port, shell.env) as log:
        out = shell.run(
            ".venv/bin/apiward init --org-name Acme --email you@acme.test "
            "--password 'a long passphrase'"
        )
        owner = re.search(r"^(aw_live_\w+)$", out, re.M)
        assert owner
        base = f"http://127.0.0.1:{port}"
        bearer = {"Authorization": f"Bearer {owner[1]}"}
        assert httpx.get(f"{base}/v1/customers", headers=bearer).json()["items"] == []
        assert httpx.get(f"{base}/v1/invoices").status_code == 401
        assert httpx.get(f"{base}/v1/invoices/health?key={owner[1]}").status_code == 200
        time.sleep(0.5)  # uvicorn writes its access line after the answer
    lines = log.read_text()
    assert "Logging error" not in lines and "Traceback" not in lines, lines
    assert '"GET /v1/customers HTTP/1.1" 200' in lines, lines
    assert '"GET /v1/invoices HTTP/1.1" 401' in lines, lines
    assert "/v1/invoices/health?key=[REDACTED]" in lines, lines
    assert owner[1] not in lines


def test_a_vendor_profile_as_the_readme_starts_it(tmp_path: Path) -> None:
    command = blocks(section("Vendor profiles"), "sh")[0].strip()
    assert command == "APIWARD_CONFIG_FILE=docs/profiles/monk.toml .venv/bin/apiward serve"
    shutil.copytree(ROOT / "docs" / "profiles", tmp_path / "docs" / "profiles")
    port = free_port()
    shell = Shell(tmp_path, environment(APIWARD_PORT=str(port)), port)
    argv = ["bash", "-c", shell.fill(command)]
    with serving(argv, tmp_path, port, shell.env):
        assert httpx.get(f"http://127.0.0.1:{port}/").json()["platform"] == "Monk"
        denied = httpx.get(f"http://127.0.0.1:{port}/v1/keys")
        assert denied.status_code == 401 and "error" in denied.json()
