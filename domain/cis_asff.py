"""CIS 1.21 verdicts as AWS Security Hub findings (ASFF), one per account.

The AWS Security Finding Format (Security Hub user guide, "AWS Security Finding Format
(ASFF)"): a finding imported with ``BatchImportFindings`` names the importing account's default
product (``arn:aws:securityhub:REGION:ACCOUNT:product/ACCOUNT/default``); ``Compliance.Status``
is PASSED, FAILED or NOT_AVAILABLE; ``Description`` holds at most 1,024 characters and each
``ProductFields`` value at most 2,048. The same account's finding keeps its ``Id``, so a
re-import updates it instead of adding another.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain import cis

SCHEMA_VERSION = "2018-10-08"
GENERATOR = "iam-centralize/cis-aws-foundations-3.0.0/1.21"
TITLE = "CIS AWS Foundations 3.0.0 1.21: IAM users are managed centrally"
TYPES = ["Software and Configuration Checks/Industry and Regulatory Standards/CIS AWS Foundations"]
_STATUS = {
    cis.PASS: ("PASSED", "INFORMATIONAL"),
    cis.PASS_EXCEPTIONS: ("PASSED", "INFORMATIONAL"),
    cis.FAIL: ("FAILED", "MEDIUM"),
    cis.UNKNOWN: ("NOT_AVAILABLE", "INFORMATIONAL"),
}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def asff_findings(
    rows: list[dict[str, Any]], *, product_account: str, region: str, now: datetime
) -> list[dict[str, Any]]:
    """One ASFF finding per account row of the inventory report (``inventory_rows``)."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    product = f"arn:aws:securityhub:{region}:{product_account}:product/{product_account}/default"
    findings = []
    for row in rows:
        account_id = row["account_id"]
        status, severity = _STATUS[row["cis_1_21"]]
        why = row["cis_1_21_why"] or row["cis_1_21"]
        findings.append(
            {
                "SchemaVersion": SCHEMA_VERSION,
                "Id": f"{GENERATOR}/{account_id}",
                "ProductArn": product,
                "GeneratorId": GENERATOR,
                "AwsAccountId": account_id,
                "Types": TYPES,
                "CreatedAt": stamp,
                "UpdatedAt": stamp,
                "Severity": {"Label": severity},
                "Title": TITLE,
                "Description": _cut(f"{row['cis_1_21']}: {why}", 1024),
                "Compliance": {"Status": status},
                "Resources": [
                    {
                        "Type": "AwsAccount",
                        "Id": f"AWS::::Account:{account_id}",
                        "Partition": "aws",
                        "Region": region,
                    }
                ],
                "ProductFields": {
                    "iamc/verdict": row["cis_1_21"],
                    "iamc/evidence": _cut(row["cis_1_21_evidence"] or "-", 2048),
                    "iamc/exceptions": _cut(row["cis_1_21_exceptions"] or "-", 2048),
                    "iamc/long_lived_keys": str(row["long_lived_keys"]),
                },
            }
        )
    return findings
