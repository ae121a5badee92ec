"""iam-centralize: move IAM users of an AWS Organization to IAM Identity Center (CIS 1.21)."""

__version__ = "0.1.0"
