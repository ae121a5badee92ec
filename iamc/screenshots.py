"""`make screenshots`: the README's pictures of the UI, taken from a real run, not drawn.

Starts a seeded sandbox AWS, a local Prefect server and the runbook's deployments, and runs
``centralize`` until it pauses for the change board. Then, in headless Chromium driven through
the DevTools protocol (:mod:`iamc.browser`):

1. the paused run's page with Resume pressed: the approval form, opened, as the board sees it;
2. one member account made unreachable as operators meet it (its OrganizationAccountAccessRole
   deleted after the plan), the run resumed with the form's answer, and the provision run's
   per-account table: that account FAILED with AWS's reason, the others done;
3. the migration's status artifact (``<migration>-status``), when this version publishes one.

Needs Debian's ``chromium``. Pictures are taken in Prefect's newer UI (``/v2``), which a
browser without a saved preference opens.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from prefect.flow_runs import resume_flow_run
from prefect.settings import PREFECT_API_URL, temporary_settings

from console.operator import artifact_key, deployment_name
from engine.migration import Migration
from engine.progress import migration_progress
from engine.reports import load_plan
from iamc.browser import Browser, chromium_path
from iamc.serve import exit_on_sigterm, start_server, stop_process
from sandbox.demo_spec import DEMO_SPEC
from sandbox.seed import seed_organization
from sandbox.server import Sandbox

SPEC_NAME = "acme-wave-1"
ROLE = "OrganizationAccountAccessRole"
REFUSED = "sts:AssumeRole"  # AWS's words when the member role is gone
APPROVAL_PNG = "ui-approval-form.png"
FAILED_TABLE_PNG = "ui-failed-apply-per-account.png"
STATUS_PNG = "ui-migration-status.png"
# The Artifact tab of an artifact's page (newer UI): the table or the Markdown, drawn.
CONTENT = "document.querySelector('main [role=tabpanel]')"
MAX_HEIGHT = 2400  # the tallest picture of an artifact, in CSS pixels
MAX_PNG_BYTES = 300_000


@dataclass(frozen=True)
class Scene:
    """What the pictures are taken of: the API client, the spec, the sandbox, the UI."""

    client: Any
    spec: Path
    sandbox: Sandbox
    ui: str  # the newer UI's root, e.g. http://127.0.0.1:4321/v2
    out_dir: Path


def _wait(check: Callable[[], Any], what: str, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    raise TimeoutError(f"timed out waiting for {what}")


def take(out_dir: Path, workdir: Path) -> list[Path]:
    """Run the scenario and write the PNGs into ``out_dir``; return their paths."""
    chromium_path()  # before minutes of setup: say at once when it is missing
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    spec = workdir / "spec.toml"
    spec.write_text(DEMO_SPEC.replace('name = "demo"', f'name = "{SPEC_NAME}"'))
    with Sandbox(port=0) as sandbox:
        sandbox.reset(seed=7)
        os.environ.update(sandbox.env())
        seed_organization(
            boto3.Session(),
            accounts=3,
            users_per_account=8,
            seed=7,
            samples_dir=workdir / "samples",
            endpoint_url=sandbox.url,
        )
        server, api_url = start_server(0, workdir / "prefect-server")
        env = {**os.environ, "PREFECT_API_URL": api_url}
        serve = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
            [sys.executable, "-m", "iamc.cli", "serve", "-c", str(spec)],
            env=env,
            stdout=(workdir / "serve.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            from prefect.client.orchestration import get_client

            with (
                temporary_settings({PREFECT_API_URL: api_url}),
                get_client(sync_client=True) as client,
            ):
                ui = f"{api_url.removesuffix('/api')}/v2"
                return run_and_capture(Scene(client, spec, sandbox, ui, out_dir))
        finally:
            stop_process(serve)
            stop_process(server)


def run_and_capture(scene: Scene) -> list[Path]:
    """Run ``centralize`` to its approval pause, then into a provision with one account down."""
    run = start_centralize(scene)
    wait_for_state(scene, run.id, "PAUSED", what="the approval pause")
    taken = []
    with Browser() as browser:
        taken.append(shoot_approval_form(browser, scene, run.id))
        victim = make_unreachable(scene)
        approve(scene, run.id)
        # A failed provision ends the run; were centralize to go on past a failed account,
        # its next stop would be the next approval's pause.
        wait_for_state(scene, run.id, "FAILED", "COMPLETED", "PAUSED", what="the provision run")
        taken.append(shoot_failed_table(browser, scene, victim))
        status = shoot_status(browser, scene, victim)
        if status is not None:
            taken.append(status)
    return taken


def start_centralize(scene: Scene) -> Any:
    """A run of the served ``centralize`` deployment, once the deployments are registered."""
    name = f"centralize/{deployment_name('centralize', SPEC_NAME)}"

    def deployment() -> Any:
        try:
            return scene.client.read_deployment_by_name(name)
        except Exception:  # not registered yet
            return None

    found = _wait(deployment, f"the deployment {name}", 120)
    return scene.client.create_flow_run_from_deployment(found.id)


def wait_for_state(scene: Scene, run_id: Any, *wanted: str, what: str) -> Any:
    """The flow run once its state is one of ``wanted``; a crash or other end is an error."""

    def reached() -> Any:
        run = scene.client.read_flow_run(run_id)
        kind = run.state.type.value if run.state else ""
        if kind in wanted:
            return run
        if kind in {"FAILED", "CRASHED", "CANCELLED", "COMPLETED"}:
            raise RuntimeError(f"run {run_id} ended {kind} before {what}: {run.state.message}")
        return None

    return _wait(reached, what)


def shoot_approval_form(browser: Browser, scene: Scene, run_id: Any) -> Path:
    """The paused run's page with Resume pressed: the approval form, opened and unfilled.

    The viewport is tall enough for the whole form without the dialog's own scrolling; the
    picture is the dialog with a margin of the darkened run page around it.
    """
    browser.resize(1400, 2400)
    browser.open(f"{scene.ui}/runs/flow-run/{run_id}")
    browser.wait_for(_has_text("Paused"), "the run's Paused badge")
    # The newer UI keeps Resume in the run's ⋮ menu; the classic UI (without /v2) shows it as
    # a button, which the same finder clicks.
    resume = _by_text("[role=menuitem], button", "Resume")
    if not browser.evaluate(f"!!({resume})"):
        browser.click(_menu_button(), "the run's ⋮ menu")
    browser.click(resume, "Resume in the run's menu")
    dialog = "document.querySelector('[role=dialog]')"
    browser.wait_for(_has_text("Plan hash", "[role=dialog]"), "the approval form")
    browser.settle("the dialog's opening")
    box = browser.box(dialog, "the dialog")
    if box["y"] < 0 or box["y"] + box["height"] > browser.height:
        print("warning: the approval form is taller than the window; the picture cuts it")
    margin = 24
    clip = {
        "x": max(0.0, box["x"] - margin),
        "y": max(0.0, box["y"] - margin),
        "width": box["width"] + 2 * margin,
        "height": min(box["height"] + 2 * margin, browser.height - max(0.0, box["y"] - margin)),
    }
    return _small(browser.screenshot(scene.out_dir / APPROVAL_PNG, clip))


def make_unreachable(scene: Scene) -> str:
    """Delete the member role of one account the plan provisions in; return the account id.

    As an operator meets it: the plan was made while the role was there, then someone removed
    it. Into the account first (with the role), then its policies detached, then the role.
    """
    progress = Migration.call(migration_progress, str(scene.spec))
    assert progress.plan_id is not None, "centralize paused without a plan"
    plan, _ = Migration.call(load_plan, str(scene.spec), progress.plan_id)
    accounts = sorted({a.account_id for a in plan.actions if a.stage == "provision"} - {None})
    victim = str(accounts[-1])
    # The management account's dummy credentials are in the environment (``take``).
    sts = boto3.client("sts", endpoint_url=scene.sandbox.url, region_name="us-east-1")
    assumed = sts.assume_role(
        RoleArn=f"arn:aws:iam::{victim}:role/{ROLE}", RoleSessionName="iamc-screenshots"
    )["Credentials"]
    iam = boto3.client(
        "iam",
        endpoint_url=scene.sandbox.url,
        region_name="us-east-1",
        aws_access_key_id=assumed["AccessKeyId"],
        aws_secret_access_key=assumed["SecretAccessKey"],
        aws_session_token=assumed["SessionToken"],
    )
    for policy in iam.list_attached_role_policies(RoleName=ROLE)["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=ROLE, PolicyArn=policy["PolicyArn"])
    for name in iam.list_role_policies(RoleName=ROLE)["PolicyNames"]:
        iam.delete_role_policy(RoleName=ROLE, PolicyName=name)
    iam.delete_role(RoleName=ROLE)
    print(f"removed {ROLE} from account {victim}")
    return victim


def approve(scene: Scene, run_id: Any) -> None:
    """Resume the paused run with what the change board types into the form."""
    resume_flow_run(
        run_id,
        run_input={
            "approver": "change-board@acme.example",
            "ticket": "CHG-2041",
            "decision": "approve",
            "stage": "provision",
            # The reviewer types the hash they read: the form does not prefill it.
            "plan_hash": Migration.call(migration_progress, str(scene.spec)).plan_hash,
            "comment": "reviewed in the CAB of Tuesday",
        },
    )

    def resumed() -> bool:
        state = scene.client.read_flow_run(run_id).state
        return state is not None and not state.is_paused()

    _wait(resumed, "the run to leave its pause", 60)


def latest_artifact(scene: Scene, key: str) -> Any:
    """The newest artifact with this key, or None."""
    found = scene.client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
        sort=ArtifactSort.CREATED_DESC,
        limit=1,
    )
    return found[0] if found else None


def shoot_failed_table(browser: Browser, scene: Scene, victim: str) -> Path:
    """The provision run's per-account table: ``victim`` FAILED with AWS's reason."""
    key = artifact_key(SPEC_NAME, "apply-provision")
    artifact = _wait(lambda: latest_artifact(scene, key), f"the artifact {key}", 60)
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    failed = [r.get("account") for r in rows if str(r.get("state")).upper() == "FAILED"]
    if failed != [victim]:
        print(f"warning: {key} should show {victim} alone FAILED; FAILED rows: {failed}")
    return _shoot_artifact(browser, scene, artifact, FAILED_TABLE_PNG, victim, (REFUSED,))


def shoot_status(browser: Browser, scene: Scene, victim: str) -> Path | None:
    """The migration's status artifact, or None (said) when this version publishes none."""
    key = artifact_key(SPEC_NAME, "status")
    artifact = latest_artifact(scene, key)
    if artifact is None:
        print(f"skipped {STATUS_PNG}: no artifact with key {key} (this centralize publishes none)")
        return None
    return _shoot_artifact(browser, scene, artifact, STATUS_PNG, "", (victim,))


def _shoot_artifact(
    browser: Browser,
    scene: Scene,
    artifact: Any,
    name: str,
    drawn: str,
    shows: tuple[str, ...] = (),
) -> Path:
    """An artifact's page down to the end of its content, once its content shows ``drawn``.

    The window grows with a long artifact (up to :data:`MAX_HEIGHT`). Each text of ``shows``
    the picture does not show (below it, or cut off by a table's scroller) is said as a
    warning: the picture is what the UI shows, not retouched.
    """
    browser.resize(1600, 900)
    browser.open(f"{scene.ui}/artifacts/artifact/{artifact.id}")
    text = f"({CONTENT}?.innerText || '').trim()"
    browser.wait_for(
        f"{text}.length && {text}.includes({json.dumps(drawn)})",
        f"the artifact {artifact.key} to be drawn",
    )
    browser.settle()
    box = browser.box(CONTENT, "the artifact's content")
    bottom = box["y"] + box["height"] + 16
    if bottom > browser.height:
        browser.resize(browser.width, min(MAX_HEIGHT, math.ceil(bottom)))
        browser.settle()
        box = browser.box(CONTENT, "the artifact's content")
        bottom = box["y"] + box["height"] + 16
    bottom = min(float(browser.height), bottom)
    for wanted in shows:
        if not browser.text_shown(wanted, bottom):
            print(f"warning: {name} does not show {wanted!r} (absent, below or cut off)")
    clip = {"x": 0.0, "y": 0.0, "width": float(browser.width), "height": bottom}
    return _small(browser.screenshot(scene.out_dir / name, clip))


def _small(path: Path) -> Path:
    """``path``, said when it is too big a file for the repository."""
    if path.stat().st_size > MAX_PNG_BYTES:
        print(f"warning: {path} is {path.stat().st_size // 1000} kB (keep pictures small)")
    return path


# -- finding things in Prefect's pages ---------------------------------------------------------


def _by_text(selector: str, text: str) -> str:
    """A JavaScript expression: the first visible ``selector`` whose text is ``text``."""
    return (
        f"[...document.querySelectorAll({json.dumps(selector)})].find(e => "
        f"e.textContent.trim() === {json.dumps(text)} && e.getClientRects().length) || null"
    )


def _has_text(text: str, within: str = "body") -> str:
    """A JavaScript expression: whether ``within`` exists and its text contains ``text``."""
    return (
        f"(document.querySelector({json.dumps(within)})?.innerText || '')"
        f".includes({json.dumps(text)})"
    )


def _menu_button() -> str:
    """The run page's ⋮ menu: the header's last button that opens a menu."""
    return (
        "[...document.querySelectorAll('button[aria-haspopup=menu]')]"
        ".filter(e => e.getClientRects().length).at(0) || null"
    )


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs")
    exit_on_sigterm()  # its server, sandbox and browser stop, as on Ctrl-C
    for path in take(out, Path(".iamc/screenshots")):
        print(path)


if __name__ == "__main__":
    main()
