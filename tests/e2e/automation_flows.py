"""Flows the automations test serves as deployments tagged like the runbook's; run as a script.

``python automation_flows.py MIGRATION`` serves them (``prefect.serve``, each flow run in a
process of its own, as ``iamc serve`` does) until killed: three of ``migration:MIGRATION``
(one pauses, one fails, one runs a subflow for ten minutes) and one of another migration, which
fails.
"""

from __future__ import annotations

import sys
import time

from prefect import flow, serve
from prefect.flow_runs import pause_flow_run

from domain.distribution import step_run_tag
from engine.prefect_runtime import subflow_runs_tagged


@flow
def waits_for_approval() -> str:
    pause_flow_run(timeout=300, poll_interval=2)
    return "approved"


@flow
def fails() -> None:
    raise RuntimeError("Injected: the plan is stale, plan again")


@flow
def runs_long(migration: str) -> None:
    # As a runbook flow does (engine.migration): its subflow runs carry the step-run tag.
    with subflow_runs_tagged(step_run_tag(migration)):
        a_long_step()


@flow
def a_long_step() -> None:
    time.sleep(600)


def main(migration: str) -> None:
    tags = ["iam-centralize", f"migration:{migration}"]
    serve(
        waits_for_approval.to_deployment(name=f"approve ({migration})", tags=tags),
        fails.to_deployment(name=f"apply ({migration})", tags=tags),
        runs_long.to_deployment(
            name=f"inventory ({migration})", tags=tags, parameters={"migration": migration}
        ),
        fails.to_deployment(name="apply (another)", tags=["iam-centralize", "migration:another"]),
        print_starting_message=False,
    )


if __name__ == "__main__":
    main(sys.argv[1])
