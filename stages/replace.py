"""The replace stage: give each placed workload's runtime an IAM role instead of its user's key.

For every user the plan replaces with a role (``Outcome.REPLACE_WITH_ROLE``,
``domain.role_replacement``) it creates the role under ``/iamc/`` with the runtime's trust
policy, copies the user's effective permissions onto it (inline policies, attached managed
policies, its groups' too) and, for EC2, an instance profile; GitHub OIDC roles first need the
account's OIDC provider, adopted when it exists, created once otherwise. Every trust policy is
checked (``domain.trust_policy``): a violation is a blocking finding and the stage can't be
approved or applied. It gives access and takes none away: the user keeps its key until the
owner switches and ``disable`` (which depends on the role) retires it. Reversible: a rollback
deletes what it created in the order IAM requires, never an adopted provider or role.
Approved with ``all``.

The AWS adapters are imported inside the functions that run the stage: listing the stages
imports no AWS SDK (``tests/iamc/test_read_only_imports.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from domain.plan import Outcome, PlanAction, Stage
from domain.planning import PlanInputs
from domain.records import Finding
from domain.role_replacement import RoleReplacement
from domain.stages import WITH_ALL, StageDefinition, register
from domain.trust_policy import GITHUB_AUDIENCE, GITHUB_OIDC_HOST, trust_problems
from domain.workloads import CREATE_INSTANCE_PROFILE, CREATE_WORKLOAD_ROLE
from engine.preconditions import IDENTITY, PROTECTION, StagePreconditions, refuse_if_stale
from engine.stage_run import AccountReport, StageRun, run_one, users_of
from stages.retire import retire_user

if TYPE_CHECKING:
    from tasks.handler import Handler

OIDC_PROVIDER = "ensure-oidc-provider"
PUT_POLICY = "put-role-policy"
ATTACH_POLICY = "attach-role-policy"
# A user's actions run in this order: the role, then what hangs on it.
KIND_ORDER = (CREATE_WORKLOAD_ROLE, PUT_POLICY, ATTACH_POLICY, CREATE_INSTANCE_PROFILE)
# A rollback removes in the order IAM requires: DeleteRole refuses a role that still has
# policies or instance profiles (IAM API reference, DeleteRole); the provider goes last.
UNDO_ORDER = (
    CREATE_INSTANCE_PROFILE,
    ATTACH_POLICY,
    PUT_POLICY,
    CREATE_WORKLOAD_ROLE,
    OIDC_PROVIDER,
)
GITHUB_OIDC_URL = f"https://{GITHUB_OIDC_HOST}"


def handlers() -> dict[str, Handler]:
    """Action kind -> how it is done, checked and undone (the adapters, on first use)."""
    from tasks.iam_roles import HANDLERS

    return HANDLERS


def _action(
    replacement: RoleReplacement,
    fingerprint: str,
    kind: str,
    suffix: str,
    params: dict[str, Any],
    deps: list[str],
) -> PlanAction:
    base = f"replace:{replacement.account_id}:{replacement.user}"
    return PlanAction(
        id=f"{base}:{suffix}",
        stage=Stage.REPLACE,
        kind=kind,
        account_id=replacement.account_id,
        target=replacement.user,
        target_fingerprint=fingerprint,
        params=params,
        depends_on=list(deps),
    )


def _role_actions(
    replacement: RoleReplacement, fingerprint: str, migration: str, provider_id: str | None
) -> list[PlanAction]:
    """Create the role, then its inline and managed policies and (EC2) its instance profile."""
    r = replacement
    params = {
        "user": r.user,
        "role_name": r.role_name,
        "role_path": r.role_path,
        "runtime": str(r.runtime),
        "trust_policy": r.trust_policy,
        "description": r.description,
        "migration": migration,
        **{
            name: value
            for name, value in (
                ("repository", r.repository),
                ("vendor_account", r.vendor_account),
                ("external_id", r.external_id),
                ("trust_anchor_arn", r.trust_anchor_arn),
                ("permissions_boundary_arn", r.permissions_boundary_arn),
                ("oidc_provider_arn", r.oidc_provider_arn),
            )
            if value
        },
    }
    role = _action(
        r,
        fingerprint,
        CREATE_WORKLOAD_ROLE,
        CREATE_WORKLOAD_ROLE,
        params,
        [provider_id] if provider_id else [],
    )
    on_role = [role.id]
    actions = [role]
    for name, document in sorted(r.inline_policies.items()):
        actions.append(
            _action(
                r,
                fingerprint,
                PUT_POLICY,
                f"{PUT_POLICY}:{name}",
                {"role_name": r.role_name, "policy_name": name, "policy": document},
                on_role,
            )
        )
    for arn in r.managed_policy_arns:
        actions.append(
            _action(
                r,
                fingerprint,
                ATTACH_POLICY,
                f"{ATTACH_POLICY}:{arn.rsplit('/', 1)[-1]}",
                {"role_name": r.role_name, "policy_arn": arn},
                on_role,
            )
        )
    if r.instance_profile_name:
        actions.append(
            _action(
                r,
                fingerprint,
                CREATE_INSTANCE_PROFILE,
                CREATE_INSTANCE_PROFILE,
                {
                    "role_name": r.role_name,
                    "instance_profile_name": r.instance_profile_name,
                    "role_path": r.role_path,
                    "migration": migration,
                },
                on_role,
            )
        )
    return actions


def _provider_action(account_id: str, migration: str) -> PlanAction:
    return PlanAction(
        id=f"replace:{account_id}:oidc-provider",
        stage=Stage.REPLACE,
        kind=OIDC_PROVIDER,
        account_id=account_id,
        target=GITHUB_OIDC_HOST,
        target_fingerprint="",
        params={
            "url": GITHUB_OIDC_URL,
            "client_ids": [GITHUB_AUDIENCE],
            "migration": migration,
        },
    )


def _trust_findings(replacement: RoleReplacement) -> list[Finding]:
    return [
        Finding(
            severity="blocking",
            kind="replace-loose-trust",
            message=f"role {replacement.role_name} for {replacement.user}: {problem}",
            account_id=replacement.account_id,
            subject=f"user {replacement.user}",
            details={"stages": [str(Stage.REPLACE)], "role_name": replacement.role_name},
        )
        for problem in trust_problems(replacement.trust_policy, replacement.account_id)
    ]


def plan_actions(inputs: PlanInputs) -> list[PlanAction]:
    """Per replaced user: its role and what hangs on it; per account once: the OIDC provider.

    Each user's disable (planned after this stage) then depends on its role: the role's
    action id goes into ``inputs.prerequisites``.
    """
    actions: list[PlanAction] = []
    providers: dict[str, PlanAction] = {}
    for user_plan in inputs.users:
        key = (user_plan.account_id, user_plan.user)
        replacement = inputs.replacements.get(key)
        if user_plan.outcome != Outcome.REPLACE_WITH_ROLE or replacement is None:
            continue
        inputs.findings.extend(_trust_findings(replacement))
        provider_id = None
        if replacement.oidc_provider_arn:
            provider = providers.get(user_plan.account_id)
            if provider is None:
                provider = providers[user_plan.account_id] = _provider_action(
                    user_plan.account_id, inputs.migration
                )
                actions.append(provider)
            provider_id = provider.id
        role_actions = _role_actions(
            replacement, user_plan.target_fingerprint, inputs.migration, provider_id
        )
        actions.extend(role_actions)
        inputs.prerequisites.setdefault(key, []).append(role_actions[0].id)
    return actions


def replace_account(rt: StageRun, account_id: str, actions: list[PlanAction]) -> AccountReport:
    """The account's OIDC provider first (if a role needs it), then each user's role in order.

    Each user is re-proved live before its first change (same unique id, not protected); a
    refused user is left as it is, with the reason, and the others go on.
    """
    report = AccountReport(account_id)
    for action in (a for a in actions if a.kind == OIDC_PROVIDER):
        rt.executor.check_alive()
        run_one(rt, action, report)
    for work in users_of([a for a in actions if a.kind != OIDC_PROVIDER]):
        work.actions.sort(key=lambda a: KIND_ORDER.index(a.kind))
        rt.executor.check_alive()
        retire_user(rt, Stage.REPLACE, work, report)
    return report


PRECONDITIONS = StagePreconditions(
    per_account=("the account's GitHub OIDC provider: adopted when it exists, or created once",),
    per_user=(IDENTITY, PROTECTION),
)


REPLACE = register(
    StageDefinition(
        name=Stage.REPLACE,
        order=1,
        summary="an IAM role for each placed workload, with the user's permissions (reversible)",
        plan_actions=plan_actions,
        handlers=handlers,
        per_account=replace_account,
        undo_order=UNDO_ORDER,
        preconditions=PRECONDITIONS,
        before_run=(refuse_if_stale,),
        approval=WITH_ALL,
        takes_access_away=False,
    )
)
