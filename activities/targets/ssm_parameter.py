"""SSM parameters: the release writes a value; compensation restores the previous one.

A secret value (a SecureString, or a value the plan takes ``value_from`` Secrets Manager or
another parameter) is never put in a snapshot, result, status or log: the snapshot records
the parameter *version* (and a SecureString's KMS key), and compensation reads that version
back (``name:version``) and writes it again. A ``value_from`` secret is read when the
target is applied, with the target's role, and never leaves the activity.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError

from activities.errors import aws_call, error_code, raise_aws_error
from activities.targets.base import TargetHandler
from models.messages import ApplyResult, CompensateResult, Snapshot
from models.plan import SsmParameterTarget

SECRET_MASK = "****"


class SecretUnreadable(Exception):
    """A ``value_from`` secret holds no text value relman can write to a parameter."""


def _shown(value: str, secret: bool) -> str:
    return SECRET_MASK if secret else value


def _is_secret(target: SsmParameterTarget, type_: str) -> bool:
    """Whether a value of ``type_`` written for ``target`` must stay out of results."""
    return target.secret or type_ == "SecureString"


def _held(target: SsmParameterTarget, current: dict[str, Any] | None) -> dict[str, Any]:
    """The parameter as ``ApplyResult.written`` records it: version and type, and the value
    unless it is secret ({} for an absent parameter)."""
    if current is None:
        return {}
    held = {"version": current["Version"], "type": current["Type"]}
    if not _is_secret(target, current["Type"]):
        held["value"] = current["Value"]
    return held


class SsmParameterHandler(TargetHandler):
    """``ssm_parameter`` targets."""

    kind = "ssm_parameter"

    def _read(self, target: SsmParameterTarget, name: str | None = None) -> dict[str, Any] | None:
        """The parameter (or the version ``name`` selects); None if the parameter is absent."""
        try:
            return self.client("ssm", target).get_parameter(
                Name=name or target.parameter, WithDecryption=True
            )["Parameter"]
        except ClientError as exc:
            if name is None and error_code(exc) == "ParameterNotFound":
                return None
            raise_aws_error(exc, "ssm:GetParameter", name or target.parameter)

    def _put(
        self, target: SsmParameterTarget, value: str, type_: str, key_id: str | None = None
    ) -> None:
        with aws_call("ssm:PutParameter", target.resource):
            self.client("ssm", target).put_parameter(
                Name=target.parameter,
                Value=value,
                Type=type_,
                Overwrite=True,
                **({"KeyId": key_id} if key_id else {}),
            )

    def _key_id(self, target: SsmParameterTarget) -> str | None:
        """The KMS key a SecureString parameter is encrypted with."""
        with aws_call("ssm:DescribeParameters", target.resource):
            found = self.client("ssm", target).describe_parameters(
                ParameterFilters=[{"Key": "Name", "Values": [target.parameter]}]
            )["Parameters"]
        return found[0].get("KeyId") if found else None

    def _value(self, target: SsmParameterTarget) -> str:
        """The value the release writes: the plan's, or the one its ``value_from`` names,
        read now with the target's role (in the secret's own region for Secrets Manager)."""
        source = target.value_from
        if source is None:
            assert target.value is not None  # the plan has exactly one of the two
            return target.value
        if source.secretsmanager is not None:
            arn = source.secretsmanager
            client = self.aws.client(
                "secretsmanager", arn.split(":")[3], target.role_arn, target.external_id
            )
            with aws_call("secretsmanager:GetSecretValue", arn):
                found = client.get_secret_value(SecretId=arn)
            if "SecretString" not in found:
                raise ApplicationError(
                    f"target {target.name!r}: secret {arn} holds a binary value; an SSM "
                    "parameter needs a text one",
                    type=SecretUnreadable.__name__,
                    non_retryable=True,
                )
            return str(found["SecretString"])
        assert source.ssm is not None
        with aws_call("ssm:GetParameter", f"ssm parameter {source.ssm}"):
            return str(
                self.client("ssm", target).get_parameter(Name=source.ssm, WithDecryption=True)[
                    "Parameter"
                ]["Value"]
            )

    def snapshot(self, target: SsmParameterTarget) -> Snapshot:
        current = self._read(target)
        if current is None:
            return Snapshot(resource=target.resource, exists=False, display="(absent)")
        state: dict[str, Any] = {"version": current["Version"], "type": current["Type"]}
        secret = _is_secret(target, current["Type"])
        if not secret:
            state["value"] = current["Value"]
        if current["Type"] == "SecureString":
            state["key_id"] = self._key_id(target)
        return Snapshot(
            resource=target.resource,
            exists=True,
            state=state,
            display=_shown(current["Value"], secret),
        )

    def show(self, target: SsmParameterTarget, written: dict[str, Any]) -> str:
        if not written:
            return "(absent)"
        value = written.get("value", SECRET_MASK)
        return f"version {written['version']} ({value})"

    def apply(
        self,
        target: SsmParameterTarget,
        snapshot: Snapshot,
        percent: int,
        written: dict[str, Any] | None = None,
    ) -> ApplyResult:
        value = self._value(target)
        current = self._read(target)
        unchanged = (
            current is not None and current["Value"] == value and current["Type"] == target.type
        )
        if not unchanged:
            # SSM has no conditional write: the check runs right before the write, and a
            # change landing between the two is not detected.
            wanted = _shown(value, target.secret)
            self.check_step(target, snapshot, written, _held(target, current), wanted)
            self._put(target, value, target.type)
            current = self._read(target)
        assert current is not None  # just written; SSM reads after writes are consistent
        display = _shown(current["Value"], _is_secret(target, current["Type"]))
        return self.result(target, not unchanged, display, _held(target, current))

    def compensate(
        self,
        target: SsmParameterTarget,
        snapshot: Snapshot,
        written: dict[str, Any] | None = None,
        force: bool = False,
    ) -> CompensateResult:
        resource = target.resource
        if not snapshot.exists:
            current = self._read(target)
            if current is None:
                return CompensateResult(resource=resource, changed=False, display="(absent)")
            self.check_rollback(target, snapshot, written, force, _held(target, current))
            with aws_call("ssm:DeleteParameter", resource):
                self.client("ssm", target).delete_parameter(Name=target.parameter)
            return CompensateResult(resource=resource, changed=True, display="(absent)")

        type_ = snapshot.state["type"]
        value = snapshot.state.get("value")
        secret = value is None or _is_secret(target, type_)
        if value is None:  # a secret: read the recorded version back
            versioned = f"{target.parameter}:{snapshot.state['version']}"
            previous = self._read(target, versioned)
            assert previous is not None
            value = previous["Value"]
        current = self._read(target)
        if current is not None and current["Value"] == value and current["Type"] == type_:
            return CompensateResult(resource=resource, changed=False, display=_shown(value, secret))
        # No conditional write in SSM: compare right before writing (a change landing in
        # between is not detected).
        self.check_rollback(target, snapshot, written, force, _held(target, current))
        # A SecureString goes back under the key it had (snapshots before key_id was
        # recorded leave it to the account's default key).
        self._put(target, value, type_, snapshot.state.get("key_id"))
        return CompensateResult(resource=resource, changed=True, display=_shown(value, secret))
