"""AWS names and ARNs as a plan writes them: parsed, and checked against their service,
resource type and the real partitions and regions.

Regions come from botocore's partition data (``botocore/data/partitions.json``), read once
when this module is imported: plans are validated inside the Temporal workflow sandbox too
(the data converter builds the plan there), and the sandbox forbids opening files at run
time. Reading the JSON directly costs about 2 ms and does not import botocore.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PARTITION = "aws"


def _load_partitions() -> dict[str, frozenset[str]]:
    """Partition id -> its region names (without the ``aws-global`` style pseudo-regions)."""
    spec = importlib.util.find_spec("botocore")
    if spec is None or spec.origin is None:
        raise RuntimeError("botocore is not installed: relman needs its partition data")
    data = json.loads((Path(spec.origin).parent / "data" / "partitions.json").read_text())
    return {
        partition["id"]: frozenset(
            name for name in partition["regions"] if not name.endswith("-global")
        )
        for partition in data["partitions"]
    }


PARTITIONS: dict[str, frozenset[str]] = _load_partitions()
REGIONS: frozenset[str] = frozenset().union(*PARTITIONS.values())


def partition_of(region: str | None) -> str:
    """The partition ``region`` belongs to (``aws`` for an unknown or unnamed region)."""
    return next((p for p, names in PARTITIONS.items() if region in names), DEFAULT_PARTITION)


def check_region(value: str) -> str:
    """``value`` if it is an AWS region botocore knows, else a clear error."""
    if value not in REGIONS:
        raise ValueError(f"unknown AWS region {value!r} (not a region in botocore's partitions)")
    return value


@dataclass(frozen=True)
class Arn:
    """``arn:partition:service:region:account:resource``."""

    partition: str
    service: str
    region: str
    account: str
    resource: str

    def __str__(self) -> str:
        return ":".join(("arn", self.partition, self.service, self.region, self.account)) + (
            f":{self.resource}"
        )


def parse_arn(value: str) -> Arn | None:
    """``value`` split into its parts, or None if it does not have an ARN's shape."""
    parts = value.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or not parts[5]:
        return None
    return Arn(*parts[1:])


@dataclass(frozen=True)
class ArnShape:
    """What one kind of ARN looks like: its service, whether it names a region and an
    account, and a pattern for its resource part."""

    what: str
    service: str
    resource: re.Pattern[str]
    example: str
    regional: bool = True
    with_account: bool = True

    def check(self, value: str) -> Arn:
        """``value`` parsed, or a ValueError saying what is wrong with it."""
        arn = parse_arn(value)
        wrong = ValueError(f"{value!r} is not {self.what} ({self.example})")
        if arn is None or arn.service != self.service or not self.resource.fullmatch(arn.resource):
            raise wrong
        if arn.partition not in PARTITIONS:
            raise ValueError(f"{value!r}: unknown AWS partition {arn.partition!r}")
        if not self.regional:
            if arn.region:
                raise wrong
        elif arn.region not in PARTITIONS[arn.partition]:
            if arn.region in REGIONS:
                raise ValueError(
                    f"{value!r}: region {arn.region!r} is not in partition {arn.partition!r}"
                )
            raise ValueError(f"{value!r}: unknown AWS region {arn.region!r}")
        if not (re.fullmatch(r"\d{12}", arn.account) if self.with_account else not arn.account):
            raise wrong
        return arn


_NAME = r"[A-Za-z0-9_-]{1,255}"
LISTENER = ArnShape(
    "an ELBv2 listener ARN",
    "elasticloadbalancing",
    re.compile(r"listener/(app|net)/[A-Za-z0-9-]{1,32}/[0-9a-f]+/[0-9a-f]+"),
    "arn:aws:elasticloadbalancing:REGION:ACCOUNT:listener/app|net/LB/ID/ID",
)
TARGET_GROUP = ArnShape(
    "an ELBv2 target group ARN",
    "elasticloadbalancing",
    re.compile(r"targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]+"),
    "arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID",
)
SNS_TOPIC = ArnShape(
    "an SNS topic ARN",
    "sns",
    re.compile(r"[A-Za-z0-9_-]{1,256}(\.fifo)?"),
    "arn:aws:sns:REGION:ACCOUNT:TOPIC",
)
IAM_ROLE = ArnShape(
    "an IAM role ARN",
    "iam",
    re.compile(r"role/([\x21-\x7e]+/)?[\w+=,.@-]{1,64}"),
    "arn:aws:iam::ACCOUNT:role/NAME",
    regional=False,
)
SSM_PARAMETER = ArnShape(
    "an SSM parameter ARN",
    "ssm",
    re.compile(r"parameter/[A-Za-z0-9_./-]+"),
    "arn:aws:ssm:REGION:ACCOUNT:parameter/NAME",
)
SECRET = ArnShape(
    "a Secrets Manager secret ARN",
    "secretsmanager",
    re.compile(r"secret:[A-Za-z0-9/_+=.@-]{1,512}"),
    "arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-SUFFIX",
)
LAMBDA_FUNCTION = ArnShape(
    "a Lambda function ARN",
    "lambda",
    re.compile(r"function:[A-Za-z0-9_-]{1,64}(:(\$LATEST|[A-Za-z0-9_-]{1,128}))?"),
    "arn:aws:lambda:REGION:ACCOUNT:function:NAME",
)
ECS_CLUSTER = ArnShape(
    "an ECS cluster ARN",
    "ecs",
    re.compile(rf"cluster/{_NAME}"),
    "arn:aws:ecs:REGION:ACCOUNT:cluster/NAME",
)
ECS_SERVICE = ArnShape(
    "an ECS service ARN",
    "ecs",
    re.compile(rf"service/({_NAME}/)?{_NAME}"),
    "arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/NAME",
)
ECS_TASK_DEFINITION = ArnShape(
    "an ECS task definition ARN",
    "ecs",
    re.compile(rf"task-definition/{_NAME}:\d+"),
    "arn:aws:ecs:REGION:ACCOUNT:task-definition/FAMILY:REVISION",
)


def arn_checker(shape: ArnShape) -> Callable[[str], str]:
    """A pydantic after-validator accepting only ARNs of ``shape``."""

    def check(value: str) -> str:
        shape.check(value)
        return value

    return check


def name_or_arn_checker(shape: ArnShape, name: str, what: str) -> Callable[[str], str]:
    """A pydantic after-validator accepting a name matching ``name`` or an ARN of ``shape``."""
    pattern = re.compile(name)

    def check(value: str) -> str:
        if value.startswith("arn:"):
            shape.check(value)
        elif not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {what} or {shape.what} ({shape.example})")
        return value

    return check


check_role_arn = arn_checker(IAM_ROLE)
check_listener_arn = arn_checker(LISTENER)
check_target_group_arn = arn_checker(TARGET_GROUP)
check_ssm_parameter = name_or_arn_checker(
    SSM_PARAMETER, r"/?[A-Za-z0-9_./-]{1,2048}", "an SSM parameter name"
)
check_secret_arn = arn_checker(SECRET)
check_lambda_function = name_or_arn_checker(
    LAMBDA_FUNCTION, r"[A-Za-z0-9_-]{1,64}", "a Lambda function name"
)
check_ecs_cluster = name_or_arn_checker(ECS_CLUSTER, _NAME, "an ECS cluster name")
check_ecs_service = name_or_arn_checker(ECS_SERVICE, _NAME, "an ECS service name")
check_task_definition = name_or_arn_checker(
    ECS_TASK_DEFINITION, rf"{_NAME}(:\d+)?", "an ECS task definition (FAMILY or FAMILY:REVISION)"
)

_HOSTED_ZONE = re.compile(r"(/hostedzone/)?[A-Z0-9]{1,32}")


def check_hosted_zone_id(value: str) -> str:
    """``value`` if it has the shape of a Route 53 hosted zone id (``Z...``)."""
    if not _HOSTED_ZONE.fullmatch(value):
        raise ValueError(f"{value!r} is not a Route 53 hosted zone id (such as Z0123456789ABC)")
    return value


def hosted_zone(value: str) -> str:
    """The bare zone id of ``value`` (``/hostedzone/Z1`` -> ``Z1``)."""
    return value.removeprefix("/hostedzone/")


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+")


def check_bucket_name(value: str) -> str:
    """``value`` if it follows S3's bucket naming rules."""
    if not _BUCKET.fullmatch(value) or ".." in value or _IP_ADDRESS.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an S3 bucket name (3 to 63 lower-case letters, digits, dots "
            "and hyphens, starting and ending with a letter or digit)"
        )
    return value
