"""``/_iamc/usage/play``: play a person's own use of AWS, with their IAM user's access key or,
for a person without one, as the console's calls on their behalf.

Each call is a real signed request sent through the sandbox's own endpoint, backdated inside
the window (``X-Iamc-Event-Time``, honoured from loopback only), so the strict layer records
it in the Trail and moves the key's last use as for any other request, and IAM's
service-last-accessed jobs (``sandbox/service_last_accessed.py``) and CloudTrail's
LookupEvents then report exactly what was played: a test or the demo can use a service and
see it kept.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sandbox.wire import Reply, json_reply
from sandbox.workload_requests import PLAYBACK_LOCK, SelfRequests

# What a person's laptop sends (the AWS CLI v2).
PERSON_AGENT = (
    "aws-cli/2.17.20 md/awscrt#0.20.11 ua/2.0 os/macos#23.5.0 md/arch#arm64 "
    "lang/python#3.11.9 md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe "
    "md/prompt#off"
)
PERSON_ADDRESS = "203.0.113.24"
# What CloudTrail shows for calls the console makes on a signed-in person's behalf.
CONSOLE_AGENT = "AWS Internal"
# The calls played when none are named: one of S3, EC2 and STS each.
DEFAULT_CALLS = (
    ("s3", "ListBuckets", {}),
    ("ec2", "DescribeInstances", {}),
    ("sts", "GetCallerIdentity", {}),
)


def s3_operation(environ: dict[str, Any]) -> str | None:
    """The S3 management operation of a REST request, for the few the sandbox names.

    Bucket-level calls only (``GET /`` lists buckets; ``PUT``/``DELETE /bucket`` with no
    subresource create and delete one); object calls are data events, which CloudTrail's
    LookupEvents does not return, and are left unrecorded.
    """
    method = environ.get("REQUEST_METHOD", "")
    path = environ.get("PATH_INFO", "/")
    query = environ.get("QUERY_STRING", "")
    host = environ.get("HTTP_HOST", "")
    # Virtual-hosted style puts the bucket in the host name; the sandbox is reached by address.
    if host.count(".") >= 3 and not host.split(":")[0].replace(".", "").isdigit():
        return None
    segments = [s for s in path.split("/") if s]
    if not segments:
        return "ListBuckets" if method == "GET" else None
    if len(segments) == 1 and not query:
        return {"PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method)
    return None


def control_usage(
    mw: Any, method: str, path: str, payload: dict[str, Any], environ: dict[str, Any]
) -> Reply:
    """Serve one ``/_iamc/usage/*`` request for the middleware ``mw``."""
    if path != "/_iamc/usage/play" or method != "POST":
        return json_reply({"error": f"no such control endpoint: {method} {path}"}, 404)
    url = f"http://{environ.get('HTTP_HOST', '127.0.0.1')}"
    try:
        with PLAYBACK_LOCK:
            return play_user(mw, url, payload)
    except (KeyError, ValueError, TypeError) as err:
        return json_reply({"error": f"bad request: {err!r}"}, 400)


def play_user(mw: Any, url: str, payload: dict[str, Any]) -> Reply:
    """Play ``payload["calls"]`` with the user's active access key, ``days_ago`` back."""
    from moto.iam.models import iam_backends

    account_id, user_name = str(payload["account_id"]), str(payload["user"])
    backend = iam_backends[account_id]["aws"] if account_id in iam_backends else None
    user = backend.users.get(user_name) if backend is not None else None
    if user is None:
        return json_reply({"error": f"no IAM user {user_name} in {account_id}"}, 404)
    key = next((k for k in user.access_keys if k.status == "Active"), None)
    console = key is None
    if console:
        # A person who signs in to the console: AWS signs the console's calls with temporary
        # credentials of the IAM user, and CloudTrail records them as the user's, with the
        # agent "AWS Internal" (CloudTrail user guide, userIdentity element). The sandbox
        # mints a key in moto's backend (no IAM call, so no event) for the calls only.
        # Through the backend, so the strict layer finds whose key it is (its key index).
        key = backend.create_access_key(user_name, prefix="ASIA")
    try:
        return _play(mw, url, payload, account_id, user_name, key, console)
    finally:
        if console:
            backend.delete_access_key(key.access_key_id, user_name)


def _play(
    mw: Any,
    url: str,
    payload: dict[str, Any],
    account_id: str,
    user_name: str,
    key: Any,
    console: bool,
) -> Reply:
    credentials = {
        "aws_access_key_id": key.access_key_id,
        "aws_secret_access_key": key.secret_access_key,
    }
    now = mw.clock.now()
    requests = SelfRequests(url)
    played = []
    for raw in payload.get("calls") or [list(c) for c in DEFAULT_CALLS]:
        service, operation, params, days_ago = _call_of(raw, payload)
        when = now - timedelta(days=days_ago)
        _, error = requests.call(
            credentials,
            service,
            operation,
            params,
            agent=CONSOLE_AGENT if console else PERSON_AGENT,
            address=PERSON_ADDRESS,
            when=when,
        )
        played.append(
            {"call": f"{service}:{operation}", "event_time": when.isoformat(), "error": error}
        )
    return json_reply(
        {"account_id": account_id, "user": user_name, "console": console, "played": played}
    )


def _call_of(raw: Any, payload: dict[str, Any]) -> tuple[str, str, dict[str, Any], float]:
    default_days = float(payload.get("days_ago", 1))
    if isinstance(raw, dict):
        return (
            str(raw["service"]),
            str(raw["operation"]),
            dict(raw.get("params") or {}),
            float(raw.get("days_ago", default_days)),
        )
    service, operation, *rest = raw
    params = dict(rest[0]) if rest else {}
    return str(service), str(operation), params, default_days
