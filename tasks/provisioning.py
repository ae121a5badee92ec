"""The provision stage's handler table: plan action kind -> how it is done, checked, undone."""

from __future__ import annotations

from tasks.assignments import CreateAssignment
from tasks.handler import Handler
from tasks.permission_sets import (
    CreatePermissionSet,
    ProvisionPermissionSet,
    UpdatePermissionSet,
)

HANDLERS: dict[str, Handler] = {
    "create-permission-set": CreatePermissionSet(),
    "update-permission-set": UpdatePermissionSet(),
    "provision-permission-set": ProvisionPermissionSet(),
    "create-assignment": CreateAssignment(),
}

# Rollback undoes in reverse order: assignments, then provisioning, then updates of sets an
# earlier wave created (restored and re-provisioned), then the sets this plan created.
UNDO_ORDER = (
    "create-assignment",
    "provision-permission-set",
    "update-permission-set",
    "create-permission-set",
)
# Done in the management account before any account is provisioned.
PERMISSION_SET_KINDS = ("create-permission-set", "update-permission-set")
