"""The local Prefect server: the first step command starts it, later ones reuse it, stop ends it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

IAMC = [sys.executable, "-m", "iamc.cli"]


def iamc(*args: str, home: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PREFECT_API"))}
    env.update(PREFECT_HOME=str(home), IAMC_LOCAL_PREFECT_SERVER="on")
    return subprocess.run(
        [*IAMC, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=240
    )


def test_step_commands_share_one_local_server_until_it_is_stopped(tmp_path: Path):
    home = tmp_path / "prefect"
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "local-server"\nstate = "sqlite:///state.db"\n')
    assert iamc("server", "status", home=home, cwd=tmp_path).returncode == 1
    try:
        # A step command with no server starts one (and says so) and leaves it running.
        first = iamc("plan", "-c", str(spec), home=home, cwd=tmp_path)
        assert "starting a local Prefect server" in first.stderr, first.stderr
        assert "no inventory yet" in first.stderr  # the step itself ran and refused
        status = iamc("server", "status", home=home, cwd=tmp_path)
        assert status.returncode == 0 and "Prefect server: http://127.0.0.1:" in status.stdout
        began = time.monotonic()
        second = iamc("plan", "-c", str(spec), home=home, cwd=tmp_path)
        reused = time.monotonic() - began
        assert "starting a local Prefect server" not in second.stderr, second.stderr
        assert "no inventory yet" in second.stderr
        print(f"step command reusing the server: {reused:.1f} s")
    finally:
        stopped = iamc("server", "stop", home=home, cwd=tmp_path)
    assert "stopped the Prefect server" in stopped.stdout
    assert iamc("server", "status", home=home, cwd=tmp_path).returncode == 1
