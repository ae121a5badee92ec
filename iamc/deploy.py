"""``iamc deploy``: the runbook's deployments on a Prefect work pool, run by its workers.

``iamc serve`` runs every flow on the machine that serves; this registers the same deployments
on a process work pool of any Prefect server (``PREFECT_API_URL``), so ``prefect worker start
--pool NAME`` on any number of machines runs them, and each step's accounts go out in batches
any worker picks up (``engine.batches``). Many workers write the state at once: it must be
PostgreSQL. The automations that tell operators when a run waits or fails, and mark a run
whose worker died as Crashed, are made here too (``iamc.automations``).
"""

from __future__ import annotations

import logging
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from domain.distribution import WORK_POOL_ENV
from domain.errors import ServeError
from domain.spec import MigrationSpec, load_spec

log = logging.getLogger(__name__)

POOL_TYPE = "process"


@dataclass
class Deployed:
    """What ``iamc deploy`` registered."""

    pool: str
    created_pool: bool
    python: str = ""
    deployments: list[str] = field(default_factory=list)
    automations: list[str] = field(default_factory=list)


def job_env(pool: str, heartbeat_seconds: int) -> dict[str, str]:
    """The environment every flow run of the pool gets: the pool's name (``domain.distribution``),
    heartbeats (a run that stops sending them is marked Crashed), logs at INFO for the UI."""
    from iamc.automations import heartbeat_env

    return {
        WORK_POOL_ENV: pool,
        **heartbeat_env(heartbeat_seconds),
        "PREFECT_LOGGING_LEVEL": "INFO",
    }


def job_command(python: str) -> str:
    """The command a worker starts each flow run with: Prefect's engine under ``python``.

    Named, so that the process worker starts the engine itself. Without a command, Prefect 3.9's
    process worker first starts a workspace supervisor (``prefect.runner._workspace_supervisor``:
    the deployment's pull steps, then an exec of the engine): a second interpreter importing
    Prefect for every flow run, ~4 CPU-seconds each measured on a worker here (a batch of 25
    accounts' whole work is ~9). These deployments have no pull steps: a worker imports the
    flows from the installed package.
    """
    return f"{shlex.quote(python)} -m prefect.engine"


def deploy(spec_path: str | Path, pool: str | None = None, python: str | None = None) -> Deployed:
    """Register the runbook's deployments of ``spec_path`` on the work pool (made if missing).

    Each worker runs a flow run with ``python`` (default: this interpreter), which must be
    at that path, with iamc installed, on every worker, as the spec must.

    Raises:
        SpecError: No work pool named (``--work-pool`` or ``[prefect] work_pool``), or the
            state is SQLite.
        ServeError: The pool exists with another type than ``process``.
    """
    from engine.migration import require_shared_state
    from iamc.serve import deployments

    spec = load_spec(spec_path)
    pool = pool or spec.prefect.work_pool
    if not pool:
        from domain.errors import SpecError

        raise SpecError(
            f"{spec_path}: name the work pool: --work-pool NAME, or [prefect] work_pool"
        )
    require_shared_state(str(spec_path), spec.state, pool)
    created = _ensure_pool(pool)
    env = job_env(pool, spec.prefect.heartbeat_seconds)
    result = Deployed(pool, created, python or sys.executable)
    command = job_command(result.python)
    for deployment in deployments(spec_path, work_pool=pool, env=env, command=command):
        deployment.apply()
        result.deployments.append(deployment.name)
    result.automations = _automations(spec)
    return result


def _automations(spec: MigrationSpec) -> list[str]:
    from iamc.automations import ensure_automations

    return ensure_automations(
        spec.name,
        spec.prefect.notify_block,
        heartbeat_seconds=spec.prefect.heartbeat_seconds,
        crashed_after_seconds=spec.prefect.crashed_after_seconds,
    )


def _ensure_pool(pool: str) -> bool:
    """Create the process work pool if the server has none of that name; True if created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            existing = client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type=POOL_TYPE))
            log.info("created work pool %s (%s)", pool, POOL_TYPE)
            return True
    if existing.type != POOL_TYPE:
        raise ServeError(
            f"work pool {pool!r} is of type {existing.type!r}; iamc deploys to a {POOL_TYPE!r} "
            "pool (its deployments run on Kubernetes or ECS workers too: see runbooks, "
            "'Production'); name another pool"
        )
    return False
