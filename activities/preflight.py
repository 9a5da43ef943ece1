"""AWS preflight: every resource a release touches exists and is reachable with the role that
will be used. Read-only; every problem is collected, none stops the others.

Expected failures (not found, access denied, a role that cannot be assumed) become problems
naming the plan field; throttling, 5xx and connection errors are raised for the retry policy.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError, NoCredentialsError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import ssm_commands
from activities.aws import AwsClients, acting_for
from activities.errors import error_code, is_permanent
from activities.health import ALARM_NAMES_PER_CALL, ALARM_TYPES
from activities.notify import redacted
from activities.targets.route53_weighted import Route53WeightedHandler
from activities.webhook_addresses import IPNetwork, WebhookAddressError, checked_addresses
from models.jobs import EcsTaskSpec, LambdaJobSpec
from models.plan import (
    Ec2FleetTarget,
    EcsServiceTarget,
    Elbv2WeightsTarget,
    LambdaAliasTarget,
    Route53WeightedTarget,
    S3ArtifactTarget,
    SsmParameterTarget,
)
from models.preflight import (
    PREFLIGHT,
    WEBHOOK_PATH,
    PreflightAlarms,
    PreflightFunction,
    PreflightInput,
    PreflightJob,
    PreflightProblem,
    PreflightResult,
    PreflightTarget,
)

# The AWS-managed key every account has: SSM encrypts with it when no key is named.
AWS_MANAGED_SSM_KEY = "alias/aws/ssm"
# Targets (and waves' alarms, jobs, functions) checked side by side in one preflight.
PREFLIGHT_THREADS = 16
# What S3 and others answer when the thing asked about does not exist.
_MISSING = ("404", "NoSuchKey", "NoSuchVersion", "NoSuchBucket", "NoSuchHostedZone")


class _Found:
    """The problems of one target or wave, and a context that turns an expected AWS failure
    into one of them."""

    def __init__(self, path: str, name: str, problems: list[PreflightProblem]):
        self.path, self.name, self.problems = path, name, problems
        self.failed = False

    def add(self, message: str) -> None:
        self.failed = True
        self.problems.append(PreflightProblem(path=self.path, name=self.name, message=message))

    @contextmanager
    def call(
        self,
        what: str,
        missing: str | None = None,
        missing_codes: tuple[str, ...] = (),
        absent_ok: bool = False,
    ) -> Iterator[None]:
        """Run AWS calls about ``what``; ``missing`` is the problem when AWS says it does not
        exist (an error code ending in NotFound, or one of ``missing_codes``), none at all
        with ``absent_ok``."""
        try:
            yield
        except ClientError as exc:
            code = error_code(exc)
            not_found = (
                code in missing_codes
                or code in _MISSING
                or code.endswith(("NotFound", "NotFoundException"))
            )
            if absent_ok and not_found:
                return
            if missing is not None and not_found:
                self.add(missing)
            elif is_permanent(code) or not_found:
                text = exc.response.get("Error", {}).get("Message", "")
                self.add(f"cannot read {what}: {code}" + (f": {text}" if text else ""))
            else:
                raise
        except NoCredentialsError:
            self.add(f"cannot read {what}: no AWS credentials")
        except ApplicationError as exc:  # a handler's own non-retryable verdict
            if exc.non_retryable:
                self.add(exc.message)
            else:
                raise


class PreflightActivities:
    """Check a release's resources before it changes any; boto3 clients come from the
    worker, as do the internal networks plans' webhooks may reach
    (``RELMAN_WEBHOOK_ALLOW_NETWORKS``) and its own default webhook (not checked)."""

    def __init__(
        self,
        aws: AwsClients,
        webhook_networks: Sequence[IPNetwork] = (),
        trusted_webhooks: Collection[str] = (),
    ):
        self.aws = aws
        self.webhook_networks = tuple(webhook_networks)
        self.trusted_webhooks = frozenset(trusted_webhooks)
        self._route53 = Route53WeightedHandler(aws)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=PREFLIGHT_THREADS, thread_name_prefix="relman-preflight"
        )
        self._checks: dict[str, Callable[[Any, Any, _Found], None]] = {
            "ssm_parameter": self._ssm_parameter,
            "lambda_alias": self._lambda_alias,
            "elbv2_weights": self._elbv2_weights,
            "route53_weighted": self._route53_weighted,
            "ecs_service": self._ecs_service,
            "s3_artifact": self._s3_artifact,
            "ec2_fleet": self._ec2_fleet,
        }

    def _client(self, service: str, where: Any) -> Any:
        return self.aws.client(service, where.region, where.role_arn, where.external_id)

    @activity.defn(name=PREFLIGHT)
    def preflight(self, input: PreflightInput) -> PreflightResult:
        """Every problem with the input's targets, alarms and webhook; changes nothing."""
        checks: list[Callable[[list[PreflightProblem]], None]] = [
            *(functools.partial(self.check_target, item) for item in input.targets),
            *(functools.partial(self.check_alarms, alarms) for alarms in input.alarms),
            *(functools.partial(self.check_function, f) for f in input.functions),
            *(functools.partial(self.check_job, job) for job in input.jobs),
        ]
        with acting_for(input.release_id, input.application):
            problems = self._side_by_side(checks)
        if input.webhook_url and input.webhook_url not in self.trusted_webhooks:
            self.check_webhook(input.webhook_url, problems)
        return PreflightResult(problems=problems, checked=len(input.targets) + len(input.alarms))

    def _side_by_side(
        self, checks: Sequence[Callable[[list[PreflightProblem]], None]]
    ) -> list[PreflightProblem]:
        """Run ``checks`` on the preflight's threads, each in a copy of this context (the
        release the AWS calls are made for); their problems in the order of ``checks``. An
        error a retry may fix (throttling, a timeout) is raised once every check ended."""

        def run(check: Callable[[list[PreflightProblem]], None]) -> list[PreflightProblem]:
            found: list[PreflightProblem] = []
            check(found)
            return found

        futures = [self._pool.submit(contextvars.copy_context().run, run, c) for c in checks]
        concurrent.futures.wait(futures)
        return [problem for future in futures for problem in future.result()]

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for worker registration."""
        return [self.preflight]

    def check_webhook(self, url: str, problems: list[PreflightProblem]) -> None:
        """Add a problem when the webhook's host does not resolve, or resolves to an address
        webhooks may not reach (delivery checks again: DNS may answer differently then)."""
        try:
            checked_addresses(url, self.webhook_networks)
        except WebhookAddressError as exc:
            if exc.transient:  # DNS did not answer: the retry policy asks again
                raise ApplicationError(f"webhook {redacted(url)}: {exc}") from None
            problems.append(
                PreflightProblem(path=WEBHOOK_PATH, name=redacted(url), message=str(exc))
            )

    def check_target(self, item: PreflightTarget, problems: list[PreflightProblem]) -> None:
        """Add the problems of one target to ``problems``."""
        found = _Found(item.path, item.target.name, problems)
        self._checks[item.target.kind](self._client_for(item.target), item.target, found)

    def _client_for(self, target: Any) -> Callable[[str], Any]:
        return lambda service: self._client(service, target)

    def _ssm_parameter(self, client: Any, target: SsmParameterTarget, found: _Found) -> None:
        self._ssm_parameter_itself(client, target, found)
        if target.value_from is not None:
            source = _Found(f"{found.path}.value_from", found.name, found.problems)
            self._value_source(target, source)

    def _value_source(self, target: SsmParameterTarget, found: _Found) -> None:
        """The secret a ``value_from`` names exists and can be read (without reading it)."""
        source = target.value_from
        assert source is not None
        if source.secretsmanager is not None:
            arn = source.secretsmanager
            secrets = self.aws.client(
                "secretsmanager", arn.split(":")[3], target.role_arn, target.external_id
            )
            with found.call(f"secret {arn}", f"secret {arn} does not exist"):
                if secrets.describe_secret(SecretId=arn).get("DeletedDate"):
                    found.add(f"secret {arn} is scheduled for deletion")
        else:
            # The value stays here: only whether it can be read matters.
            with found.call(
                f"ssm parameter {source.ssm}", f"ssm parameter {source.ssm} does not exist"
            ):
                self._client("ssm", target).get_parameter(Name=source.ssm, WithDecryption=False)

    def _ssm_parameter_itself(self, client: Any, target: SsmParameterTarget, found: _Found) -> None:
        ssm = client("ssm")
        name = target.parameter
        # Absent is fine (the release creates it); what matters is that it can be read.
        with found.call(f"ssm parameter {name}", absent_ok=True):
            ssm.get_parameter(Name=name, WithDecryption=False)
        if found.failed or name.startswith("arn:"):
            return
        with found.call(f"ssm parameter {name}"):
            listed = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])[
                "Parameters"
            ]
        key_id = listed[0].get("KeyId") if listed else None
        if key_id and key_id != AWS_MANAGED_SSM_KEY:
            with found.call(
                f"KMS key {key_id} of ssm parameter {name}",
                missing=f"KMS key {key_id} of ssm parameter {name} does not exist",
            ):
                key = client("kms").describe_key(KeyId=key_id)["KeyMetadata"]
                if key.get("KeyState") != "Enabled":
                    found.add(
                        f"KMS key {key_id} of ssm parameter {name} is "
                        f"{key.get('KeyState', 'unusable')}"
                    )

    def _lambda_alias(self, client: Any, target: LambdaAliasTarget, found: _Found) -> None:
        lam, function = client("lambda"), target.function
        with found.call(f"lambda function {function}", f"function {function} does not exist"):
            lam.get_function_configuration(FunctionName=function)
        if found.failed:
            return
        with found.call(
            f"version {target.version} of function {function}",
            f"version {target.version} of function {function} does not exist "
            "(publish it before the release)",
        ):
            lam.get_function_configuration(FunctionName=function, Qualifier=target.version)
        with found.call(
            f"alias {target.alias} of function {function}",
            f"alias {target.alias} of function {function} does not exist",
        ):
            lam.get_alias(FunctionName=function, Name=target.alias)

    def _elbv2_weights(self, client: Any, target: Elbv2WeightsTarget, found: _Found) -> None:
        elbv2 = client("elbv2")
        listener: dict[str, Any] = {}
        with found.call(
            f"listener {target.listener_arn}", f"listener {target.listener_arn} does not exist"
        ):
            listener = elbv2.describe_listeners(ListenerArns=[target.listener_arn])["Listeners"][0]
        balancer = listener.get("LoadBalancerArn")
        for arn in dict.fromkeys((target.blue_target_group_arn, target.green_target_group_arn)):
            groups: list[dict[str, Any]] = []
            with found.call(f"target group {arn}", f"target group {arn} does not exist"):
                groups = elbv2.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"]
            balancers = groups[0].get("LoadBalancerArns", []) if groups else []
            # A group no load balancer uses yet joins the listener's when it forwards to it;
            # one that another load balancer uses cannot (a target group has one).
            if balancer and balancers and balancer not in balancers:
                found.add(
                    f"target group {arn} is not on the listener's load balancer "
                    f"{balancer} (it is on {', '.join(balancers)})"
                )

    def _route53_weighted(self, client: Any, target: Route53WeightedTarget, found: _Found) -> None:
        zone = target.hosted_zone_id
        with found.call(f"hosted zone {zone}", f"hosted zone {zone} does not exist"):
            client("route53").get_hosted_zone(Id=zone)
        if found.failed:
            return
        records: dict[str, dict[str, Any] | None] = {}
        with found.call(f"records {target.record_name} in {zone}"):
            records = self._route53._records(target)  # noqa: SLF001 - the handler's own read
        for color, record in records.items():
            if record is None or "Weight" not in record:
                identifier = getattr(target, f"{color}_set_identifier")
                found.add(
                    f"no weighted {target.record_type} record {target.record_name} with "
                    f"SetIdentifier {identifier!r} ({color}) in hosted zone {zone}"
                )

    def _ecs_service(self, client: Any, target: EcsServiceTarget, found: _Found) -> None:
        ecs, cluster, service = client("ecs"), target.cluster, target.service
        with found.call(f"ecs cluster {cluster}"):
            clusters = ecs.describe_clusters(clusters=[cluster])["clusters"]
            if not any(c.get("status") == "ACTIVE" for c in clusters):
                found.add(f"ecs cluster {cluster} does not exist")
        if not found.failed:
            with found.call(f"ecs service {service}"):
                services = ecs.describe_services(cluster=cluster, services=[service])["services"]
                if not any(s.get("status") == "ACTIVE" for s in services):
                    found.add(f"ecs service {service} does not exist in cluster {cluster}")
        # ECS answers ClientException for a task definition that is not registered.
        with found.call(
            f"task definition {target.task_definition}",
            f"task definition {target.task_definition} is not registered",
            missing_codes=("ClientException",),
        ):
            ecs.describe_task_definition(taskDefinition=target.task_definition)

    def _ec2_fleet(self, client: Any, target: Ec2FleetTarget, found: _Found) -> None:
        chosen, group_ids = target.instances, None
        if chosen.auto_scaling_group:
            name = chosen.auto_scaling_group
            with found.call(f"auto scaling group {name}"):
                groups = client("autoscaling").describe_auto_scaling_groups(
                    AutoScalingGroupNames=[name]
                )["AutoScalingGroups"]
                if not groups:
                    found.add(f"auto scaling group {name} does not exist")
                group_ids = [i["InstanceId"] for g in groups for i in g.get("Instances", [])]
        if not found.failed:
            filters = ssm_commands.tag_filters(chosen.tags) + [
                {"Name": "instance-state-name", "Values": ["running"]}
            ]
            if group_ids is not None:
                # DescribeInstances takes up to 200 values per filter: one is enough here.
                filters.append({"Name": "instance-id", "Values": group_ids[:200] or ["none"]})
            with found.call(f"instances of {target.resource}"):
                # One running instance is enough to know the fleet exists: a page of five
                # (the least AWS takes) instead of every instance of a large fleet.
                reservations = client("ec2").describe_instances(Filters=filters, MaxResults=5)[
                    "Reservations"
                ]
                if not any(r.get("Instances") for r in reservations):
                    found.add(f"{target.resource}: no running instance")
        for arn in target.target_groups:
            with found.call(f"target group {arn}", f"target group {arn} does not exist"):
                client("elbv2").describe_target_groups(TargetGroupArns=[arn])
        commands = [target.command] + ([target.rollback] if target.rollback != "none" else [])
        for document in dict.fromkeys(c.document for c in commands):
            if document.startswith("AWS-"):
                continue  # AWS's own documents exist in every region
            with found.call(
                f"ssm document {document}",
                f"ssm document {document} does not exist",
                missing_codes=("InvalidDocument",),
            ):
                client("ssm").describe_document(Name=document)

    def _s3_artifact(self, client: Any, target: S3ArtifactTarget, found: _Found) -> None:
        s3, bucket = client("s3"), target.bucket
        with found.call(f"bucket {bucket}", f"bucket {bucket} does not exist"):
            status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
            if status != "Enabled":
                found.add(
                    f"bucket {bucket} must have versioning enabled to roll back "
                    f"(it is {(status or 'never enabled').lower()})"
                )
        if found.failed:
            return
        source = f"s3://{bucket}/{target.source_key}"
        with found.call(
            f"{source} version {target.source_version_id}",
            f"{source} has no version {target.source_version_id!r}",
            # An id S3 never issued is an InvalidArgument, not a 404.
            missing_codes=("400", "InvalidArgument"),
        ):
            s3.head_object(Bucket=bucket, Key=target.source_key, VersionId=target.source_version_id)

    def check_function(self, item: PreflightFunction, problems: list[PreflightProblem]) -> None:
        """A ``lambda_invoke`` check's function (and qualifier) exists."""
        name = item.function + (f":{item.qualifier}" if item.qualifier else "")
        found = _Found(item.path, item.wave, problems)
        region = self.aws.region(item.region)
        with found.call(
            f"Lambda function {name}", f"Lambda function {name!r} does not exist in {region}"
        ):
            args = {"FunctionName": item.function}
            if item.qualifier:
                args["Qualifier"] = item.qualifier
            self._client("lambda", item).get_function_configuration(**args)

    def check_job(self, item: PreflightJob, problems: list[PreflightProblem]) -> None:
        """A job step's task definition, function or SSM document exists."""
        job, found = item.job, _Found(item.path, item.wave, problems)
        region = self.aws.region(job.region)
        client = functools.partial(
            self.aws.client, region=job.region, role_arn=job.role_arn, external_id=job.external_id
        )
        if isinstance(job, EcsTaskSpec):
            with found.call(
                f"task definition {job.task_definition}",
                f"task definition {job.task_definition!r} does not exist in {region}",
                missing_codes=("ClientException",),
            ):
                client("ecs").describe_task_definition(taskDefinition=job.task_definition)
        elif isinstance(job, LambdaJobSpec):
            args = {"FunctionName": job.function}
            if job.qualifier:
                args["Qualifier"] = job.qualifier
            with found.call(
                f"Lambda function {job.function}",
                f"Lambda function {job.function!r} does not exist in {region}",
            ):
                client("lambda").get_function_configuration(**args)
        elif not job.document.startswith("AWS-"):  # AWS's own documents exist everywhere
            with found.call(
                f"SSM document {job.document}",
                f"SSM document {job.document!r} does not exist in {region}",
                missing_codes=("InvalidDocument",),
            ):
                client("ssm").describe_document(Name=job.document)

    def check_alarms(self, item: PreflightAlarms, problems: list[PreflightProblem]) -> None:
        """Add a problem for each alarm of the wave that does not exist."""
        found = _Found(item.path, item.wave, problems)
        names = list(dict.fromkeys(item.alarms))
        seen: set[str] = set()
        with found.call(f"CloudWatch alarms of wave {item.wave!r}"):
            cloudwatch = self._client("cloudwatch", item)
            for start in range(0, len(names), ALARM_NAMES_PER_CALL):
                chunk = names[start : start + ALARM_NAMES_PER_CALL]
                for page in cloudwatch.get_paginator("describe_alarms").paginate(
                    AlarmNames=chunk, AlarmTypes=ALARM_TYPES
                ):
                    for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
                        seen.add(alarm["AlarmName"])
        if found.failed:
            return
        region = self.aws.region(item.region)
        for name in names:
            if name not in seen:
                found.add(f"CloudWatch alarm {name!r} does not exist in {region}")
