"""A progress artifact that counts what is done, what failed and what is still pending.

A run that ends with failures never reads "42 of 42 done, 100%": the bar is the share of
units done, and its description says how many failed and how many are still pending, and
that the run stopped when it did.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

log = logging.getLogger(__name__)

FAILED = "failed"  # the journal's status of an action that failed (state.journal.FAILED)


@dataclass(frozen=True)
class ProgressEvents:
    """Which progress events (``domain.progress.emit``) drive a progress artifact.

    ``total_event`` carries the number of units in ``total_field``; each ``step_event`` is one
    unit that ended: failed when its ``status`` is ``failed``, done otherwise. A unit named in
    ``unit_field`` counts once, by its latest status.
    """

    total_event: str
    total_field: str
    step_event: str
    unit: str
    unit_field: str = "action_id"


class ProgressArtifact:
    """A progress artifact, updated at most once a second (and at the end)."""

    MIN_INTERVAL = 1.0

    def __init__(self, key: str, what: str, events: ProgressEvents):
        self.key, self.what, self.events = key, what, events
        self.total = 0
        self.ended: dict[Any, bool] = {}  # unit -> failed?
        self.stopped: str | None = None  # why the run ended early, once it has
        self.artifact_id: UUID | None = None
        self._sent = 0.0
        self._lock = threading.Lock()

    @property
    def failed(self) -> int:
        return sum(self.ended.values())

    @property
    def done(self) -> int:
        return len(self.ended) - self.failed

    def description(self) -> str:
        """``apply of acme: 30 done, 2 failed, 10 pending of 42 actions``."""
        if not self.total and not self.ended:
            return f"{self.what}: {self.stopped or 'starting'}"
        total = max(self.total, len(self.ended))
        pending = total - len(self.ended)
        if self.failed or self.stopped:
            counts = f"{self.done} done, {self.failed} failed, {pending} pending of {total}"
            text = f"{self.what}: {counts} {self.events.unit}"
        else:
            text = f"{self.what}: {self.done} of {total} {self.events.unit} done"
        return f"{text}; {self.stopped}" if self.stopped else text

    def percent(self) -> float:
        """The share of units done: failed and pending ones are not progress."""
        total = max(self.total, len(self.ended))
        return round(100.0 * self.done / total, 1) if total else 0.0

    def start(self) -> None:
        from prefect.artifacts import create_progress_artifact

        self.artifact_id = create_progress_artifact(
            progress=0.0, key=self.key, description=self.description()
        )

    def on_event(self, event: str, data: dict[str, Any]) -> None:
        with self._lock:
            if event == self.events.total_event:
                self.total = int(data.get(self.events.total_field) or 0)
            elif event == self.events.step_event:
                unit = data.get(self.events.unit_field)
                if unit is None:
                    unit = len(self.ended)  # a unit without a name counts once per event
                self.ended[unit] = data.get("status") == FAILED
            else:
                return
            if time.monotonic() - self._sent >= self.MIN_INTERVAL:
                self._send()

    def _send(self) -> None:
        from prefect.artifacts import update_progress_artifact

        if self.artifact_id is None:
            return
        self._sent = time.monotonic()
        try:
            update_progress_artifact(
                self.artifact_id, progress=self.percent(), description=self.description()
            )
        except Exception:  # progress is a courtesy: it never stops the work
            log.debug("progress artifact update failed", exc_info=True)

    def finish(self, stopped: str | None = None) -> None:
        """The last update; ``stopped`` says why the run ended early (it failed, it stopped)."""
        with self._lock:
            self.stopped = stopped
            self._send()
