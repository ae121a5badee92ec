"""IAM's policy simulator: is an action still allowed by a role, as IAM would decide it."""

from __future__ import annotations

from typing import Any

from tasks.aws import pages

READ_PERMISSIONS = ("iam:SimulatePrincipalPolicy",)

# ActionNames per call: the simulator evaluates each action against each resource, and a
# person's window of use can hold hundreds of actions; a batch keeps each request small.
ACTION_BATCH = 100


# A decision of ours (not IAM's): implicitly denied because the permissions boundary allows
# no statement for the action (``PermissionsBoundaryDecisionDetail.AllowedByPermissionsBoundary``
# false in the simulator's result), whatever the identity policies name.
BOUNDARY_DENY = "boundaryDeny"


def simulate_actions(iam: Any, role_arn: str, actions: list[str]) -> dict[str, str]:
    """action -> IAM's decision (``allowed``, ``explicitDeny``, ``implicitDeny``) for the role.

    Args:
        iam: An IAM client of the role's account.
        role_arn: The principal whose policies (inline, managed, boundary) are evaluated.
        actions: IAM action names ("s3:GetObject"); Resource is IAM's default, ``*``.

    Returns:
        IAM's ``EvalDecision``, but ``BOUNDARY_DENY`` for an implicit deny the role's
        permissions boundary decided.
    """
    decisions: dict[str, str] = {}
    for start in range(0, len(actions), ACTION_BATCH):
        batch = actions[start : start + ACTION_BATCH]
        for result in pages(
            iam,
            "simulate_principal_policy",
            "EvaluationResults",
            PolicySourceArn=role_arn,
            ActionNames=batch,
        ):
            decision = result["EvalDecision"]
            boundary = result.get("PermissionsBoundaryDecisionDetail") or {}
            if decision == "implicitDeny" and boundary.get("AllowedByPermissionsBoundary") is False:
                decision = BOUNDARY_DENY
            decisions[result["EvalActionName"]] = decision
    return decisions
