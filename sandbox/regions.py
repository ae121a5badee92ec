"""EC2 DescribeRegions as AWS answers an account that opted in to nothing."""

# moto 5.2.5 answers ``DescribeRegions`` with ``AllRegions=false`` with every region it knows:
# the opt-in regions it marks ``not-opted-in``, and the China and GovCloud partitions' regions,
# which no ``aws``-partition account can reach. AWS answers only the regions enabled for the
# account (EC2 API reference, DescribeRegions: "AllRegions ... whether to display all Regions,
# including Regions that are disabled for your account"). A caller that reads every enabled
# region would otherwise try endpoints that refuse its credentials in production.

from __future__ import annotations

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


def describe_regions(call: Call) -> Reply | None:
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
        for name in DEFAULT_ENABLED_REGIONS
    )
    body = (
        f'<DescribeRegionsResponse xmlns="{_NAMESPACE}"><requestId>{uuid.uuid4()}</requestId>'
        f"<regionInfo>{items}</regionInfo></DescribeRegionsResponse>"
    ).encode()
    return Reply(200, body, "text/xml;charset=UTF-8", {})
