"""Model operations: create, describe, list, delete."""

from __future__ import annotations

from shipway.domain.clock import Clock
from shipway.domain.errors import NotFound, ValidationError
from shipway.domain.listing import ListInput
from shipway.domain.model import (
    ContainerMode,
    CreateModelInput,
    CreateModelOutput,
    Model,
    ModelSummary,
)
from shipway.domain.names import Account
from shipway.serving.runtime import resolve_runtime
from shipway.store.artifact_use import release_unused
from shipway.store.artifacts import ArtifactStore
from shipway.store.metadata import MetadataStore

__all__ = ["ModelService"]

KIND = "model"


class ModelService:
    def __init__(
        self, store: MetadataStore, artifacts: ArtifactStore, account: Account, clock: Clock
    ) -> None:
        self._store = store
        self._artifacts = artifacts
        self._account = account
        self._clock = clock

    def arn(self, name: str) -> str:
        return self._account.arn(KIND, name)

    def create_model(self, request: CreateModelInput) -> CreateModelOutput:
        containers = request.all_containers()
        if len(containers) > 1:
            raise ValidationError(
                "Models with several Containers (serial or direct pipelines) are not supported "
                "yet; use PrimaryContainer."
            )
        for container in containers:
            if container.mode is ContainerMode.MULTI_MODEL:
                raise ValidationError("Mode MultiModel is not supported yet; use SingleModel.")
            resolve_runtime(container.image)
            if container.model_data_url is None:
                if container.model_data_source is not None:
                    raise ValidationError(
                        "ModelDataSource is not supported yet; give the artifact as ModelDataUrl."
                    )
                raise ValidationError("The container needs a ModelDataUrl: where its model is.")
            self._artifacts.check(container.model_data_url)
        arn = self.arn(request.model_name)
        model = Model(**request.model_dump(), model_arn=arn, creation_time=self._clock.now())
        self._store.models.add(model, KIND, arn)
        return CreateModelOutput(model_arn=arn)

    def describe_model(self, name: str) -> Model:
        model = self._store.models.get(name)
        if model is None:
            raise NotFound(KIND, name, self.arn(name))
        return model

    def list_models(self, query: ListInput) -> tuple[list[ModelSummary], str | None]:
        models, token = self._store.models.page(query)
        return [
            ModelSummary(
                model_name=m.model_name, model_arn=m.model_arn, creation_time=m.creation_time
            )
            for m in models
        ], token

    def delete_model(self, name: str) -> None:
        """Delete the model, even while endpoints run it (as SageMaker does): each endpoint
        runs its own copy (``Endpoint.models``), which also keeps the model's cached artifact
        until the endpoint has gone. The name can be used again at once."""
        model = self.describe_model(name)
        self._store.models.remove(name)
        release_unused(self._store, self._artifacts, [model])
