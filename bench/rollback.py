"""A provision stage applied, then rolled back, through the real flows: the two wall times and
where the rollback's seconds go.

Both runs are ``apply_flow`` and ``rollback_flow`` as an operator starts them, reporting to a
local Prefect server, on the same sandbox organization with sso-admin throttled and its
asynchronous requests completing ``--completion-ms`` after they are made (the spec's
``first_status_poll_s`` says so, as an operator of an endpoint that completes quickly would).
The goal (issue 23): the rollback within 1.5 x the apply it undoes.

The attribution wraps the functions the time can go to and sums, over every thread, the
seconds spent inside them: the journal's writes and reads (the state DB), the assignment
listings, the waits for an asynchronous request (first poll + Describe polls), the client's
rate limiter, and the undo (or apply) calls as a whole. In a sequential rollback these
thread-seconds add up to the wall time; in a concurrent one they exceed it.
"""

from __future__ import annotations

import argparse
import functools
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.harness import bench_workdir, goal, run_flows_as_the_cli_does
from bench.provision import _bench_org, _bench_provision_plan

# Issue 23, item 6: undo at the speed of apply.
GOAL = 1.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accounts", type=int, default=12)
    parser.add_argument("--permission-sets", type=int, default=4)
    parser.add_argument(
        "--assignments", type=int, default=3, help="users assigned each set in every account"
    )
    parser.add_argument("--sso-rate", type=float, default=20.0, help="sandbox sso-admin rate")
    parser.add_argument(
        "--completion-ms",
        type=int,
        default=500,
        help="sandbox: async requests complete this long after they are made",
    )
    parser.add_argument("--repeat", type=int, default=1, help="apply + rollback this many times")


class _Attribution:
    """Thread-seconds spent inside named functions, summed over every thread."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, attribute: str, bucket: str) -> None:
        original = getattr(owner, attribute, None)
        if original is None:
            return

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.perf_counter() - began
                with self._lock:
                    self.seconds[bucket] += spent
                    self.calls[bucket] += 1

        setattr(owner, attribute, timed)
        self._undo.append(lambda: setattr(owner, attribute, original))

    def reset(self) -> None:
        with self._lock:
            self.seconds.clear()
            self.calls.clear()

    def restore(self) -> None:
        for undo in reversed(self._undo):
            undo()

    def snapshot(self) -> dict[str, tuple[float, int]]:
        with self._lock:
            return {k: (self.seconds[k], self.calls[k]) for k in self.seconds}


def _instrument() -> _Attribution:
    """Wrap what the apply's and the rollback's time can go to (present in old and new code)."""
    import pyrate_limiter

    import engine.executor
    import tasks.assignments
    import tasks.permission_sets
    import tasks.sso_requests
    from state.journal import JournalRepository

    found = _Attribution()
    for name in (
        "journal_entry",
        "journal_entries",
        "journal_intent",
        "journal_progress",
        "journal_finish",
        "journal_mark",
        "journal_forget",
    ):
        found.wrap(JournalRepository, name, "journal (state DB reads and writes)")
    found.wrap(tasks.sso_requests, "wait_for_status", "async waits (first poll + Describe polls)")
    found.wrap(tasks.assignments, "list_assignments", "ListAccountAssignments (undo's check)")
    found.wrap(pyrate_limiter.Limiter, "try_acquire", "client rate limiter (waits + bookkeeping)")
    for cls in (
        tasks.assignments.CreateAssignment,
        tasks.permission_sets.CreatePermissionSet,
        tasks.permission_sets.UpdatePermissionSet,
        tasks.permission_sets.ProvisionPermissionSet,
    ):
        found.wrap(cls, "undo", "handler undo (AWS calls and waits, total)")
        found.wrap(cls, "apply", "handler apply (AWS calls and waits, total)")
    found.wrap(engine.executor.Executor, "undo", "Executor.undo (journal + handler, total)")
    found.wrap(engine.executor.Executor, "run", "Executor.run (journal + handler, total)")
    return found


@contextmanager
def _timed() -> Iterator[dict[str, float]]:
    out = {"wall": 0.0}
    began = time.monotonic()
    try:
        yield out
    finally:
        out["wall"] = time.monotonic() - began


def _print_attribution(what: str, wall: float, spent: dict[str, tuple[float, int]]) -> None:
    print(f"\n{what}: {wall:.1f} s wall; thread-seconds inside (summed over threads):")
    for bucket, (seconds, calls) in sorted(spent.items(), key=lambda kv: -kv[1][0]):
        print(f"  {bucket:52s} {seconds:8.1f} s  {calls:6d} calls  {seconds / wall:5.2f}x wall")


def _calls_table(calls: dict[str, Any]) -> str:
    sso = {k: v for k, v in calls["calls"].items() if k.startswith("sso-admin:")}
    return ", ".join(f"{k.removeprefix('sso-admin:')} {v}" for k, v in sorted(sso.items()))


def run(args: argparse.Namespace) -> None:
    """Apply the provision stage, roll it back; the wall times, the ratio, the attribution."""
    workdir = bench_workdir("iamc-bench-rollback-")
    # Before Prefect is imported: flows report to the bench's local server, as `iamc` does.
    run_flows_as_the_cli_does("flows.apply")
    from prefect import flow

    from flows.apply import apply_flow, rollback_flow
    from sandbox.server import Sandbox

    spec = workdir / "spec.toml"
    completion = args.completion_ms / 1000
    # The client's first status poll when the sandbox's requests complete (as in the
    # provision bench's scaled clock); the client-side limits are the spec's defaults.
    spec.write_text(
        'name = "bench-provision"\nstate = "sqlite:///state.db"\n\n'
        f"[aws]\nfirst_status_poll_s = {completion}\n"
    )
    state_url = f"sqlite:///{workdir / 'state.db'}"
    ratios = []
    with Sandbox(port=0) as sandbox:
        sandbox.reset(seed=11)
        os.environ.update(sandbox.env())
        control = sandbox.middleware
        assert control is not None
        accounts, _, _, principals = _bench_org(sandbox.url, args.accounts, args.assignments)
        plan_id = _bench_provision_plan(spec, state_url, accounts, principals, args.permission_sets)
        n_provisions = len(accounts) * args.permission_sets
        print(
            f"{len(accounts)} accounts, {args.permission_sets} permission sets, "
            f"{n_provisions} provisionings, {n_provisions * args.assignments} assignments; "
            f"sandbox: sso-admin {args.sso_rate:g} req/s, async requests complete "
            f"{args.completion_ms} ms after they are made"
        )
        control.strictness.update(
            {"throttle": {"sso-admin": args.sso_rate}, "async_completion_ms": args.completion_ms}
        )
        # Prefect's API up before the clock starts, as in the provision bench.
        flow(name="bench-warm-up", persist_result=False)(lambda: None)()
        attribution = _instrument()
        try:
            for n in range(args.repeat):
                ratios.append(_apply_and_undo(n, spec, plan_id, control, attribution, apply_flow,
                                              rollback_flow))  # fmt: skip
        finally:
            attribution.restore()
    for n, (applied, undone) in enumerate(ratios):
        print(f"round {n + 1}: apply {applied:.1f} s, rollback {undone:.1f} s, "
              f"ratio {undone / applied:.2f}")  # fmt: skip
    applied = min(a for a, _ in ratios)
    undone = min(u for _, u in ratios)
    goal(
        "provision rollback wall / its apply's wall",
        undone / applied,
        GOAL,
        "x",
        detail=f"rollback {undone:.1f} s / apply {applied:.1f} s (best of {len(ratios)})",
    )


def _apply_and_undo(
    n: int,
    spec: Any,
    plan_id: int,
    control: Any,
    attribution: _Attribution,
    apply_flow: Any,
    rollback_flow: Any,
) -> tuple[float, float]:
    print(f"\n=== round {n + 1}")
    control.recorder.reset()
    attribution.reset()
    with _timed() as applied:
        summary = apply_flow(str(spec), plan_id, "provision")
    if not isinstance(summary, dict):
        raise SystemExit(f"apply did not succeed: {summary}")
    print(
        f"apply run {summary['run_id']}: {summary['succeeded']} succeeded, "
        f"{summary['failed']} failed, {summary['pending']} pending of {summary['actions']}"
    )
    _print_attribution("apply", applied["wall"], attribution.snapshot())
    print(f"  sso-admin calls: {_calls_table(control.recorder.snapshot())}")
    control.recorder.reset()
    attribution.reset()
    with _timed() as undone:
        result = rollback_flow(str(spec), summary["run_id"])
    if not isinstance(result, dict):
        raise SystemExit(f"rollback did not succeed: {result}")
    print(f"rollback run {result['run_id']}: {len(result['undo'])} undone")
    _print_attribution("rollback", undone["wall"], attribution.snapshot())
    print(f"  sso-admin calls: {_calls_table(control.recorder.snapshot())}")
    print(
        f"apply {applied['wall']:.1f} s, rollback {undone['wall']:.1f} s: "
        f"{undone['wall'] / applied['wall']:.2f}x (goal <= {GOAL:g}x)"
    )
    return applied["wall"], undone["wall"]
