"""AWS Security Hub: import the CIS 1.21 findings (``domain.cis_asff``), management account."""

from __future__ import annotations

from typing import Any

import boto3

from tasks.aws import translate_errors

PERMISSIONS = ("securityhub:BatchImportFindings",)
# BatchImportFindings takes at most 100 findings per request (Security Hub API reference).
BATCH = 100


def import_findings(session: boto3.Session, findings: list[dict[str, Any]]) -> dict[str, Any]:
    """Send the findings in batches of 100; what Security Hub took and what it refused, why."""
    client = session.client("securityhub")
    imported, failed = 0, []
    with translate_errors(operation="securityhub:BatchImportFindings"):
        for start in range(0, len(findings), BATCH):
            answer = client.batch_import_findings(Findings=findings[start : start + BATCH])
            imported += answer.get("SuccessCount", 0)
            failed.extend(
                f"{f.get('Id')}: {f.get('ErrorCode')}: {f.get('ErrorMessage')}"
                for f in answer.get("FailedFindings", [])
            )
    return {"imported": imported, "failed": failed}
