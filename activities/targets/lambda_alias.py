"""Lambda aliases: traffic moves to a new function version through weighted routing.

Between 0 and 100 % the alias keeps pointing at the version it had before the release and
sends ``percent`` of invocations to the new one (``RoutingConfig.AdditionalVersionWeights``);
at 100 % the alias points at the new version alone. Compensation restores the previous
``FunctionVersion`` and routing weights exactly.

Each step routes from the version the alias points at (what relman's previous step wrote),
not from the snapshot's. Writes carry the ``RevisionId`` just read, so AWS refuses one that
races another change: where relman checks for drift, that refusal is ``ResourceDrifted``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError

from activities.errors import aws_call, error_code, raise_aws_error
from activities.targets.base import TargetHandler
from models.messages import ApplyResult, CompensateResult, Snapshot
from models.plan import LambdaAliasTarget


class LambdaVersionNotFound(Exception):
    """The plan names a function version that was never published (or was deleted)."""


class InvalidTrafficPercent(Exception):
    """A traffic step outside 0..100 %."""


def _weights(alias: dict[str, Any]) -> dict[str, float]:
    # AWS omits RoutingConfig on an alias that never had one; moto returns an empty map
    # after it is cleared. Both mean "no additional version".
    return dict((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {})


def _same_weights(a: dict[str, float], b: dict[str, float]) -> bool:
    # Weights are floats that travel through JSON: compare them with a tolerance.
    return a.keys() == b.keys() and all(math.isclose(a[v], b[v], abs_tol=1e-9) for v in a)


def _held(alias: dict[str, Any]) -> dict[str, Any]:
    """The alias as ``ApplyResult.written`` records it."""
    return {
        "function_version": alias["FunctionVersion"],
        "additional_version_weights": _weights(alias),
        "revision_id": alias.get("RevisionId"),
    }


def _describe(version: str, weights: dict[str, float]) -> str:
    """``version 1 90% / version 2 10%``: how invocations are split between versions;
    ``version 2 (all traffic)`` for an alias on one version (a step event then reads
    ``version 1 (all traffic) -> version 2 (all traffic)``, not ``1: 100% -> 2: 100%``)."""
    if not weights:
        return f"version {version} (all traffic)"
    shares = [(version, 1 - sum(weights.values()))] + sorted(weights.items())
    return " / ".join(f"version {v} {round(share * 100, 2):g}%" for v, share in shares)


class LambdaAliasHandler(TargetHandler):
    """``lambda_alias`` targets."""

    kind = "lambda_alias"

    def _alias(self, target: LambdaAliasTarget) -> dict[str, Any]:
        with aws_call("lambda:GetAlias", target.resource):
            return dict(
                self.client("lambda", target).get_alias(
                    FunctionName=target.function, Name=target.alias
                )
            )

    def _check_version_exists(self, target: LambdaAliasTarget) -> None:
        # UpdateAlias does not check the versions named in AdditionalVersionWeights (moto
        # checks none at all), so a typo would route traffic to nothing.
        try:
            self.client("lambda", target).get_function_configuration(
                FunctionName=target.function, Qualifier=target.version
            )
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise ApplicationError(
                    f"{target.resource}: version {target.version} of function "
                    f"{target.function} does not exist (publish it before the release)",
                    type=LambdaVersionNotFound.__name__,
                    non_retryable=True,
                ) from exc
            raise_aws_error(exc, "lambda:GetFunctionConfiguration", target.resource)

    def _update(
        self,
        target: LambdaAliasTarget,
        alias: dict[str, Any],
        version: str,
        weights: dict[str, float],
        on_race: Callable[[dict[str, Any]], ApplicationError] | None = None,
    ) -> dict[str, Any]:
        """Point the alias at ``version`` with ``weights``, if it is still ``alias``.

        AWS refuses the write (PreconditionFailedException) if someone changed the alias
        since ``alias`` was read. With ``on_race`` (where relman checks for drift) that is
        the error ``on_race`` builds from the alias as it is then; otherwise it is left to
        the retry policy, whose next attempt reads the alias again.
        """
        try:
            self.client("lambda", target).update_alias(
                FunctionName=target.function,
                Name=target.alias,
                FunctionVersion=version,
                RoutingConfig={"AdditionalVersionWeights": weights},
                RevisionId=alias["RevisionId"],
            )
        except ClientError as exc:
            if on_race is not None and error_code(exc) == "PreconditionFailedException":
                raise on_race(_held(self._alias(target))) from exc
            raise_aws_error(exc, "lambda:UpdateAlias", target.resource)
        return self._alias(target)

    def snapshot(self, target: LambdaAliasTarget) -> Snapshot:
        alias = self._alias(target)
        version, weights = alias["FunctionVersion"], _weights(alias)
        return Snapshot(
            resource=target.resource,
            exists=True,
            state={"function_version": version, "additional_version_weights": weights},
            display=_describe(version, weights),
        )

    def show(self, target: LambdaAliasTarget, written: dict[str, Any]) -> str:
        return _describe(written["function_version"], written["additional_version_weights"])

    def holds(self, written: dict[str, Any], current: dict[str, Any]) -> bool:
        # Routing is what relman wrote; the revision id also moves when someone edits only
        # the alias's description, which a rollback does not undo.
        return current["function_version"] == written["function_version"] and _same_weights(
            current["additional_version_weights"], written["additional_version_weights"]
        )

    def apply(
        self,
        target: LambdaAliasTarget,
        snapshot: Snapshot,
        percent: int,
        written: dict[str, Any] | None = None,
    ) -> ApplyResult:
        if not 0 <= percent <= 100:
            raise ApplicationError(
                f"{target.resource}: traffic percent {percent} is outside 0..100",
                type=InvalidTrafficPercent.__name__,
                non_retryable=True,
            )
        self._check_version_exists(target)
        alias = self._alias(target)
        # Route from what relman's previous step left (or, at the first step, what the alias
        # points at now): never from the snapshot, which may be days old.
        previous: str = written["function_version"] if written else alias["FunctionVersion"]
        weights: dict[str, float]
        if percent == 100 or previous == target.version:
            version, weights = target.version, {}
        elif percent == 0:
            version, weights = previous, {}
        else:
            version, weights = previous, {target.version: percent / 100}

        unchanged = alias["FunctionVersion"] == version and _same_weights(_weights(alias), weights)
        if not unchanged:
            wanted = _describe(version, weights)
            self.check_step(target, snapshot, written, _held(alias), wanted)
            on_race = self.on_race(target, snapshot, written, wanted)
            alias = self._update(target, alias, version, weights, on_race)
        display = _describe(alias["FunctionVersion"], _weights(alias))
        return self.result(target, not unchanged, display, _held(alias))

    def compensate(
        self,
        target: LambdaAliasTarget,
        snapshot: Snapshot,
        written: dict[str, Any] | None = None,
        force: bool = False,
    ) -> CompensateResult:
        version = snapshot.state["function_version"]
        weights = dict(snapshot.state["additional_version_weights"])
        alias = self._alias(target)
        unchanged = alias["FunctionVersion"] == version and _same_weights(_weights(alias), weights)
        if not unchanged:
            self.check_rollback(target, snapshot, written, force, _held(alias))
            on_race = self.on_race(target, snapshot, None if force else written)
            alias = self._update(target, alias, version, weights, on_race)
        return CompensateResult(
            resource=target.resource,
            changed=not unchanged,
            display=_describe(alias["FunctionVersion"], _weights(alias)),
        )
