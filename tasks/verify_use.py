"""Verify after a trim: nobody lost anything they used in the window.

For each person whose access the plan trimmed ([least_privilege] mode "trim"), in each
account: every action of their usage is allowed by one of their provisioned roles, as IAM's
policy simulator decides it; every service they used at service level only (no action of it
known) is still granted by one of those roles' policies.
"""

from __future__ import annotations

from typing import Any

from domain.least_privilege import denies_service, documents_grant, names_action
from domain.plan import Plan
from domain.records import AccountInventory
from domain.usage import UsageRead, UserUsage
from domain.usage_events import needs_permission
from tasks.aws import translate_errors
from tasks.policy_simulator import simulate_actions


def trimmed_users(plan: Plan, account_id: str) -> dict[str, list[dict[str, Any]]]:
    """IAM user -> what the plan says it loses in the account (trim mode only)."""
    section = plan.least_privilege
    if not section or section.get("mode") != "trim":
        return {}
    found: dict[str, list[dict[str, Any]]] = {}
    for loss in section.get("losses", []):
        if loss["account_id"] == account_id:
            found.setdefault(loss["user"], []).append(loss)
    return found


def _role_documents(role: Any, inventory: AccountInventory | None) -> list[dict[str, Any] | None]:
    """The live role's inline document and its managed policies' documents (the inventory's;
    None where the inventory has none)."""
    known = {p.arn: p.document for p in inventory.managed_policies} if inventory else {}
    return [role.inline_document, *(known.get(arn) for arn in sorted(role.managed_policy_arns))]


def check_used_access(
    check: Any,
    users: list[str],
    usage: UsageRead | None,
    roles: dict[str, Any],
    inventory: AccountInventory | None,
    iam: Any,
) -> None:
    """Add a problem, naming the person, the action and the sets, for each use now lost.

    Args:
        check: The person's ``tasks.verify_access.AccessCheck``.
        users: The person's IAM users the plan trimmed.
        usage: The latest usage read (None: none stored).
        roles: set name -> its provisioned role (``SsoRole``) or None.
        inventory: The account as the plan's inventory saw it (managed policy documents).
        iam: An IAM client of the account.
    """
    sets = ", ".join(sorted(roles)) or "none"
    if usage is None:
        check.problems.append(
            "the plan trimmed this person's access, but no usage read is stored to check "
            "that nothing used was lost: run 'iamc usage', then verify again"
        )
        return
    live = {name: role for name, role in roles.items() if role is not None}
    documents = {name: _role_documents(role, inventory) for name, role in live.items()}
    for user in users:
        found = usage.known(check.account_id, user)
        if found is None:
            check.problems.append(
                f"IAM user {user}: its usage is not in the latest read, so nothing it used can "
                "be checked: run 'iamc usage', then verify again"
            )
            continue
        for action in _lost_actions(check.account_id, found, live, documents, iam):
            check.problems.append(
                f"IAM user {user} used {action} (last {found.actions[action]}) in the window, "
                f"which none of the person's permission sets ({sets}) allows now"
            )
        with_actions = {a.partition(":")[0].lower() for a in found.actions}
        for ns, when in sorted(found.services.items()):
            if ns.lower() not in with_actions and not _service_kept(documents, ns.lower()):
                check.problems.append(
                    f"IAM user {user} used service {ns} (last {when}) in the window, which "
                    f"none of the person's permission sets ({sets}) grants now"
                )


def _service_kept(documents: dict[str, list[dict[str, Any] | None]], namespace: str) -> bool:
    """One of the roles grants the service (an Allow names it) and no Deny of that role takes
    the whole service away."""
    return any(
        documents_grant(docs).covers(namespace) and not denies_service(docs, namespace)
        for docs in documents.values()
    )


def _lost_actions(
    account_id: str,
    found: UserUsage,
    roles: dict[str, Any],
    documents: dict[str, list[dict[str, Any] | None]],
    iam: Any,
) -> list[str]:
    # A call no policy governs (sts:GetCallerIdentity) can't be lost.
    actions = sorted(a for a in found.actions if needs_permission(a))
    kept: set[str] = set()
    for name, role in roles.items():
        remaining = [a for a in actions if a not in kept]
        if not remaining or not role.arn:
            continue
        with translate_errors(account_id=account_id, operation="iam:SimulatePrincipalPolicy"):
            decisions = simulate_actions(iam, role.arn, remaining)
        # The simulator asks about Resource "*", which a resource-scoped statement does not
        # match; trimming never changes a statement's resources, so an action the role's
        # policies still name counts as kept when the simulator's deny is only that implicit
        # one: not an explicit Deny, nor the role's permissions boundary (BOUNDARY_DENY).
        kept |= {
            a
            for a, d in decisions.items()
            if d == "allowed" or (d == "implicitDeny" and names_action(documents[name], a))
        }
    return [a for a in actions if a not in kept]
