"""Map AWS errors onto Temporal's retry semantics, naming the resource and the call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from botocore.exceptions import (
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
)
from temporalio.exceptions import ApplicationError

# Retrying cannot fix these: the caller must change something first.
_NON_RETRYABLE_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ValidationException",
    "ValidationError",
    "InvalidParameterValue",
    "InvalidParameterValueException",
    "InvalidParameterException",
    "ParameterNotFound",
    "ParameterVersionNotFound",
    "ResourceNotFoundException",
    "NoSuchKey",
    "NoSuchBucket",
    "NoSuchVersion",
    "ParameterMaxVersionLimitExceeded",
    "HierarchyTypeMismatchException",
    "UnsupportedParameterType",
    "InvalidKeyId",
    # Route 53: the zone is gone, or the change batch / request cannot ever be accepted.
    "NoSuchHostedZone",
    "InvalidChangeBatch",
    "InvalidInput",
    # ECS answers ClientException for requests that are wrong as sent (an unknown task
    # definition, a bad parameter); its transient failures are ServerException.
    "ClientException",
}


class AwsOperationError(Exception):
    """An AWS call that failed in a way retrying cannot fix."""


def error_code(exc: ClientError) -> str:
    """The AWS error code of ``exc`` (``ParameterNotFound``, ``ThrottlingException``...)."""
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def is_permanent(code: str) -> bool:
    """True for errors that retrying cannot fix (access, validation, missing resources)."""
    return (
        code in _NON_RETRYABLE_CODES
        or code.endswith("NotFound")
        or code.endswith("NotFoundException")
        or code.startswith("AccessDenied")
    )


def raise_aws_error(exc: ClientError, call: str, resource: str) -> NoReturn:
    """Raise ``exc`` as Temporal should see it.

    A permanent failure becomes a non-retryable ``ApplicationError`` naming the call and the
    resource; throttling, 5xx and connection errors are re-raised unchanged for the retry
    policy. (Never ``raise exc from exc``: an error that is its own cause sends Temporal's
    failure converter into endless recursion.)
    """
    code = error_code(exc)
    if not is_permanent(code):
        raise exc
    message = exc.response.get("Error", {}).get("Message", "")
    text = f"{call} on {resource} failed: {code}" + (f": {message}" if message else "")
    raise ApplicationError(text, type=AwsOperationError.__name__, non_retryable=True) from exc


@contextmanager
def aws_call(call: str, resource: str) -> Iterator[None]:
    """Run AWS calls; turn permanent failures into non-retryable errors naming both."""
    try:
        yield
    except ClientError as exc:
        raise_aws_error(exc, call, resource)


# Errors raised by botocore itself (not answered by AWS) that retrying cannot fix: the request
# is malformed, or the worker has no usable credentials, region or profile. An operator must
# change the plan or the worker's configuration; connection errors and timeouts stay
# transient.
_PERMANENT_BOTOCORE = (
    ParamValidationError,
    NoCredentialsError,
    PartialCredentialsError,
    NoRegionError,
    ProfileNotFound,
)


class SnapshotUnreadable(Exception):
    """A snapshot lacks what this worker's code needs (recorded by another relman version)."""


def permanent_error(exc: BaseException, resource: str) -> ApplicationError | None:
    """``exc`` as a final, non-retryable ``ApplicationError`` naming ``resource``, when
    retrying cannot fix it; None for errors the retry policy should see (throttling, 5xx,
    connection errors, timeouts). ``ApplicationError`` and ``ClientError`` are classified
    where they are raised (``raise_aws_error``)."""
    if isinstance(exc, _PERMANENT_BOTOCORE):
        return ApplicationError(
            f"{resource}: {type(exc).__name__}: {exc}",
            type=AwsOperationError.__name__,
            non_retryable=True,
        )
    if isinstance(exc, (KeyError, TypeError)):
        # Code reading a snapshot (or a record of what it wrote) of another shape.
        return ApplicationError(
            f"{resource}: this worker cannot read the state recorded for it "
            f"({type(exc).__name__}: {exc}); was it recorded by another relman version?",
            type=SnapshotUnreadable.__name__,
            non_retryable=True,
        )
    return None


@contextmanager
def classified(resource: str) -> Iterator[None]:
    """Run a target's work; errors retrying cannot fix become final errors naming
    ``resource``, the others propagate unchanged for the retry policy."""
    try:
        yield
    except ApplicationError:
        raise
    except Exception as exc:
        final = permanent_error(exc, resource)
        if final is None:
            raise
        raise final from exc
