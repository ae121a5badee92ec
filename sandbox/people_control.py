"""``/_iamc/users/*``: a person's credentials for tests that act as that person, such as a
central account's user switching into a member role with MFA.

The key is made in moto's backend (no IAM call, so no CloudTrail event), as the usage
playback makes a console sign-in's key (``sandbox/usage_control.py``): through the backend,
so the strict layer finds whose key it is.
"""

from __future__ import annotations

from typing import Any

from sandbox.wire import Reply, json_reply


def control_people(method: str, path: str, payload: dict[str, Any]) -> Reply:
    """Serve one ``/_iamc/users/*`` request.

    ``POST /_iamc/users/key`` ``{account_id, user_name}``: the user's active access key
    (``access_key_id``, ``secret_access_key``), made if it has none.
    ``POST /_iamc/users/mfa`` ``{account_id, user_name}``: ``mfa_serials``, the serial numbers
    (ARNs) of the user's MFA devices.
    """
    if method != "POST" or path not in ("/_iamc/users/key", "/_iamc/users/mfa"):
        return json_reply({"error": f"no such control endpoint: {method} {path}"}, 404)
    try:
        account_id, user_name = str(payload["account_id"]), str(payload["user_name"])
    except KeyError as err:
        return json_reply({"error": f"missing {err}"}, 400)
    user = _user(account_id, user_name)
    if user is None:
        return json_reply({"error": f"no IAM user {user_name} in {account_id}"}, 404)
    if path.endswith("/mfa"):
        return json_reply({"mfa_serials": sorted(user.mfa_devices)})
    key = next((k for k in user.access_keys if k.status == "Active"), None)
    if key is None:
        from moto.iam.exceptions import LimitExceededException

        try:
            key = _backend(account_id).create_access_key(user_name, prefix="AKIA")
        except LimitExceededException as err:  # two inactive keys already: AWS's limit
            return json_reply({"error": str(err)}, 409)
    return json_reply(
        {"access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key}
    )


def _backend(account_id: str) -> Any | None:
    from moto.iam.models import iam_backends

    return iam_backends[account_id]["aws"] if account_id in iam_backends else None


def _user(account_id: str, user_name: str) -> Any | None:
    backend = _backend(account_id)
    return backend.users.get(user_name) if backend is not None else None
