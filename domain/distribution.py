"""Whether this process runs a flow of the runbook on a Prefect work pool, and which.

``iamc deploy --work-pool NAME`` sets ``IAMC_WORK_POOL`` in every deployment's job variables;
the flow runs a worker starts (and their child flow runs) see it. Outside a work pool (the CLI,
``iamc serve``) it is unset and each step fans out over accounts on threads of one process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

WORK_POOL_ENV = "IAMC_WORK_POOL"


def work_pool(environ: Mapping[str, str] | None = None) -> str | None:
    """The work pool this flow run was started on by ``iamc deploy``'s deployments, if any."""
    return (os.environ if environ is None else environ).get(WORK_POOL_ENV) or None


def migration_tag(migration: str) -> str:
    """The tag every deployment of the migration, and so every flow run of it, carries
    (Prefect copies a deployment's tags onto its flow runs)."""
    return f"migration:{migration}"


def step_run_tag(migration: str) -> str:
    """The tag of the subflow runs a flow run of the migration starts in its own process.

    Prefect gives a subflow run the tags in context, not its parent's, so without this one the
    automation that marks a silent run Crashed never saw them: when a worker died, its parent
    run was marked Crashed and its running subflow runs stayed Running in the UI for good.
    Not the migration's own tag: the failure and pause messages stay one per deployment run.
    """
    return f"migration-step:{migration}"
