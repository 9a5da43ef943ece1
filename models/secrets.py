"""Where a secret lives, so that neither the plan nor Temporal's history ever holds it: a
Secrets Manager secret's ARN, or an SSM parameter's name (a SecureString, decrypted).

Shared by the plan's ``value_from`` (``models.plan.ValueFrom``) and a check's
``headers_from`` (``models.checks.SecretRef``); it imports only ``models.arns``, so both
may import it (the plan imports the checks).
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from models import arns


class SecretSource(BaseModel):
    """Exactly one of a Secrets Manager secret's ARN or an SSM parameter's name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The plan field it is written under, as its errors name it.
    FIELD: ClassVar[str] = "a secret"

    secretsmanager: Annotated[str, AfterValidator(arns.check_secret_arn)] | None = None
    ssm: (
        Annotated[
            str, Field(min_length=1, max_length=2048), AfterValidator(arns.check_ssm_parameter)
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretSource:
        if (self.secretsmanager is None) == (self.ssm is None):
            raise ValueError(f"{self.FIELD} names exactly one of secretsmanager (an ARN) or ssm")
        return self

    @property
    def source(self) -> str:
        """The secret as people see it named: ``secretsmanager <ARN>`` or
        ``ssm parameter <name>``."""
        if self.secretsmanager is not None:
            return f"secretsmanager {self.secretsmanager}"
        return f"ssm parameter {self.ssm}"
