"""boto3's own ``cloudwatch`` client, unchanged, against a real ``shipway server``: alarms,
metrics, errors, the three wire protocols botocore may speak, SigV4, the AWS CLI, and an alarm
on a real endpoint whose model fails.

botocore picks CloudWatch's protocol by version: JSON 1.0 today, Smithy RPC v2 CBOR when it
prefers that, awsquery before either existed. The client of each protocol is real boto3 with
CloudWatch's real service model, told to speak that protocol (as that botocore would).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import cbor2
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from typer.testing import CliRunner, Result

from shipway.cli.main import app as cli
from tests.fixtures.server import ShipwayServer, module_server, start_secured_server
from tests.integration.deploy import deploy

REGION = "us-east-1"
ARN = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:"
PROTOCOLS = ["default", "smithy-rpc-v2-cbor", "json", "query"]
FORM = "application/x-www-form-urlencoded; charset=utf-8"
NO_RETRIES = Config(retries={"max_attempts": 1})


server = module_server("cloudwatch")


def cloudwatch_client(
    url: str,
    protocol: str,
    models: Path,
    *,
    akid: str = "AKIDEXAMPLE",
    secret: str = "not-checked-when-auth-is-off",
) -> Any:
    """boto3's cloudwatch client speaking ``protocol`` ("default": the one botocore picks)."""
    session = botocore.session.get_session()
    if protocol != "default":
        model = copy.deepcopy(
            botocore.loaders.Loader().load_service_model("cloudwatch", "service-2")
        )
        model["metadata"]["protocols"] = [protocol]
        model["metadata"]["protocol"] = protocol
        folder = models / protocol / "cloudwatch" / model["metadata"]["apiVersion"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "service-2.json").write_text(json.dumps(model))
        session.get_component("data_loader").search_paths.insert(0, str(models / protocol))
    client = boto3.Session(botocore_session=session).client(
        "cloudwatch",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        config=NO_RETRIES,
    )
    if protocol != "default":
        assert client.meta.service_model.resolved_protocol == protocol
    return client


@pytest.fixture(scope="module", params=PROTOCOLS)
def cloudwatch(
    request: pytest.FixtureRequest, server: ShipwayServer, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    client = cloudwatch_client(server.url, request.param, tmp_path_factory.mktemp("models"))
    _PROTOCOL_OF[id(client)] = request.param
    return client


_PROTOCOL_OF: dict[int, str] = {}


def unique(cloudwatch: Any, name: str) -> str:
    """A name of this test's own, apart from the other protocols' runs on the same server."""
    return f"{name}-{_PROTOCOL_OF[id(cloudwatch)]}"


def alarm_fields(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "AlarmName": name,
        "AlarmDescription": "5XX errors of the orders endpoint",
        "MetricName": "Invocation5XXErrors",
        "Namespace": "AWS/SageMaker",
        "Statistic": "Sum",
        "Dimensions": [
            {"Name": "EndpointName", "Value": "orders"},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ],
        "Period": 60,
        "EvaluationPeriods": 3,
        "DatapointsToAlarm": 2,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:oncall"],
        # no data comes: the evaluator keeps whatever state a test sets
        "TreatMissingData": "ignore",
        **fields,
    }


def test_alarm_round_trip(cloudwatch: Any) -> None:
    name = unique(cloudwatch, "orders-5xx")
    started = datetime.now(UTC) - timedelta(seconds=1)
    cloudwatch.put_metric_alarm(**alarm_fields(name), Tags=[{"Key": "team", "Value": "ml"}])

    [alarm] = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    assert alarm["AlarmArn"] == ARN + name
    assert alarm["StateValue"] == "INSUFFICIENT_DATA"
    assert alarm["StateReason"] == "Unchecked: Initial alarm creation"
    assert alarm["AlarmConfigurationUpdatedTimestamp"] >= started
    assert alarm["ActionsEnabled"] is True
    assert alarm["AlarmActions"] == ["arn:aws:sns:us-east-1:123456789012:oncall"]
    assert alarm["OKActions"] == []
    for key, value in alarm_fields(name).items():
        assert alarm[key] == value, key
    assert cloudwatch.list_tags_for_resource(ResourceARN=ARN + name)["Tags"] == [
        {"Key": "team", "Value": "ml"}
    ]

    cloudwatch.set_alarm_state(
        AlarmName=name,
        StateValue="ALARM",
        StateReason="testing the rollback",
        StateReasonData=json.dumps({"by": "hand"}),
    )
    in_alarm = cloudwatch.describe_alarms(AlarmNamePrefix=name, StateValue="ALARM")
    assert [a["AlarmName"] for a in in_alarm["MetricAlarms"]] == [name]
    assert in_alarm["MetricAlarms"][0]["StateReason"] == "testing the rollback"
    assert in_alarm["CompositeAlarms"] == []

    history = cloudwatch.describe_alarm_history(AlarmName=name)["AlarmHistoryItems"]
    summaries = [h["HistorySummary"] for h in history]
    assert summaries[-1] == f'Alarm "{name}" created'
    assert any(s.endswith("to ALARM") for s in summaries)
    assert all(h["AlarmType"] == "MetricAlarm" for h in history)
    assert isinstance(history[0]["Timestamp"], datetime)
    updates = cloudwatch.describe_alarm_history(
        AlarmName=name, HistoryItemType="ConfigurationUpdate", ScanBy="TimestampAscending"
    )["AlarmHistoryItems"]
    assert json.loads(updates[0]["HistoryData"])["createdAlarm"]["alarmName"] == name

    for_metric = cloudwatch.describe_alarms_for_metric(
        MetricName="Invocation5XXErrors", Namespace="AWS/SageMaker", Statistic="Sum", Period=60
    )["MetricAlarms"]
    assert name in [a["AlarmName"] for a in for_metric]

    cloudwatch.disable_alarm_actions(AlarmNames=[name])
    assert (
        cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["ActionsEnabled"] is False
    )
    cloudwatch.enable_alarm_actions(AlarmNames=[name])

    # replacing keeps the state
    cloudwatch.put_metric_alarm(**alarm_fields(name, Threshold=1000.0))
    [replaced] = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    assert replaced["Threshold"] == 1000.0

    cloudwatch.delete_alarms(AlarmNames=[name])
    assert cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"] == []
    assert cloudwatch.describe_alarm_history(AlarmName=name)["AlarmHistoryItems"] == []


def test_describe_alarms_pages_with_boto3s_paginator(cloudwatch: Any) -> None:
    prefix = unique(cloudwatch, "paged")
    names = [f"{prefix}-{i:02d}" for i in range(7)]
    for name in names:
        cloudwatch.put_metric_alarm(**alarm_fields(name))
    paginator = cloudwatch.get_paginator("describe_alarms")
    pages = list(paginator.paginate(AlarmNamePrefix=prefix, PaginationConfig={"PageSize": 3}))
    assert [len(p["MetricAlarms"]) for p in pages] == [3, 3, 1]
    assert [a["AlarmName"] for p in pages for a in p["MetricAlarms"]] == names
    cloudwatch.delete_alarms(AlarmNames=names)


def raised(call: Callable[[], Any], exception: type[Exception], status: int = 400) -> ClientError:
    with pytest.raises(exception) as caught:
        call()
    error = caught.value
    assert isinstance(error, ClientError)
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status
    return error


def test_errors_are_boto3s_modelled_exceptions(cloudwatch: Any) -> None:
    name = unique(cloudwatch, "kept")
    cloudwatch.put_metric_alarm(**alarm_fields(name))
    exceptions = cloudwatch.exceptions

    missing = raised(
        lambda: cloudwatch.delete_alarms(AlarmNames=[name, "no-such-alarm"]),
        exceptions.ResourceNotFound,
        404,
    )
    assert missing.response["Error"]["Code"] == "ResourceNotFound"
    assert "no-such-alarm" in missing.response["Error"]["Message"]
    assert cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]  # nothing deleted
    raised(
        lambda: cloudwatch.set_alarm_state(AlarmName="nope", StateValue="OK", StateReason="x"),
        exceptions.ResourceNotFound,
        404,
    )
    bad_json = raised(
        lambda: cloudwatch.set_alarm_state(
            AlarmName=name, StateValue="OK", StateReason="x", StateReasonData="{oops"
        ),
        exceptions.InvalidFormatFault,
    )
    assert bad_json.response["Error"]["Code"] == "InvalidFormat"

    period = raised(
        lambda: cloudwatch.put_metric_alarm(**alarm_fields(name, Period=45)),
        exceptions.ClientError,
    )
    assert period.response["Error"]["Code"] == "ValidationError"
    assert "Period (45) must be 10, 20, 30 or a multiple of 60." in str(period)
    math = raised(
        lambda: cloudwatch.put_metric_alarm(
            AlarmName=name,
            EvaluationPeriods=1,
            Threshold=1.0,
            ComparisonOperator="GreaterThanThreshold",
            Metrics=[{"Id": "e1", "Expression": "SUM(METRICS())"}],
        ),
        exceptions.ClientError,
    )
    assert "Metrics (metric math) is not supported" in str(math)

    namespace = raised(
        lambda: cloudwatch.put_metric_data(
            Namespace="AWS/SageMaker", MetricData=[{"MetricName": "Invocations", "Value": 1.0}]
        ),
        exceptions.InvalidParameterValueException,
    )
    assert namespace.response["Error"]["Code"] == "InvalidParameterValue"
    now = datetime.now(UTC)
    raised(
        lambda: cloudwatch.get_metric_statistics(
            Namespace="Shop", MetricName="m", StartTime=now - timedelta(hours=1), EndTime=now,
            Period=60,
        ),
        exceptions.MissingRequiredParameterException,
    )  # fmt: skip
    raised(
        lambda: cloudwatch.get_metric_statistics(
            Namespace="Shop", MetricName="m", StartTime=now - timedelta(days=3), EndTime=now,
            Period=60, Statistics=["Sum"],
        ),
        exceptions.InvalidParameterCombinationException,
    )  # fmt: skip
    raised(lambda: cloudwatch.describe_alarms(NextToken="not-a-token"), exceptions.InvalidNextToken)
    expression = raised(
        lambda: cloudwatch.get_metric_data(
            MetricDataQueries=[{"Id": "e1", "Expression": "SUM(METRICS())"}],
            StartTime=now - timedelta(hours=1),
            EndTime=now,
        ),
        exceptions.ClientError,
    )
    assert expression.response["Error"]["Code"] == "ValidationError"
    assert "metric math expressions are not supported" in str(expression)
    cloudwatch.delete_alarms(AlarmNames=[name])


def test_put_metric_data_then_read_it_back(cloudwatch: Any) -> None:
    namespace = unique(cloudwatch, "Shop")
    dimensions = [{"Name": "Service", "Value": "checkout"}]
    now = datetime.now(UTC).replace(microsecond=0)
    minute = now.replace(second=0) - timedelta(minutes=2)
    cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {"MetricName": "Latency", "Dimensions": dimensions, "Timestamp": minute,
             "Value": 10.0, "Unit": "Milliseconds"},
            {"MetricName": "Latency", "Dimensions": dimensions,
             "Timestamp": minute + timedelta(seconds=20), "Values": [20.0, 30.0],
             "Counts": [2.0, 1.0], "Unit": "Milliseconds"},
            {"MetricName": "Latency", "Dimensions": dimensions,
             "Timestamp": minute + timedelta(seconds=70),
             "StatisticValues": {"SampleCount": 2.0, "Sum": 8.0, "Minimum": 3.0, "Maximum": 5.0},
             "Unit": "Milliseconds"},
        ],
    )  # fmt: skip
    statistics = cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName="Latency",
        Dimensions=dimensions,
        StartTime=minute - timedelta(minutes=1),
        EndTime=now + timedelta(minutes=1),
        Period=60,
        Statistics=["Sum", "SampleCount", "Average", "Maximum"],
        ExtendedStatistics=["p50"],
    )
    assert statistics["Label"] == "Latency"
    points = sorted(statistics["Datapoints"], key=lambda p: p["Timestamp"])
    assert [p["Timestamp"] for p in points] == [minute, minute + timedelta(minutes=1)]
    first, second = points
    assert (first["Sum"], first["SampleCount"], first["Average"]) == (80.0, 4.0, 20.0)
    assert first["Maximum"] == 30.0
    assert first["Unit"] == "Milliseconds"
    assert first["ExtendedStatistics"]["p50"] == pytest.approx(20.0, rel=0.03)
    assert (second["Sum"], second["SampleCount"]) == (8.0, 2.0)

    data = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "latency",
                "MetricStat": {
                    "Metric": {
                        "Namespace": namespace,
                        "MetricName": "Latency",
                        "Dimensions": dimensions,
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
                "Label": "checkout latency",
            }
        ],
        StartTime=minute - timedelta(minutes=1),
        EndTime=now + timedelta(minutes=1),
    )
    [result] = data["MetricDataResults"]
    assert result["Id"] == "latency"
    assert result["Label"] == "checkout latency"
    assert result["StatusCode"] == "Complete"
    assert result["Values"] == [8.0, 80.0]  # newest first
    assert result["Timestamps"] == [minute + timedelta(minutes=1), minute]

    listed = cloudwatch.list_metrics(Namespace=namespace)["Metrics"]
    assert listed == [{"Namespace": namespace, "MetricName": "Latency", "Dimensions": dimensions}]


def test_an_alarm_on_put_metric_data(server: ShipwayServer, tmp_path: Path) -> None:
    """The evaluator moves an alarm on the caller's own metric (10-second periods)."""
    cloudwatch = cloudwatch_client(server.url, "default", tmp_path)
    cloudwatch.put_metric_alarm(
        AlarmName="queue-depth",
        MetricName="QueueDepth",
        Namespace="Workers",
        Statistic="Maximum",
        Period=10,
        EvaluationPeriods=1,
        Threshold=100.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    while time.time() % 10 > 7:  # the period the datapoint is in stays the last one a while
        time.sleep(0.2)
    in_the_last_period = datetime.now(UTC) - timedelta(seconds=10)
    cloudwatch.put_metric_data(
        Namespace="Workers",
        MetricData=[{"MetricName": "QueueDepth", "Timestamp": in_the_last_period, "Value": 250.0}],
    )
    alarm = wait_for_state(cloudwatch, "queue-depth", "ALARM", timeout=3)
    assert "was greater than the threshold (100.0)" in alarm["StateReason"]
    cloudwatch.delete_alarms(AlarmNames=["queue-depth"])


def wait_for_state(cloudwatch: Any, name: str, state: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        [alarm] = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        if alarm["StateValue"] == state:
            return dict(alarm)
        assert time.monotonic() < deadline, f"{name} is still {alarm['StateValue']}: {alarm}"
        time.sleep(0.2)


FAILING_INFERENCE = """
def model_fn(model_dir):
    return None


def transform_fn(model, body, content_type, accept):
    if body.strip() == "fail":  # text/plain arrives as str
        raise RuntimeError("failing on purpose")
    return body, "text/plain"
"""


@pytest.mark.slow
def test_an_endpoint_whose_model_fails_sets_off_its_alarm(
    server: ShipwayServer, tmp_path: Path
) -> None:
    folder = tmp_path / "flaky"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "inference.py").write_text(FAILING_INFERENCE)
    deploy(server, "flaky", str(folder), "python")
    cloudwatch = cloudwatch_client(server.url, "default", tmp_path / "models")
    dimensions = [
        {"Name": "EndpointName", "Value": "flaky"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    common = {
        "MetricName": "Invocation5XXErrors",
        "Namespace": "AWS/SageMaker",
        "Dimensions": dimensions,
        "Statistic": "Sum",
        "Period": 10,
        "EvaluationPeriods": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
    }
    # as the deployment-guardrails examples set them up: quiet means fine...
    cloudwatch.put_metric_alarm(AlarmName="flaky-5xx", TreatMissingData="notBreaching", **common)
    # ...or, by default, unknown
    cloudwatch.put_metric_alarm(AlarmName="flaky-5xx-strict", **common)
    wait_for_state(cloudwatch, "flaky-5xx", "OK", timeout=15)

    runtime = boto3.client(
        "sagemaker-runtime",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="x",
        config=NO_RETRIES,
    )
    answer = runtime.invoke_endpoint(EndpointName="flaky", Body=b"fine", ContentType="text/plain")
    assert answer["Body"].read() == b"fine"
    while time.time() % 10 > 8:  # not at the very end of a period: the errors land in one
        time.sleep(0.2)
    failed_at = time.monotonic()
    for _ in range(3):
        with pytest.raises(runtime.exceptions.ModelError):
            runtime.invoke_endpoint(EndpointName="flaky", Body=b"fail", ContentType="text/plain")
    alarm = wait_for_state(cloudwatch, "flaky-5xx", "ALARM", timeout=15)
    assert time.monotonic() - failed_at < 10 + 3  # the period ends, then one evaluation
    assert alarm["StateReason"].startswith("Threshold Crossed: 1 datapoint [3.0 (")
    reason_data = json.loads(alarm["StateReasonData"])
    assert reason_data["recentDatapoints"] == [3.0]
    assert reason_data["period"] == 10
    wait_for_state(cloudwatch, "flaky-5xx-strict", "ALARM", timeout=5)

    statistics = cloudwatch.get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Dimensions=dimensions,
        StartTime=datetime.now(UTC) - timedelta(minutes=5),
        EndTime=datetime.now(UTC) + timedelta(minutes=1),
        Period=300,
        Statistics=["Sum", "SampleCount"],
    )
    # the periods are aligned to multiples of 300 s: the four requests may straddle one
    points = statistics["Datapoints"]
    assert len(points) in (1, 2), points
    assert sum(p["Sum"] for p in points) == 3.0
    assert sum(p["SampleCount"] for p in points) == 4.0
    assert {p["Unit"] for p in points} == {"Count"}

    # no more errors: the quiet period is fine for one alarm, unknown for the other
    wait_for_state(cloudwatch, "flaky-5xx", "OK", timeout=15)
    wait_for_state(cloudwatch, "flaky-5xx-strict", "INSUFFICIENT_DATA", timeout=5)
    history = cloudwatch.describe_alarm_history(
        AlarmName="flaky-5xx", HistoryItemType="StateUpdate", ScanBy="TimestampAscending"
    )["AlarmHistoryItems"]
    assert [h["HistorySummary"] for h in history] == [
        "Alarm updated from INSUFFICIENT_DATA to OK",
        "Alarm updated from OK to ALARM",
        "Alarm updated from ALARM to OK",
    ]
    cloudwatch.delete_alarms(AlarmNames=["flaky-5xx", "flaky-5xx-strict"])


# --- SigV4 with access keys: the "monitoring" scope ---------------------------------------------

AKID = "AKIDSHIPWAYMONITOR"
SECRET = "monitoring/secret+Key0123456789abcdefgh"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShipwayServer]:
    root = tmp_path_factory.mktemp("cloudwatch-auth")
    running = start_secured_server(root, AKID, SECRET)
    yield running
    running.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sigv4_signed_for_monitoring_is_accepted_and_a_wrong_secret_is_refused(
    secured: ShipwayServer, protocol: str, tmp_path: Path
) -> None:
    signed = cloudwatch_client(secured.url, protocol, tmp_path, akid=AKID, secret=SECRET)
    assert signed.meta.service_model.signing_name == "monitoring"
    name = f"signed-{protocol}"
    signed.put_metric_alarm(**alarm_fields(name))
    assert signed.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["AlarmName"] == name

    forged = cloudwatch_client(secured.url, protocol, tmp_path, akid=AKID, secret="wrong")
    with pytest.raises(ClientError) as refused:
        forged.delete_alarms(AlarmNames=[name])
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert signed.describe_alarms(AlarmNames=[name])["MetricAlarms"]  # still there
    signed.delete_alarms(AlarmNames=[name])


# --- the AWS CLI, the REST API and the shipway CLI ----------------------------------------------


def test_the_aws_cli(server: ShipwayServer) -> None:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": REGION,
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
    }

    def aws(*args: str) -> str:
        done = subprocess.run(
            ["aws", "cloudwatch", *args, "--endpoint-url", server.url],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    aws(
        "put-metric-alarm", "--alarm-name", "cli-alarm", "--metric-name", "Invocation5XXErrors",
        "--namespace", "AWS/SageMaker", "--statistic", "Sum", "--period", "60",
        "--evaluation-periods", "1", "--threshold", "1",
        "--comparison-operator", "GreaterThanOrEqualToThreshold",
        "--dimensions", "Name=EndpointName,Value=orders",
    )  # fmt: skip
    described = json.loads(aws("describe-alarms", "--alarm-names", "cli-alarm"))
    assert described["MetricAlarms"][0]["Dimensions"] == [
        {"Name": "EndpointName", "Value": "orders"}
    ]
    aws("delete-alarms", "--alarm-names", "cli-alarm")


def test_the_rest_api(server: ShipwayServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as rest:
        created = rest.post("/api/alarms", json=alarm_fields("rest-alarm"))
        assert created.status_code == 200, created.text
        assert created.json()["StateValue"] == "INSUFFICIENT_DATA"
        assert rest.get("/api/alarms/rest-alarm").json()["AlarmArn"] == ARN + "rest-alarm"
        listed = rest.get("/api/alarms", params={"prefix": "rest-"}).json()
        assert [a["AlarmName"] for a in listed["MetricAlarms"]] == ["rest-alarm"]
        state = rest.put(
            "/api/alarms/rest-alarm/state", json={"StateValue": "ALARM", "StateReason": "why"}
        )
        assert state.json()["StateValue"] == "ALARM"
        history = rest.get("/api/alarms/rest-alarm/history").json()["AlarmHistoryItems"]
        assert history[0]["HistorySummary"].endswith("to ALARM")
        bad = rest.post("/api/alarms", json=alarm_fields("rest-alarm", Period=7))
        assert bad.status_code == 400
        assert bad.json()["code"] == "ValidationException"
        assert rest.delete("/api/alarms/rest-alarm").status_code == 204
        gone = rest.get("/api/alarms/rest-alarm")
        assert gone.status_code == 404
        assert gone.json() == {"code": "ResourceNotFound", "message": "Alarm rest-alarm not found"}
        assert rest.get("/api/alarms/rest-alarm/history").status_code == 404


def test_the_shipway_cli(server: ShipwayServer) -> None:
    runner = CliRunner()

    def shipway(*args: str, code: int = 0) -> Result:
        result = runner.invoke(cli, ["--url", server.url, "alarms", *args])
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        assert "Traceback" not in result.output
        return result

    put = shipway(
        "put", "cli-5xx", "--metric", "Invocation5XXErrors", "--endpoint", "orders",
        "--variant", "AllTraffic", "--statistic", "Sum", "--period", "10",
        "--evaluation-periods", "1", "--threshold", "1",
        "--comparison", "GreaterThanOrEqualToThreshold", "--treat-missing-data", "ignore",
    )  # fmt: skip
    assert "Alarm cli-5xx is INSUFFICIENT_DATA" in put.stdout
    assert "Sum >= 1, 1 of 1 x 10 s" in put.stdout
    shipway("put", "cli-p99", "--metric", "ModelLatency", "--endpoint", "orders",
            "--statistic", "p99", "--threshold", "500000", "--comparison", ">",
            "--treat-missing-data", "ignore")  # fmt: skip

    listed = shipway("list", "--prefix", "cli-")
    assert "cli-5xx" in listed.stdout
    assert "cli-p99" in listed.stdout
    as_json = json.loads(shipway("list", "--prefix", "cli-", "--json").stdout)
    assert [a["AlarmName"] for a in as_json["MetricAlarms"]] == ["cli-5xx", "cli-p99"]
    assert as_json["MetricAlarms"][1]["ExtendedStatistic"] == "p99"
    assert as_json["MetricAlarms"][0]["Dimensions"] == [
        {"Name": "EndpointName", "Value": "orders"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]

    described = shipway("describe", "cli-5xx")
    assert "AWS/SageMaker Invocation5XXErrors (EndpointName=orders, VariantName=AllTraffic)" in (
        described.stdout
    )
    assert ARN + "cli-5xx" in described.stdout
    assert "p99 > 500000, 1 of 1 x 60 s" in shipway("describe", "cli-p99").stdout

    shipway("set-state", "cli-5xx", "--state", "alarm", "--reason", "drill")
    assert "ALARM" in shipway("list", "--state", "ALARM", "--prefix", "cli-").stdout
    history = shipway("history", "cli-5xx")
    assert "StateUpdate" in history.stdout
    assert 'Alarm "cli-5xx" created' in history.stdout
    updates = json.loads(shipway("history", "cli-5xx", "--type", "StateUpdate", "--json").stdout)
    assert [h["HistorySummary"] for h in updates["AlarmHistoryItems"]] == [
        "Alarm updated from INSUFFICIENT_DATA to ALARM"
    ]

    bad = shipway("put", "cli-bad", "--metric", "m", "--threshold", "1", "--period", "7", code=1)
    assert bad.stderr.startswith("Error: ValidationException: 1 validation error detected")
    assert "Period (7) must be 10, 20, 30 or a multiple of 60." in bad.stderr
    bad_sign = shipway("put", "cli-bad", "--metric", "m", "--threshold", "1", "--comparison",
                       "=~", code=2)  # fmt: skip
    assert "is not one of" in bad_sign.output

    shipway("delete", "cli-5xx", "cli-p99")
    assert "No alarms." in shipway("list", "--prefix", "cli-").stdout
    missing = shipway("describe", "cli-5xx", code=1)
    assert missing.stderr.strip() == "Error: ResourceNotFound: Alarm cli-5xx not found"


def test_unknown_operations_and_unreadable_bodies(server: ShipwayServer) -> None:
    cbor_path = "/service/GraniteServiceVersion20100801/operation/"
    cbor_headers = {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"}
    json_headers = {"Content-Type": "application/x-amz-json-1.0"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        unknown = client.post(cbor_path + "PutDashboard", content=b"\xa0", headers=cbor_headers)
        assert unknown.status_code == 404
        assert cbor2.loads(unknown.content)["__type"].endswith("UnknownOperationException")
        garbage = client.post(
            cbor_path + "DescribeAlarms", content=b"\xff\x00", headers=cbor_headers
        )
        assert garbage.status_code == 400
        assert cbor2.loads(garbage.content)["__type"].endswith("SerializationException")
        not_a_map = client.post(
            cbor_path + "DescribeAlarms", content=cbor2.dumps([1]), headers=cbor_headers
        )
        assert not_a_map.status_code == 400
        unknown_json = client.post(
            "/",
            content=b"{}",
            headers={**json_headers, "X-Amz-Target": "GraniteServiceVersion20100801.Nope"},
        )
        assert unknown_json.status_code == 400
        assert unknown_json.json()["__type"].endswith("UnknownOperationException")
        broken_json = client.post(
            "/",
            content=b"{",
            headers={**json_headers, "X-Amz-Target": "GraniteServiceVersion20100801.ListMetrics"},
        )
        assert broken_json.status_code == 400
        assert "not JSON" in broken_json.json()["message"]
        no_action = client.post("/", content=b"Version=2010-08-01", headers={"Content-Type": FORM})
        assert no_action.status_code == 400
        assert b"<Code>UnknownOperationException</Code>" in no_action.content
