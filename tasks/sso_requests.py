"""sso-admin's asynchronous requests: send one, poll its status until SUCCEEDED, map the errors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_result,
    stop_after_delay,
    wait_exponential,
)

from domain.errors import ActionError
from tasks.aws import error_message
from tasks.handler import PollPolicy

# Declared here for the permission test; the callers (tasks.assignments, tasks.permission_sets)
# declare the requests they make too, so the generated policies do not change.
READ_PERMISSIONS = (
    "sso:DescribeAccountAssignmentCreationStatus",
    "sso:DescribeAccountAssignmentDeletionStatus",
    "sso:DescribePermissionSetProvisioningStatus",
)
PERMISSIONS = (
    "sso:CreateAccountAssignment",
    "sso:DeleteAccountAssignment",
    "sso:ProvisionPermissionSet",
)
# Async status values (sso-admin API reference, PermissionSetProvisioningStatus.Status and
# AccountAssignmentOperationStatus.Status).
IN_PROGRESS = "IN_PROGRESS"
FAILED = "FAILED"


@dataclass(frozen=True)
class AsyncRequest:
    """An asynchronous sso-admin operation and the Describe*Status call that follows it."""

    operation: str  # the API's name, as PollPolicy.first_poll knows it
    send_method: str
    status_method: str
    status_key: str  # the status object in both answers
    request_id_param: str  # the status call's request id parameter

    def send(self, sso: Any, instance: str, **params: Any) -> str:
        """Send the request; its request id."""
        answer = getattr(sso, self.send_method)(InstanceArn=instance, **params)
        return answer[self.status_key]["RequestId"]

    def status(self, sso: Any, instance: str, request_id: str) -> dict[str, Any]:
        """The request's status object, as the Describe*Status call gives it."""
        answer = getattr(sso, self.status_method)(
            InstanceArn=instance, **{self.request_id_param: request_id}
        )
        return answer[self.status_key]


CREATE_ASSIGNMENT = AsyncRequest(
    "CreateAccountAssignment",
    "create_account_assignment",
    "describe_account_assignment_creation_status",
    "AccountAssignmentCreationStatus",
    "AccountAssignmentCreationRequestId",
)
DELETE_ASSIGNMENT = AsyncRequest(
    "DeleteAccountAssignment",
    "delete_account_assignment",
    "describe_account_assignment_deletion_status",
    "AccountAssignmentDeletionStatus",
    "AccountAssignmentDeletionRequestId",
)
PROVISION_PERMISSION_SET = AsyncRequest(
    "ProvisionPermissionSet",
    "provision_permission_set",
    "describe_permission_set_provisioning_status",
    "PermissionSetProvisioningStatus",
    "ProvisionPermissionSetRequestId",
)


@contextmanager
def action_errors(action_id: str) -> Iterator[None]:
    """An AWS error inside becomes the action's :class:`ActionError`, with AWS's code and text."""
    try:
        yield
    except ClientError as err:
        raise ActionError(action_id, error_message(err)) from err


def request_and_wait(
    sso: Any,
    instance: str,
    request: AsyncRequest,
    poll: PollPolicy,
    action_id: str,
    what: str,
    *,
    sent: Callable[[str], None] | None = None,
    resume: str | None = None,
    **params: Any,
) -> str:
    """Send ``request`` and wait until it SUCCEEDED.

    Args:
        sso: An sso-admin client.
        instance: The Identity Center instance ARN.
        request: Which operation.
        poll: How to poll its status.
        action_id: The plan action it is done for (named by the errors).
        what: The request in words, for the errors.
        sent: Told the request id as soon as AWS accepted it (to journal it).
        resume: The id of an earlier attempt's request still IN_PROGRESS: waited on, not sent
            again (a second request would conflict).
        **params: The request's parameters besides ``InstanceArn``.

    Returns:
        The request id.

    Raises:
        ActionError: AWS refused the request or a status call, the request FAILED, or it is
            still IN_PROGRESS after ``poll.timeout`` seconds.
    """
    with action_errors(action_id):
        request_id = resume
        if request_id is None:
            request_id = request.send(sso, instance, **params)
            if sent is not None:
                sent(request_id)
        wait_for_status(
            lambda: request.status(sso, instance, request_id),
            poll,
            action_id,
            what,
            request.operation,
        )
    return request_id


def _first_poll_wait(seconds: float) -> Callable[[RetryCallState], None]:
    def before(state: RetryCallState) -> None:
        if state.attempt_number == 1 and seconds > 0:
            time.sleep(seconds)

    return before


def wait_for_status(
    describe: Callable[[], dict[str, Any]],
    poll: PollPolicy,
    action_id: str,
    what: str,
    operation: str,
) -> dict[str, Any]:
    """Poll an asynchronous request until it SUCCEEDED: the first poll when ``operation``
    typically completes (:meth:`PollPolicy.first_poll`), then backing off, bounded.

    Args:
        operation: The request's sso-admin operation (``CreateAccountAssignment``...).

    Raises:
        ActionError: It FAILED (with the reason AWS gave), or is still IN_PROGRESS after
            ``poll.timeout`` seconds.
    """
    retrying = Retrying(
        retry=retry_if_result(lambda status: status.get("Status") == IN_PROGRESS),
        wait=wait_exponential(multiplier=poll.initial, max=poll.maximum),
        stop=stop_after_delay(poll.timeout),
        # Polling before the request can typically be done costs a call of the shared
        # sso-admin rate and answers IN_PROGRESS: the first poll waits that long.
        before=_first_poll_wait(poll.first_poll(operation)),
    )
    try:
        final = retrying(describe)
    except RetryError as err:
        raise ActionError(
            action_id, f"{what} still IN_PROGRESS after {poll.timeout:.0f} s; run resume later"
        ) from err
    if final.get("Status") == FAILED:
        raise ActionError(
            action_id, f"{what} FAILED: {final.get('FailureReason') or 'no reason given'}"
        )
    return final
