"""Tags: add, list and delete the tags of a model, endpoint configuration or endpoint by ARN."""

from __future__ import annotations

from typing import Any

from shipway.domain.errors import NotFound, ValidationError
from shipway.domain.model import Tag
from shipway.domain.names import Account
from shipway.domain.tags import MAX_TAGS
from shipway.store.metadata import Collection, MetadataStore

__all__ = ["TagService"]

PARTITION = "aws"
"""The partition of every ARN this server hands out (:meth:`Account.arn`)."""
KINDS = {
    "model": "model",
    "endpoint-config": "endpoint configuration",
    "endpoint": "endpoint",
    "transform-job": "transform job",
}


class TagService:
    def __init__(self, store: MetadataStore, account: Account) -> None:
        self._store = store
        self._account = account

    def _resource(self, arn: str) -> tuple[Collection[Any], str, str]:
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[0] != "arn":
            raise ValidationError(f"ResourceArn '{arn}' is not an ARN.")
        _, partition, service, region, account_id, resource = parts
        account = self._account
        if (partition, service, region, account_id) != (
            PARTITION,
            "sagemaker",
            account.region,
            account.account_id,
        ):
            raise ValidationError(
                f"ResourceArn '{arn}' is not valid for this account and region: this server "
                f"holds the SageMaker resources of account {account.account_id} in "
                f"{account.region} (arn:{PARTITION}:sagemaker:{account.region}:"
                f"{account.account_id}:...)."
            )
        kind, _, name = resource.partition("/")
        if kind not in KINDS or not name:
            raise ValidationError(
                f"ResourceArn '{arn}' names no model, endpoint configuration, endpoint or "
                "transform job."
            )
        collections: dict[str, Collection[Any]] = {
            "model": self._store.models,
            "endpoint-config": self._store.endpoint_configs,
            "endpoint": self._store.endpoints,
            "transform-job": self._store.transform_jobs,
        }
        return collections[kind], name, kind

    def _missing(self, arn: str) -> NotFound:
        _, name, kind = self._resource(arn)
        return NotFound(KINDS[kind], name, arn)

    def list_tags(self, arn: str) -> list[Tag]:
        collection, name, _ = self._resource(arn)
        item = collection.get(name)
        if item is None:
            raise self._missing(arn)
        return list(item.tags or [])

    def add_tags(self, arn: str, tags: list[Tag]) -> list[Tag]:
        """Add or overwrite tags by key; the resource may hold at most 50."""
        collection, name, _ = self._resource(arn)

        def tagged(item: Any) -> Any:
            merged = {t.key: t for t in item.tags or []}
            merged.update({t.key: t for t in tags})
            if len(merged) > MAX_TAGS:
                raise ValidationError(
                    f"A resource may hold at most {MAX_TAGS} tags; {arn} would hold {len(merged)}."
                )
            return item.model_copy(update={"tags": list(merged.values())})

        if collection.update(name, tagged) is None:
            raise self._missing(arn)
        return tags

    def delete_tags(self, arn: str, keys: list[str]) -> None:
        collection, name, _ = self._resource(arn)
        drop = set(keys)

        def untagged(item: Any) -> Any:
            return item.model_copy(
                update={"tags": [t for t in item.tags or [] if t.key not in drop] or None}
            )

        if collection.update(name, untagged) is None:
            raise self._missing(arn)
