"""Resource names and ARNs, as SageMaker forms them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import StringConstraints

__all__ = [
    "ENTITY_NAME_PATTERN",
    "MODEL_NAME_PATTERN",
    "Account",
    "EntityName",
    "ModelName",
]

MODEL_NAME_PATTERN = r"^[a-zA-Z0-9]([\-a-zA-Z0-9]*[a-zA-Z0-9])?$"
ENTITY_NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"

ModelName = Annotated[str, StringConstraints(max_length=63, pattern=MODEL_NAME_PATTERN)]
"""A model's name: letters, digits and inner hyphens, at most 63 characters."""

EntityName = Annotated[str, StringConstraints(max_length=63, pattern=ENTITY_NAME_PATTERN)]
"""An endpoint's, endpoint configuration's or variant's name."""


@dataclass(frozen=True)
class Account:
    """Where resources live: their ARNs carry the region and the 12-digit account id."""

    region: str = "us-east-1"
    account_id: str = "123456789012"

    def arn(self, kind: str, name: str) -> str:
        """``arn:aws:sagemaker:{region}:{account}:{kind}/{name}``; AWS lower-cases the name."""
        return f"arn:aws:sagemaker:{self.region}:{self.account_id}:{kind}/{name.lower()}"
