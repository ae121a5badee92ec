"""The ``central-roles`` target's parts of a plan's Markdown: member roles and who may switch in."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from domain.markdown_cells import cell
from domain.plan import Plan


def central_roles_markdown(plan: Plan, serves: Counter[str], add: Callable[[str], None]) -> None:
    """central-roles: per access, its member role, the accounts it is created in and who may
    switch into it there, and how the central account lets them.

    Args:
        plan: A plan of the ``central-roles`` target (``settings["central"]`` set).
        serves: Access name -> how many of this plan's IAM users it serves.
        add: Appends one line to the document.
    """
    central = plan.settings["central"]
    add("## Central roles")
    add("")
    roles = [a for a in plan.actions if a.kind == "create-member-role"]
    if not roles:
        add("None.")
        add("")
        return
    by_access: dict[str, list[Any]] = {}
    for action in roles:
        by_access.setdefault(action.params["access"], []).append(action)
    arrive = (
        "as its IAM users, who must sign in with MFA, and join the access's group"
        if central.get("arrive") == "iam-users"
        else "through the roles their IdP federates into (SAML), each holding the access's "
        "assume policy"
    )
    add(
        f"People sign in to the central account `{central['account']}` {arrive}; from there "
        "they switch into the access's role in each member account, whose trust names exactly "
        "them (and whom earlier plans of this migration put there: they stay). *Serves* counts "
        "this plan's IAM users."
    )
    add("")
    add(
        "| Access | Role | Serves | Accounts | Who may switch in | Managed policies | Inline | "
        "Boundary | Description |"
    )
    add("|---|---|---:|---|---|---|---|---|---|")
    for access, actions in sorted(by_access.items()):
        first = actions[0].params
        # Per account a principal is this plan's or an earlier plan's; across accounts both.
        now = {_name(p) for a in actions for p in _this_plans(a.params)}
        earlier = {_name(p) for a in actions for p in a.params.get("earlier_principals") or []}
        who = ", ".join(sorted(now))
        if earlier - now:
            kept = f"(kept from earlier plans: {', '.join(sorted(earlier - now))})"
            who = f"{who} {kept}" if who else kept
        inline = first.get("inline_policy")
        statements = len(inline.get("Statement", [])) if inline else 0
        managed = sorted(
            {m.rsplit("/", 1)[-1] for a in actions for m in a.params["managed_policy_arns"]}
        )
        boundaries = sorted({a.params["permissions_boundary_arn"] or "—" for a in actions})
        add(
            f"| `{access}` | `{first['path']}{first['role_name']}` | {serves[access]} | "
            f"{len(actions)}: {', '.join(sorted(a.account_id for a in actions))} | "
            f"{cell(who)} | {cell(', '.join(managed)) or '—'} | "
            f"{f'{statements} statement(s)' if statements else '—'} | "
            f"{cell(', '.join(boundaries))} | {cell(first.get('description', ''))} |"
        )
    add("")


def account_roles_markdown(plan: Plan, account_id: str, add: Callable[[str], None]) -> None:
    """One account's member roles and whom each trusts, in the account's section.

    Args:
        plan: The plan.
        account_id: The member account.
        add: Appends one line to the document.
    """
    roles = [
        a for a in plan.actions if a.kind == "create-member-role" and a.account_id == account_id
    ]
    if roles:
        add("")
        add("Roles: " + "; ".join(f"`{a.target}` trusts {_trusted(a.params)}" for a in roles))


def _this_plans(params: dict[str, Any]) -> list[str]:
    """The principals a role trusts for this plan's people (not only for earlier plans')."""
    earlier = set(params.get("earlier_principals") or [])
    return [arn for arn in params["principals"] if arn not in earlier]


def _trusted(params: dict[str, Any]) -> str:
    """Whom a role trusts: this plan's people, then those earlier plans put there."""
    now = ", ".join(_name(arn) for arn in _this_plans(params))
    earlier = params.get("earlier_principals") or []
    if not earlier:
        return now
    kept = f"(kept from earlier plans: {', '.join(_name(arn) for arn in earlier)})"
    return f"{now} {kept}" if now else kept


def _name(arn: str) -> str:
    """A central principal as people read it: its name, not its ARN."""
    return arn.rsplit("/", 1)[-1]
