"""``shipway token``: the REST API's bearer token for an access key."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["token"]


def token(
    access_key_id: Annotated[str, typer.Option(envvar="AWS_ACCESS_KEY_ID")],
    secret_access_key: Annotated[
        str, typer.Option(envvar="AWS_SECRET_ACCESS_KEY", show_default=False)
    ],
) -> None:
    """Print the bearer token of an access key (for SHIPWAY_TOKEN, curl or Prometheus).

    A server started with SHIPWAY_ACCESS_KEYS_FILE takes it on the REST API and invocations;
    boto3 and the AWS CLI sign with the key itself."""
    from shipway.api.auth import bearer_token  # the server's own (it imports botocore)

    typer.echo(bearer_token(access_key_id, secret_access_key))
