"""Tags by ARN: only ARNs of this server's partition, account and region name its resources."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipway.domain.errors import NotFound, ValidationError
from shipway.domain.model import Tag
from shipway.domain.names import Account
from shipway.service.tags import TagService
from shipway.store.metadata import MetadataStore

ACCOUNT = Account(region="eu-west-1", account_id="210987654321")
TAGS = [Tag(key="team", value="risk")]


@pytest.fixture
def tags(tmp_path: Path) -> Iterator[TagService]:
    store = MetadataStore(f"sqlite:///{tmp_path / 'shipway.db'}")
    yield TagService(store, ACCOUNT)
    store.close()


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:sagemaker:eu-west-1:123456789012:model/m",  # another account
        "arn:aws:sagemaker:us-east-1:210987654321:model/m",  # another region
        "arn:aws-cn:sagemaker:eu-west-1:210987654321:model/m",  # another partition
        "arn:aws:iam:eu-west-1:210987654321:model/m",  # another service
        "arn:aws:sagemaker:eu-west-1:210987654321",  # not an ARN of a resource
    ],
)
def test_an_arn_of_another_account_region_or_partition_is_refused(
    tags: TagService, arn: str
) -> None:
    for call in (
        lambda: tags.add_tags(arn, TAGS),
        lambda: tags.list_tags(arn),
        lambda: tags.delete_tags(arn, ["team"]),
    ):
        with pytest.raises(ValidationError) as caught:
            call()
        assert not isinstance(caught.value, NotFound)
        assert arn in caught.value.message


def test_an_arn_of_this_server_reaches_the_store(tags: TagService) -> None:
    arn = ACCOUNT.arn("model", "absent")
    with pytest.raises(NotFound):
        tags.add_tags(arn, TAGS)
    with pytest.raises(ValidationError, match="names no model"):
        tags.list_tags("arn:aws:sagemaker:eu-west-1:210987654321:notebook/x")
