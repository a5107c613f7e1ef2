"""What a zygote imports, and the request that travels to the instance it forks."""

from __future__ import annotations

from shipway.compute.zygote import PRELOADS, SERVING_STACK, ForkRequest, runtime_modules
from shipway.serving.images import SAGEMAKER_REPOSITORIES
from shipway.serving.runtime import RUNTIMES


def test_a_fork_request_travels_as_json() -> None:
    request = ForkRequest(
        policy='{"read":["/usr"]}',
        serving=("--runtime", "sklearn", "--threads", "2"),
        environment={"HOME": "/s", "SECRET": "x=y"},
        cwd="/s",
        threads=2,
    )
    assert ForkRequest.from_json(request.to_json()) == request


def test_every_runtime_that_ships_with_shipway_has_its_libraries_listed() -> None:
    """The named runtimes and those of SageMaker's framework images."""
    assert set(PRELOADS) == {*RUNTIMES.values(), *SAGEMAKER_REPOSITORIES.values()}


def test_a_zygote_imports_a_shipped_runtime_with_its_libraries_and_no_users_runtime() -> None:
    modules = runtime_modules(RUNTIMES["sklearn"])
    assert modules[: len(SERVING_STACK)] == SERVING_STACK
    assert "shipway.serving.runtimes.sklearn" in modules
    assert "sklearn.pipeline" in modules
    # a user's runtime class is imported by its instance, inside the sandbox
    assert runtime_modules("mypackage.runtime:MyRuntime") == SERVING_STACK
    # onnxruntime starts a thread when imported: the zygote would not be forkable
    assert not [m for m in runtime_modules(RUNTIMES["onnx"]) if m.startswith("onnxruntime")]
