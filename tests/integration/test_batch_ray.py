"""The batch flows of ``test_batch.py`` again, with the jobs on a Ray cluster on loopback (a head
and a worker node): the ``ray`` engine gives the same outputs as the local one.

One test runs them all, so that one cluster serves them (a cluster per test worker would not fit
two cores).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import models
from tests.fixtures.server import start_server
from tests.integration import test_batch as flows
from tests.integration.rollouts import ROLE, aws

model = flows.model  # the same trained model and rows, as fixtures of this module
rows = flows.rows


@pytest.mark.slow(seconds=70)
def test_the_batch_flows_on_a_ray_cluster(
    ray_cluster: str, tmp_path: Path, model: models.Trained, rows: np.ndarray
) -> None:
    server = start_server(tmp_path / "home", env={"SHIPWAY_RAY_ADDRESS": ray_cluster})
    try:
        sagemaker = aws(server.url, "sagemaker")
        sagemaker.create_model(
            ModelName="scorer",
            PrimaryContainer={"Image": model.image, "ModelDataUrl": str(model.folder)},
            ExecutionRoleArn=ROLE,
        )

        def folder(name: str) -> Path:
            (tmp_path / name).mkdir()
            return tmp_path / name

        flows.test_csv_lines_in_multi_record_requests_over_several_instances(
            sagemaker, model, rows, folder("multi")
        )
        flows.test_progress_and_list(server, sagemaker, folder("progress"), rows)
        flows.test_json_lines_one_record_per_request(sagemaker, model, rows, folder("jsonl"))
        flows.test_whole_objects_and_a_gzipped_manifest_source(
            sagemaker, model, rows, folder("manifest")
        )
        flows.test_join_with_input_and_output_filters(sagemaker, model, rows, folder("join"))
        flows.test_a_failing_record_fails_its_object_and_the_job_not_the_others(
            sagemaker, model, rows, folder("failing")
        )
        flows.test_what_only_running_finds_fails_the_job_with_a_reason(
            sagemaker, folder("running"), rows
        )
    finally:
        server.stop()
