"""The subflow runs a runbook flow run starts carry the migration's step-run tag, so the
automation that marks a silent run Crashed covers them (they die with their parent's process);
a command outside a flow run neither tags nor imports Prefect for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from domain.distribution import step_run_tag
from engine.migration import Migration

ROOT = Path(__file__).resolve().parents[2]


def _spec(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.toml"
    spec.write_text(f'name = "tagged"\nstate = "sqlite:///{tmp_path / "state.db"}"\n')
    return spec


def test_a_flow_runs_subflows_carry_the_step_run_tag(tmp_path):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    @flow
    def a_step() -> str:
        return str(flow_run.id)

    @flow
    def a_runbook_flow(spec_path: str) -> tuple[str, str]:
        with Migration.open(spec_path):
            return str(flow_run.id), a_step()

    parent, child = a_runbook_flow(str(_spec(tmp_path)))
    with get_client(sync_client=True) as client:
        assert step_run_tag("tagged") in client.read_flow_run(child).tags
        assert step_run_tag("tagged") not in client.read_flow_run(parent).tags


def test_a_command_outside_a_flow_run_does_not_import_prefect_to_tag(tmp_path):
    code = (
        "import sys\n"
        "from engine.migration import Migration\n"
        f"with Migration.open({str(_spec(tmp_path))!r}):\n"
        "    pass\n"
        "print('prefect' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
