"""The provision stage's handler table: plan action kind -> how it is done, checked, undone."""

from __future__ import annotations

from tasks.assignments import CreateAssignment
from tasks.executor import Handler
from tasks.permission_sets import CreatePermissionSet, ProvisionPermissionSet

HANDLERS: dict[str, Handler] = {
    "create-permission-set": CreatePermissionSet(),
    "provision-permission-set": ProvisionPermissionSet(),
    "create-assignment": CreateAssignment(),
}

# Rollback undoes in reverse order: assignments, then provisioning, then the sets themselves.
UNDO_ORDER = ("create-assignment", "provision-permission-set", "create-permission-set")
