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
