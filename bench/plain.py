"""The baseline: a plain boto3 script making the same AWS calls as relman's activities.

Per target and in the same order as ``activities/targets``: a snapshot read; for each
traffic step a read, then a write only if the resource differs (Lambda also checks that the
version exists and reads the alias back); a restore reads, writes and (Lambda) reads back.
No Temporal, no models, no retries beyond botocore's own.
"""

from __future__ import annotations

import concurrent.futures
import functools
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config

from bench.stack import AWS_MAX_ATTEMPTS, CallCounter

TRAFFIC_KINDS = {"lambda_alias"}


class PlainScript:
    """boto3 clients made once (as the worker's are), and a thread pool of ``threads``."""

    def __init__(self, endpoint: str, threads: int):
        session = boto3.Session()
        config = Config(retries={"max_attempts": AWS_MAX_ATTEMPTS, "mode": "standard"})
        self.counter = CallCounter()
        self.ssm = self.counter.attach(session.client("ssm", endpoint_url=endpoint, config=config))
        self.lam = self.counter.attach(
            session.client("lambda", endpoint_url=endpoint, config=config)
        )
        # One pool for the script's life, as the worker keeps its activity threads.
        self.pool = concurrent.futures.ThreadPoolExecutor(threads)

    def close(self) -> None:
        self.pool.shutdown()

    def _each(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        return list(self.pool.map(fn, items))

    # --- one target ------------------------------------------------------------------------

    def snapshot(self, target: dict[str, Any]) -> dict[str, Any]:
        if target["kind"] == "ssm_parameter":
            parameter = self.ssm.get_parameter(Name=target["parameter"], WithDecryption=True)
            return {"value": parameter["Parameter"]["Value"]}
        alias = self.lam.get_alias(FunctionName=target["function"], Name=target["alias"])
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        return {"version": alias["FunctionVersion"], "weights": weights}

    def apply(self, target: dict[str, Any], snapshot: dict[str, Any], percent: int) -> None:
        if target["kind"] == "ssm_parameter":
            current = self.ssm.get_parameter(Name=target["parameter"], WithDecryption=True)
            if current["Parameter"]["Value"] != target["value"]:
                self.ssm.put_parameter(
                    Name=target["parameter"], Value=target["value"], Type="String", Overwrite=True
                )
            return
        self.lam.get_function_configuration(
            FunctionName=target["function"], Qualifier=target["version"]
        )
        if percent == 100:
            version, weights = target["version"], {}
        else:
            version, weights = snapshot["version"], {target["version"]: percent / 100}
        self._set_alias(target, version, weights)

    def restore(self, target: dict[str, Any], snapshot: dict[str, Any]) -> None:
        if target["kind"] == "ssm_parameter":
            current = self.ssm.get_parameter(Name=target["parameter"], WithDecryption=True)
            if current["Parameter"]["Value"] != snapshot["value"]:
                self.ssm.put_parameter(
                    Name=target["parameter"], Value=snapshot["value"], Type="String", Overwrite=True
                )
            return
        self._set_alias(target, snapshot["version"], snapshot["weights"])

    def _set_alias(self, target: dict[str, Any], version: str, weights: dict[str, float]) -> None:
        alias = self.lam.get_alias(FunctionName=target["function"], Name=target["alias"])
        current = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        if alias["FunctionVersion"] != version or current != weights:
            self.lam.update_alias(
                FunctionName=target["function"],
                Name=target["alias"],
                FunctionVersion=version,
                RoutingConfig={"AdditionalVersionWeights": weights},
                RevisionId=alias["RevisionId"],
            )
            self.lam.get_alias(FunctionName=target["function"], Name=target["alias"])

    # --- a wave ----------------------------------------------------------------------------

    def snapshot_all(self, targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._each(self.snapshot, targets)

    def deploy(self, targets: list[dict[str, Any]], traffic: list[int]) -> list[dict[str, Any]]:
        """Snapshot every target, then apply each traffic step to all in parallel."""
        snapshots = self.snapshot_all(targets)
        by_name = {t["name"]: s for t, s in zip(targets, snapshots, strict=True)}
        for step, percent in enumerate(traffic):
            due = [t for t in targets if step == 0 or t["kind"] in TRAFFIC_KINDS]
            self._each(functools.partial(self._apply_named, by_name, percent), due)
        return snapshots

    def _apply_named(
        self, snapshots: dict[str, dict[str, Any]], percent: int, target: dict[str, Any]
    ) -> None:
        self.apply(target, snapshots[target["name"]], percent)

    def restore_all(
        self, targets: list[dict[str, Any]], snapshots: list[dict[str, Any]], parallel: bool
    ) -> None:
        """Restore every target: newest first one by one (a saga), or all at once."""
        pairs = list(zip(targets, snapshots, strict=True))
        if parallel:
            self._each(lambda pair: self.restore(*pair), pairs)
        else:
            for target, snapshot in reversed(pairs):
                self.restore(target, snapshot)
