"""Reference a person's customer-managed policy from a permission set, or inline it, and why.

Identity Center attaches a customer-managed policy reference by name and path only: the role
it provisions in each account gets that account's policy of that name (IAM Identity Center
user guide, "Customer managed policies"). A set assigned in several accounts therefore grants
what each account's policy says. The set references a policy only when every account it is
assigned (or already provisioned) to has the policy with the same name, path and document;
otherwise the policy's statements are inlined, so the set grants the same everywhere.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from domain.access import PermissionSetDefinition, SynthesisResult
from domain.fingerprinted_access import Holder, PolicyRef
from domain.policy_documents import policy_fingerprint
from domain.records import AccountInventory, ManagedPolicy

REFERENCE = "reference"
INLINE = "inline"
_NAMED = 5  # accounts named in a "why" before "and N more"


@dataclass(frozen=True)
class Inlined:
    """A customer-managed policy a set inlines: its label and the document to merge."""

    policy: str  # "/path/Name"
    document: dict[str, Any]


def _accounts_text(accounts: list[str]) -> str:
    shown = ", ".join(accounts[:_NAMED])
    more = len(accounts) - _NAMED
    return f"{shown} and {more} more" if more > 0 else shown


def _policies_by_account(
    inventories: list[AccountInventory],
) -> dict[str, dict[tuple[str, str], ManagedPolicy]]:
    found: dict[str, dict[tuple[str, str], ManagedPolicy]] = {}
    for inventory in inventories:
        if inventory.error is not None:
            continue
        found[inventory.account.account_id] = {
            (p.name, p.path or "/"): p for p in inventory.managed_policies if not p.aws_managed
        }
    return found


def _why_not(
    ref: PolicyRef, accounts: list[str], policies: dict[str, dict[tuple[str, str], ManagedPolicy]]
) -> dict[str, list[str]]:
    """Problem -> accounts, for each account where the policy is not the planned one."""
    problems: dict[str, list[str]] = defaultdict(list)
    for account_id in accounts:
        if account_id not in policies:
            problems["account not in the inventory"].append(account_id)
            continue
        found = policies[account_id].get((ref.name, ref.path))
        if found is None:
            problems["absent"].append(account_id)
        elif found.document is None:
            problems["document not read"].append(account_id)
        elif policy_fingerprint(found.document) != ref.document_hash:
            problems["another document"].append(account_id)
    return problems


def choose_customer_policies(
    result: SynthesisResult,
    holders: list[Holder],
    inventories: list[AccountInventory],
    provisioned: dict[str, list[str]] | None = None,
) -> dict[str, list[Inlined]]:
    """Decide, per permission set and customer-managed policy, reference or inline.

    Sets ``customer_managed_choice`` on every set with customer-managed policies, drops the
    inlined ones from its references and from ``result.required_customer_policies`` (unless
    another set assigned in that account still references them). Deterministic: the document
    planned is the first holder's (holders in sorted order), the accounts are sorted.

    Args:
        result: Synthesis's sets and assignments (changed in place).
        holders: Who holds each access (synthesis's holders, any order).
        inventories: The accounts whose policies are compared (the whole snapshot, so that
            accounts of earlier waves can be checked too).
        provisioned: Fingerprint -> accounts an earlier wave already provisioned the set to.

    Returns:
        Set name -> the policies it must inline (their statements go into its inline policy).
    """
    first: dict[str, Holder] = {}
    for holder in sorted(holders, key=Holder.sort_key):
        first.setdefault(holder.access.fingerprint, holder)
    assigned: dict[str, set[str]] = defaultdict(set)
    for assignment in result.assignments:
        assigned[assignment.permission_set_name].add(assignment.account_id)
    policies = _policies_by_account(inventories)
    inlined: dict[str, list[Inlined]] = {}
    for permission_set in result.permission_sets:
        holder = first.get(permission_set.fingerprint)
        if holder is None or not holder.access.customer_managed:
            continue
        accounts = sorted(
            assigned[permission_set.name]
            | set((provisioned or {}).get(permission_set.fingerprint, []))
        )
        for ref in holder.access.customer_managed:
            label = f"{ref.path}{ref.name}"
            problems = _why_not(ref, accounts, policies)
            if not problems:
                permission_set.customer_managed_choice.append(
                    {
                        "policy": label,
                        "choice": REFERENCE,
                        "why": f"same name, path and document in {len(accounts)} account(s): "
                        f"{_accounts_text(accounts)}",
                        "document_hash": ref.document_hash,
                    }
                )
                continue
            why = "; ".join(
                f"{problem} in {_accounts_text(where)}"
                for problem, where in sorted(problems.items())
            )
            document = policies[holder.account_id][(ref.name, ref.path)].document
            assert document is not None  # the holder's access was fingerprinted from it
            permission_set.customer_managed_choice.append(
                {
                    "policy": label,
                    "choice": INLINE,
                    "why": f"not the same in every account the set is assigned to ({why}): "
                    "its statements are inlined, so the set grants the same everywhere",
                    "document_hash": ref.document_hash,
                }
            )
            inlined.setdefault(permission_set.name, []).append(Inlined(label, document))
    if inlined:
        _drop_references(result, inlined)
    return inlined


def policy_references(
    customer_managed_policies: list[dict[str, str]],
    permissions_boundary: dict[str, Any] | None,
    choices: list[dict[str, Any]] | None = None,
) -> list[dict[str, str]]:
    """Every customer-managed policy a permission set references, as provisioning checks it.

    The set's references and its customer-managed permissions boundary, by name and path
    (each account's role gets that account's policy of that name), each with the
    ``document_hash`` it was planned with where the choice to reference it recorded one: the
    provision stage refuses an account whose policy now says something else
    (``tasks.permission_sets``). The plan, the drift plan and this module all build them here.

    Args:
        customer_managed_policies: The set's ``{"name", "path"}`` references.
        permissions_boundary: The set's boundary (``customer_managed_policy_reference`` or
            ``managed_policy_arn``), or None.
        choices: The set's ``customer_managed_choice`` entries.

    Returns:
        ``{"name", "path"[, "document_hash"]}`` per policy, sorted by path and name.
    """
    refs = {(c["name"], c.get("path") or "/") for c in customer_managed_policies}
    boundary = (permissions_boundary or {}).get("customer_managed_policy_reference")
    if boundary:
        refs.add((boundary["name"], boundary.get("path") or "/"))
    planned = {
        c["policy"]: c["document_hash"]
        for c in choices or []
        if c.get("choice") == REFERENCE and c.get("document_hash")
    }
    found = []
    for name, path in sorted(refs, key=lambda r: (r[1], r[0])):
        reference = {"name": name, "path": path}
        document_hash = planned.get(f"{path}{name}")
        found.append({**reference, "document_hash": document_hash} if document_hash else reference)
    return found


def _references(permission_set: PermissionSetDefinition) -> set[tuple[str, str]]:
    return {
        (r["name"], r["path"])
        for r in policy_references(
            permission_set.customer_managed_policies, permission_set.permissions_boundary
        )
    }


def _drop_references(result: SynthesisResult, inlined: dict[str, list[Inlined]]) -> None:
    """Take the inlined policies out of their sets' references and the required policies."""
    for permission_set in result.permission_sets:
        gone = {i.policy for i in inlined.get(permission_set.name, [])}
        permission_set.customer_managed_policies = [
            c
            for c in permission_set.customer_managed_policies
            if f"{c.get('path', '/')}{c['name']}" not in gone
        ]
    by_name = {p.name: p for p in result.permission_sets}
    still: set[tuple[str, str, str]] = {
        (a.account_id, name, path)
        for a in result.assignments
        if a.permission_set_name in by_name
        for name, path in _references(by_name[a.permission_set_name])
    }
    result.required_customer_policies = [
        r
        for r in result.required_customer_policies
        if (r.account_id, r.name, r.path) in still
        or not any(f"{r.path}{r.name}" == i.policy for items in inlined.values() for i in items)
    ]
    result.required_customer_policies.sort()
