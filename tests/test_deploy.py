"""The shipped systemd unit is valid for systemd, and names commands that exist."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parent.parent / "deploy" / "apiward.service"
INSTALLED = "/opt/apiward/venv/bin/apiward"


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED} serve" in text
    assert f"ExecStartPre={INSTALLED} config check" in text
    # The unit names the documented install path; here, this interpreter's apiward.
    unit = tmp_path / "apiward.service"
    unit.write_text(text.replace(INSTALLED, str(Path(sys.executable).parent / "apiward")))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
