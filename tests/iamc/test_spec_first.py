"""A spec typo is one line at once: no Prefect server, no Prefect or AWS SDK import, no progress."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("prefect", "boto3", "botocore", "moto")
TYPO = 'name = "typo"\nregoin = "us-east-1"\nstate = "sqlite:///state.db"\n'


@pytest.mark.parametrize(
    "command",
    [
        ["inventory"],
        ["map"],
        ["scan"],
        ["plan"],
        ["plan", "show", "1"],
        ["apply", "1", "--stage", "provision"],
        ["resume", "1"],
        ["rollback", "1"],
        ["bake"],
        ["restore", "111111111111/jane"],
        ["serve"],
        ["runs"],
    ],
    ids=" ".join,
)
def test_a_spec_typo_is_one_line_before_anything_starts(tmp_path: Path, command: list[str]):
    spec = tmp_path / "typo.toml"
    spec.write_text(TYPO)
    home = tmp_path / "prefect-home"
    # As an operator's shell: the local server on (the tests switch it off), none named.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PREFECT_API"))}
    env.update(PREFECT_HOME=str(home), IAMC_LOCAL_PREFECT_SERVER="on")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "iamc.cli", *command, "-c", str(spec)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    loaded = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert done.returncode == 2, done.stderr[-2000:]
    assert errors == [
        f"error: {spec}:2: invalid migration spec: regoin: unknown key (check its spelling)"
    ]
    assert done.stdout == ""  # no progress display, no "next:" hint
    assert not loaded & set(HEAVY), f"imported {loaded & set(HEAVY)} before reading the spec"
    # The old path started a server first (~13-24 s); what this shows is that nothing heavy
    # ran (no import, no server), not a time: a loaded machine's is anything.
    assert not home.exists(), "a local Prefect server was started (or its home created)"
