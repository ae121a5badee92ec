"""Renderings of the key-scan report: rows for a table, JSON, CSV and SARIF 2.1.0.

Key ids are masked (``AKIA…WXYZ``) in every format; no secret exists to render (only whether
one was found next to the key id).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from domain import csv_export
from domain.key_attribution import Classification, KeyFinding, ScanProblem

ORDER = {c: n for n, c in enumerate(Classification)}
COLUMNS = [
    "classification",
    "key",
    "owner_account_id",
    "owner_user",
    "owner_class",
    "key_status",
    "key_last_used",
    "source",
    "where",
    "root",
    "location",
    "line",
    "commit",
    "history_only",
    "found_in_account",
    "region",
    "secret_found",
    "note",
]
# SARIF rules: one per classification reported from code; levels as code scanning shows them.
_RULES: dict[str, tuple[str, str, str]] = {
    Classification.ORG_KEY_ACTIVE: (
        "error",
        "Active access key of an IAM user of the organization written down",
        "Move the workload to an IAM role (CI: OIDC federation) and delete the key; until then "
        "iamc holds the user's disable and delete.",
    ),
    Classification.ORG_KEY_INACTIVE: (
        "warning",
        "Inactive access key of an IAM user of the organization written down",
        "Remove it from the code; the key should be deleted with its user.",
    ),
    Classification.ORG_KEY_DELETED: (
        "note",
        "Access key of the organization that has been deleted since",
        "It no longer works; remove it from the code so scanners stay quiet.",
    ),
    Classification.OUT_OF_SCOPE_ACCOUNT: (
        "warning",
        "Access key of an organization account outside this migration's scope",
        "Tell the owners of that account; rotate the key.",
    ),
    Classification.UNATTRIBUTED: (
        "warning",
        "Well-formed access key (or secret access key) that is not the organization's",
        "Find whose it is and have it rotated; never test it against AWS.",
    ),
}


def sort_findings(findings: list[KeyFinding]) -> list[KeyFinding]:
    return sorted(
        findings,
        key=lambda f: (ORDER.get(f.classification, 99), f.owner_account_id or "", f.where()),
    )


def finding_row(finding: KeyFinding) -> dict[str, Any]:
    """One finding as flat data for people and pipes: the key id masked, no HMAC."""
    return {
        "classification": finding.classification,
        "key": finding.masked_key,
        "owner_account_id": finding.owner_account_id,
        "owner_user": finding.owner_user,
        "owner_class": finding.owner_class,
        "key_status": finding.key_status,
        "key_last_used": finding.key_last_used.isoformat() if finding.key_last_used else None,
        "source": finding.source,
        "where": finding.where(),
        "root": finding.root,
        "location": finding.location,
        "line": finding.line,
        "commit": finding.commit,
        "history_only": finding.history_only,
        "found_in_account": finding.found_in_account,
        "region": finding.region,
        "secret_found": finding.pair_found,
        "note": finding.note,
    }


def totals(findings: list[KeyFinding]) -> dict[str, Any]:
    counts = Counter(str(f.classification) for f in findings)
    return {
        "by_classification": {str(c): counts[str(c)] for c in Classification if counts[str(c)]},
        "org_keys": len({f.key_id for f in findings if f.is_org_key}),
        "users": len({(f.owner_account_id, f.owner_user) for f in findings if f.is_org_key}),
    }


def render_json(
    findings: list[KeyFinding],
    problems: list[ScanProblem],
    unscanned: list[str],
    meta: dict[str, Any],
) -> str:
    data = {
        **meta,
        "totals": totals(findings),
        "findings": [finding_row(f) for f in sort_findings(findings)],
        "problems": [
            {
                "kind": p.kind,
                "source": p.source,
                "location": p.location,
                "reason": p.reason,
                "root": p.root,
                "account_id": p.account_id,
            }
            for p in problems
        ],
        "never_scanned": unscanned,
    }
    return json.dumps(data, indent=2, default=str, ensure_ascii=False)


def render_csv(findings: list[KeyFinding]) -> str:
    return csv_export.render_csv(COLUMNS, (finding_row(f) for f in sort_findings(findings)))


def _uri_and_line(finding: KeyFinding) -> tuple[str, int, str]:
    """(relative URI, start line, archive member) of a code finding."""
    path, _, line = finding.location.rpartition(":")
    if not path or not line.isdigit():
        path, line = finding.location, str(finding.line)
    outer, sep, member = path.partition("!")
    if sep:  # a member of an archive: the archive is the artifact a tool can open
        return quote(outer), 1, f"{member}:{line}"
    return quote(path), max(1, int(line)), ""


def _notifications(problems: list[ScanProblem]) -> list[dict[str, Any]]:
    """What the scan could not read, as SARIF tool execution notifications (one each)."""
    return [
        {
            "level": "error" if problem.kind == "failed" else "warning",
            "message": {"text": str(problem)},
            "descriptor": {"id": f"scan-{problem.kind}"},
            "properties": {
                "kind": problem.kind,
                "source": problem.source,
                "root": problem.root,
                "location": problem.location,
                "reason": problem.reason,
                "accountId": problem.account_id,
            },
        }
        for problem in problems
    ]


def render_sarif(
    findings: list[KeyFinding],
    roots: dict[str, Path],
    tool_version: str = "0",
    problems: list[ScanProblem] | None = None,
) -> str:
    """SARIF 2.1.0 of the findings in code (working tree, archives, git history).

    Args:
        findings: The report's findings; AWS-side ones and ignored look-alikes are left out.
        roots: {root label: absolute path} of the scanned paths, for ``originalUriBaseIds``.
        tool_version: iamc's version.
        problems: What the scans could not read (skipped files and blobs, a repository git
            refused, gaps): the invocation's notifications; any ``failed`` one makes the
            invocation unsuccessful (the scan is incomplete).
    """
    rule_ids = list(_RULES)
    rules = [
        {
            "id": rule_id,
            "name": "".join(part.title() for part in rule_id.split("-")),
            "shortDescription": {"text": _RULES[rule_id][1]},
            "fullDescription": {"text": f"{_RULES[rule_id][1]}. {_RULES[rule_id][2]}"},
            "help": {"text": _RULES[rule_id][2]},
            "defaultConfiguration": {"level": _RULES[rule_id][0]},
            "properties": {"tags": ["security", "secrets", "aws"]},
        }
        for rule_id in rule_ids
    ]
    base_ids: dict[str, str] = {}
    results = []
    for finding in sort_findings(findings):
        if not finding.is_code or finding.classification not in _RULES:
            continue
        root = finding.root or "."
        base_id = base_ids.setdefault(root, f"ROOT{len(base_ids)}")
        uri, line, member = _uri_and_line(finding)
        owner = (
            f"{finding.owner_account_id}/{finding.owner_user}"
            if finding.owner_user
            else (finding.owner_account_id or "unknown owner")
        )
        text = f"{finding.classification}: access key {finding.masked_key} of {owner}"
        if finding.key_status:
            text += f" ({finding.key_status})"
        if finding.pair_found:
            text += ", with its secret access key next to it"
        if member:
            text += f", in archive member {member}"
        if finding.commit:
            text += f", in commit {finding.commit[:12]}"
            text += " (history only: removed since, still in the repository)"
        if finding.note:
            text += f". {finding.note}"
        fingerprint = hashlib.sha256(
            f"{finding.masked_key}|{root}|{finding.location}|{finding.commit or ''}".encode()
        ).hexdigest()
        results.append(
            {
                "ruleId": finding.classification,
                "ruleIndex": rule_ids.index(finding.classification),
                "level": _RULES[finding.classification][0],
                "message": {"text": text},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": uri, "uriBaseId": base_id},
                            "region": {"startLine": line},
                        }
                    }
                ],
                "partialFingerprints": {"iamcKeyLocation/v1": fingerprint},
                "properties": {
                    "source": finding.source,
                    "commit": finding.commit,
                    "historyOnly": finding.history_only,
                    "keyStatus": finding.key_status,
                },
            }
        )
    original = {
        base_id: {"uri": (roots[root].as_uri() + "/") if root in roots else f"{root}/"}
        for root, base_id in base_ids.items()
    }
    document = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "iamc",
                        "informationUri": "https://www.cisecurity.org/benchmark/amazon_web_services",
                        "version": tool_version,
                        "rules": rules,
                    }
                },
                "originalUriBaseIds": original,
                "invocations": [
                    {
                        "executionSuccessful": not any(p.kind == "failed" for p in problems or []),
                        "toolExecutionNotifications": _notifications(problems or []),
                    }
                ],
                "results": results,
            }
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False)
