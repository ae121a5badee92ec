"""Scan local code for hard-coded AWS keys: working trees, archives in them, whole git histories.

The entry point over the three sources, one module each: :mod:`scanner.code_tree` (the working
tree, with ripgrep as prefilter), :mod:`scanner.code_history` (every blob of the git history) and
:mod:`scanner.code_content` (one piece of content, archives opened under bomb limits).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from domain.key_findings import ScanResult, SkippedItem
from scanner.code_content import ArchiveLimits, ScanOptions
from scanner.code_history import is_git_repository, scan_git_history
from scanner.code_tree import ripgrep_executable, scan_single_file, scan_working_tree
from scanner.key_detection import KeyDetector

__all__ = [
    "ArchiveLimits",
    "ScanOptions",
    "is_git_repository",
    "ripgrep_executable",
    "scan_git_history",
    "scan_paths",
    "scan_working_tree",
]

log = logging.getLogger(__name__)


def scan_paths(
    paths: Sequence[str | os.PathLike[str]],
    *,
    salt: bytes | None = None,
    options: ScanOptions | None = None,
    detector: KeyDetector | None = None,
) -> ScanResult:
    """Scan each path's working tree and, for git repositories, its whole history.

    Args:
        paths: Directories or git repositories (a single file works too).
        salt: Salt for the secrets' HMAC (a random one per scan when omitted).
        options: Limits, history on/off, workers, engine.
        detector: A detector to reuse (its salt wins over ``salt``).

    Returns:
        Hits, ignored look-alikes and skipped inputs of all paths; a bad path is a skipped
        item, never an exception.
    """
    options = options or ScanOptions()
    detector = detector or KeyDetector(salt, engine=options.engine)
    total = ScanResult()
    for raw in paths:
        root = Path(raw)
        label = str(raw)
        if not root.exists():
            total.skipped.append(SkippedItem(label, "path does not exist", "", label))
            continue
        if root.is_file():
            total.extend(scan_single_file(root, label, detector, options))
            continue
        history = options.history and is_git_repository(root)
        tree, hit_blobs = scan_working_tree(
            root, detector, options, root_label=label, blob_ids=history
        )
        total.extend(tree)
        if history:
            total.extend(
                scan_git_history(
                    root, detector, options, working_tree_blobs=hit_blobs, root_label=label
                )
            )
        log.info(
            "scanned %s: %d hits, %d ignored, %d skipped",
            label,
            len(tree.hits),
            len(tree.ignored),
            len(tree.skipped),
        )
    return total
