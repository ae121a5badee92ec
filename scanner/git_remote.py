"""The GitHub repository a scanned code root belongs to, read from its ``origin`` remote.

A GitHub OIDC role's trust is pinned to one repository (``repo:OWNER/NAME:…``); the key scan
found the key in that repository's working tree or history, so the repository comes from the
clone itself, never from its path on this machine.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

# https://github.com/OWNER/NAME(.git), ssh://git@github.com/OWNER/NAME, git@github.com:OWNER/NAME
_GITHUB = re.compile(
    r"^(?:https://(?:[^@/]+@)?github\.com/|ssh://git@github\.com/|git@github\.com:)"
    r"(?P<owner>[\w.-]+)/(?P<name>[\w.-]+?)(?:\.git)?/?$"
)


def github_repository(url: str) -> str | None:
    """``OWNER/NAME`` of a GitHub remote URL; None for any other host."""
    found = _GITHUB.match(url.strip())
    return f"{found['owner']}/{found['name']}" if found else None


def origin_repository(root: Path) -> str | None:
    """``OWNER/NAME`` of the clone's ``origin`` remote when it is on GitHub, else None."""
    try:
        answer = subprocess.run(  # noqa: S603 - git with fixed arguments
            ["git", "-C", str(root), "config", "--get", "remote.origin.url"],  # noqa: S607
            capture_output=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if answer.returncode != 0:
        return None
    return github_repository(answer.stdout.decode(errors="replace"))
