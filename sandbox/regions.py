"""EC2 DescribeRegions as AWS answers an account that opted in to nothing."""

# moto 5.2.5 answers ``DescribeRegions`` with ``AllRegions=false`` with every region it knows:
# the opt-in regions it marks ``not-opted-in``, and the China and GovCloud partitions' regions,
# which no ``aws``-partition account can reach. AWS answers only the regions enabled for the
# account (EC2 API reference, DescribeRegions: "AllRegions ... whether to display all Regions,
# including Regions that are disabled for your account"). A caller that reads every enabled
# region would otherwise try endpoints that refuse its credentials in production.

from __future__ import annotations

import os
import uuid
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from sandbox.wire import Call, Reply

# The regions enabled by default in an account of the aws partition: those launched before
# 20 March 2019 (AWS General Reference / Account Management guide, "Enable or disable
# AWS Regions in your account"); the others need an opt-in.
DEFAULT_ENABLED_REGIONS = (
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "eu-central-1",
    "eu-north-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
)

_NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"
# The regions the sandbox reports enabled, when fewer than all of the defaults: a comma-separated
# list. The test suite sets it (every delete run reads each enabled region's resource policies,
# six services each; tests that place a policy in another region name theirs among these).
ENABLED_REGIONS_ENV = "IAMC_SANDBOX_ENABLED_REGIONS"


def enabled_regions() -> list[str]:
    """The regions to report enabled: ``IAMC_SANDBOX_ENABLED_REGIONS`` (of the defaults), or
    every default one.

    Raises:
        ValueError: The variable names a region that is not enabled by default.
    """
    named = [r.strip() for r in os.environ.get(ENABLED_REGIONS_ENV, "").split(",") if r.strip()]
    unknown = sorted(set(named) - set(DEFAULT_ENABLED_REGIONS))
    if unknown:
        raise ValueError(
            f"{ENABLED_REGIONS_ENV}: {', '.join(unknown)} not among the regions enabled by "
            f"default ({', '.join(DEFAULT_ENABLED_REGIONS)})"
        )
    return named or list(DEFAULT_ENABLED_REGIONS)


def describe_regions(call: Call, enabled: list[str]) -> Reply | None:
    """The account's enabled regions; None (moto answers) for AllRegions or a named region."""
    params = {k: v[0] for k, v in parse_qs(call.body.decode(errors="replace")).items()}
    if params.get("AllRegions", "false").lower() == "true":
        return None
    if any(k.startswith(("RegionName.", "Filter.")) for k in params):
        return None
    if call.region.startswith(("cn-", "us-gov-", "us-iso")):
        return None  # another partition: the sandbox models the aws partition only
    items = "".join(
        f"<item><regionName>{escape(name)}</regionName>"
        f"<regionEndpoint>ec2.{escape(name)}.amazonaws.com</regionEndpoint>"
        "<optInStatus>opt-in-not-required</optInStatus></item>"
        for name in enabled
    )
    body = (
        f'<DescribeRegionsResponse xmlns="{_NAMESPACE}"><requestId>{uuid.uuid4()}</requestId>'
        f"<regionInfo>{items}</regionInfo></DescribeRegionsResponse>"
    ).encode()
    return Reply(200, body, "text/xml;charset=UTF-8", {})
