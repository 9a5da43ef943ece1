"""ELBv2 listeners: traffic moves from a blue to a green target group by forward weights.

The listener's default forward action gets ``TargetGroups`` blue = 100 - percent and
green = percent, keeping its stickiness settings and every other default action. The
snapshot is the listener's complete ``DefaultActions`` list, which compensation writes back.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError

from activities.errors import aws_call, error_code, raise_aws_error
from activities.targets.base import TargetHandler
from models.messages import ApplyResult, CompensateResult, Snapshot
from models.plan import Elbv2WeightsTarget

# ELBv2 accepts forward weights 0..999; moto accepts anything, so check before writing.
MAX_WEIGHT = 999


class TargetGroupNotFound(Exception):
    """The plan names a blue or green target group that does not exist."""


class ListenerNotForwarding(Exception):
    """The listener's default action does not forward to the blue/green target groups."""


class InvalidWeight(Exception):
    """A forward weight outside ELBv2's 0..999."""


def _invalid(target: Elbv2WeightsTarget, error: type[Exception], reason: str) -> ApplicationError:
    return ApplicationError(f"{target.resource}: {reason}", type=error.__name__, non_retryable=True)


def _forward_groups(action: dict[str, Any]) -> dict[str, int]:
    """Target group ARN -> weight of a forward action, in either of its two spellings."""
    groups = (action.get("ForwardConfig") or {}).get("TargetGroups")
    if groups:
        return {g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups}
    return {action["TargetGroupArn"]: 1} if action.get("TargetGroupArn") else {}


def _stickiness(action: dict[str, Any]) -> dict[str, Any]:
    config = (action.get("ForwardConfig") or {}).get("TargetGroupStickinessConfig") or {}
    if not config.get("Enabled"):
        return {"Enabled": False}  # AWS and moto spell "off" with or without the block
    return {"Enabled": True, "DurationSeconds": config.get("DurationSeconds")}


def _canonical(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Default actions in one spelling, so equal configurations compare equal."""
    canonical = []
    for action in sorted(actions, key=lambda a: a.get("Order", 0)):
        rest = {k: v for k, v in action.items() if k not in ("TargetGroupArn", "ForwardConfig")}
        if action["Type"] == "forward":
            rest["groups"] = _forward_groups(action)
            rest["stickiness"] = _stickiness(action)
        canonical.append(rest)
    return canonical


def _forward_index(target: Elbv2WeightsTarget, actions: list[dict[str, Any]]) -> int:
    """Where in ``actions`` the forward to blue/green is; an error if there is none."""
    wanted = {target.blue_target_group_arn, target.green_target_group_arn}
    forwards = [i for i, a in enumerate(actions) if a["Type"] == "forward"]
    if len(forwards) != 1:
        raise _invalid(
            target,
            ListenerNotForwarding,
            f"expected one default forward action, found {len(forwards)}",
        )
    groups = set(_forward_groups(actions[forwards[0]]))
    if not groups or not groups <= wanted:
        others = ", ".join(sorted(groups - wanted)) or "nothing"
        raise _invalid(
            target,
            ListenerNotForwarding,
            f"default action forwards to {others}, not to the blue/green target groups",
        )
    return forwards[0]


def _check_weights(target: Elbv2WeightsTarget, actions: list[dict[str, Any]]) -> None:
    for action in actions:
        if action["Type"] != "forward":
            continue
        for arn, weight in _forward_groups(action).items():
            if not 0 <= weight <= MAX_WEIGHT:
                raise _invalid(
                    target,
                    InvalidWeight,
                    f"weight {weight} for {arn} is outside 0..{MAX_WEIGHT}",
                )


def _held(actions: list[dict[str, Any]]) -> dict[str, Any]:
    """The listener as ``ApplyResult.written`` records it: the forward weights by target
    group ARN (None without a forward action)."""
    forward = next((a for a in actions if a["Type"] == "forward"), None)
    return {"forward_weights": None if forward is None else _forward_groups(forward)}


class Elbv2WeightsHandler(TargetHandler):
    """``elbv2_weights`` targets."""

    kind = "elbv2_weights"

    def _default_actions(self, target: Elbv2WeightsTarget) -> list[dict[str, Any]]:
        with aws_call("elbv2:DescribeListeners", target.resource):
            listeners = self.client("elbv2", target).describe_listeners(
                ListenerArns=[target.listener_arn]
            )["Listeners"]
        return list(listeners[0]["DefaultActions"])

    def _check_target_groups(self, target: Elbv2WeightsTarget) -> None:
        # Checked one by one so the error names the missing group; ModifyListener in moto
        # would accept an unknown ARN and forward to nothing.
        for color, arn in (
            ("blue", target.blue_target_group_arn),
            ("green", target.green_target_group_arn),
        ):
            try:
                self.client("elbv2", target).describe_target_groups(TargetGroupArns=[arn])
            except ClientError as exc:
                if error_code(exc) == "TargetGroupNotFound":
                    raise _invalid(
                        target, TargetGroupNotFound, f"{color} target group {arn} does not exist"
                    ) from exc
                raise_aws_error(exc, "elbv2:DescribeTargetGroups", arn)

    def _describe(self, target: Elbv2WeightsTarget, actions: list[dict[str, Any]]) -> str:
        """``blue 90 / green 10``: the forward weights, by color where the group has one;
        ``plain forward to blue`` for a forward to one group with no weights (all of the
        traffic goes there: its implied weight of 1 is no figure to show)."""
        forward = next((a for a in actions if a["Type"] == "forward"), None)
        if (
            forward is not None
            and forward.get("TargetGroupArn")
            and not (forward.get("ForwardConfig") or {}).get("TargetGroups")
        ):
            arn = forward["TargetGroupArn"]
            names = {target.blue_target_group_arn: "blue", target.green_target_group_arn: "green"}
            return f"plain forward to {names.get(arn, arn)}"
        return self.show(target, _held(actions))

    def show(self, target: Elbv2WeightsTarget, written: dict[str, Any]) -> str:
        if written.get("forward_weights") is None:
            return "(no forward action)"
        names = {target.blue_target_group_arn: "blue", target.green_target_group_arn: "green"}
        return " / ".join(
            f"{names.get(arn, arn)} {weight}" for arn, weight in written["forward_weights"].items()
        )

    def _write(self, target: Elbv2WeightsTarget, actions: list[dict[str, Any]]) -> None:
        _check_weights(target, actions)
        with aws_call("elbv2:ModifyListener", target.resource):
            self.client("elbv2", target).modify_listener(
                ListenerArn=target.listener_arn, DefaultActions=actions
            )

    def snapshot(self, target: Elbv2WeightsTarget) -> Snapshot:
        actions = self._default_actions(target)
        self._check_target_groups(target)
        _forward_index(target, actions)
        return Snapshot(
            resource=target.resource,
            exists=True,
            state={"default_actions": actions},
            display=self._describe(target, actions),
        )

    def apply(
        self,
        target: Elbv2WeightsTarget,
        snapshot: Snapshot,
        percent: int,
        written: dict[str, Any] | None = None,
    ) -> ApplyResult:
        actions = self._default_actions(target)
        wanted_weights = {
            target.blue_target_group_arn: 100 - percent,
            target.green_target_group_arn: percent,
        }
        if _held(actions)["forward_weights"] != wanted_weights:
            # Before the listener's shape is checked: a listener someone else re-pointed is
            # a drift to report as such. ELBv2 has no conditional write, so a change landing
            # between this read and the write below is not detected.
            wanted_display = self.show(target, {"forward_weights": wanted_weights})
            self.check_step(target, snapshot, written, _held(actions), wanted_display)
        self._check_target_groups(target)
        index = _forward_index(target, actions)
        forward = actions[index]
        config: dict[str, Any] = {
            "TargetGroups": [
                {"TargetGroupArn": target.blue_target_group_arn, "Weight": 100 - percent},
                {"TargetGroupArn": target.green_target_group_arn, "Weight": percent},
            ]
        }
        if "TargetGroupStickinessConfig" in (forward.get("ForwardConfig") or {}):
            config["TargetGroupStickinessConfig"] = forward["ForwardConfig"][
                "TargetGroupStickinessConfig"
            ]
        # A top-level TargetGroupArn may only repeat a single-group ForwardConfig: drop it.
        wanted_forward = {
            **{k: v for k, v in forward.items() if k not in ("TargetGroupArn", "ForwardConfig")},
            "ForwardConfig": config,
        }
        wanted = [*actions[:index], wanted_forward, *actions[index + 1 :]]

        unchanged = _canonical(actions) == _canonical(wanted)
        if not unchanged:
            self._write(target, wanted)
            actions = self._default_actions(target)
        display = self._describe(target, actions)
        return self.result(target, not unchanged, display, _held(actions))

    def compensate(
        self,
        target: Elbv2WeightsTarget,
        snapshot: Snapshot,
        written: dict[str, Any] | None = None,
        force: bool = False,
    ) -> CompensateResult:
        previous = snapshot.state["default_actions"]
        actions = self._default_actions(target)
        unchanged = _canonical(actions) == _canonical(previous)
        if not unchanged:
            # ModifyListener has no condition to put on the write: compare right before it
            # (a change landing in between is not detected).
            self.check_rollback(target, snapshot, written, force, _held(actions))
            self._write(target, previous)
            actions = self._default_actions(target)
        return CompensateResult(
            resource=target.resource,
            changed=not unchanged,
            display=self._describe(target, actions),
        )
