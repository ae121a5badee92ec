"""The spec's ``[prefect]`` table: how the runbook runs beyond one machine, and who is told.

``iamc serve`` runs every flow on the machine that serves it; ``iamc deploy --work-pool NAME``
registers the same deployments on a Prefect work pool so any number of ``prefect worker``
processes (on any machines) run them, each account's work as a child flow run of its own.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

# A block document's slug: "<block type slug>/<block name>", as `prefect block ls` lists it.
_BLOCK_SLUG = re.compile(r"^[a-z0-9-]+/[a-z0-9-]+$")


class PrefectSettings(BaseModel):
    """``[prefect]``: the work pool, the operators' notification block, heartbeats.

    Attributes:
        work_pool: The process work pool ``iamc deploy`` registers on (``--work-pool`` wins).
            With a work pool the state must be PostgreSQL: many workers write it at once.
        notify_block: The Prefect notification block (``custom-webhook/ops-alerts``,
            ``slack-webhook/iam-team``…) ``iamc deploy``'s automations send through when a run
            pauses for approval, fails or crashes; none: no automations are made.
        heartbeat_seconds: How often a flow run on a worker says it is alive.
        crashed_after_seconds: A running flow run silent this long is marked Crashed (its
            worker died), so its parent or an operator's Retry continues it elsewhere.
        account_timeout_seconds: How long a parent waits for one batch run of accounts.
        accounts_per_run: Accounts per child flow run on the pool: a flow run is a process
            of its own on its worker (~3 s of CPU to start: Prefect, boto3, SQLAlchemy), so
            accounts go in batches; in a 25-account inventory batch the start-up was ~40% of
            its CPU. Fewer batches than the pool's slots leave workers idle.
        batch_start_seconds: A batch no worker has taken this long (every slot busy, some
            with runs that wait for their own batches) is run by its parent instead.
    """

    model_config = ConfigDict(extra="forbid")

    work_pool: str | None = None
    notify_block: str | None = None
    # Prefect refuses fewer than 30 s (PREFECT_FLOWS_HEARTBEAT_FREQUENCY).
    heartbeat_seconds: Annotated[int, Field(ge=30, le=600)] = 30
    crashed_after_seconds: Annotated[int, Field(ge=60, le=86_400)] = 120
    account_timeout_seconds: Annotated[int, Field(ge=60, le=7 * 86_400)] = 6 * 3600
    accounts_per_run: Annotated[int, Field(ge=1, le=1000)] = 25
    batch_start_seconds: Annotated[int, Field(ge=10, le=86_400)] = 120

    @field_validator("notify_block")
    @classmethod
    def _block_slug(cls, value: str | None) -> str | None:
        if value is not None and not _BLOCK_SLUG.match(value):
            raise ValueError(
                f"{value!r} is not a block slug: expected '<block type>/<block name>' as "
                "'prefect block ls' lists it, e.g. 'custom-webhook/ops-alerts'"
            )
        return value
