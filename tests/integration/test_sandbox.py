"""Model code is sandboxed: the attacks of issue 9, made by a model deployed with CreateModel
rights on a server with authentication on, each failing to do harm.

A ``shipway server`` process (auth on, a 3 s invocation timeout, a small instance type of
1 vCPU and 0.5 GiB) serves probe models whose ``inference.py`` tries what an attacker would:
read the access keys file, the database and the server's environment, write outside its scratch
folder, reach loopback services, leak memory, hog the CPU, hang.

Every test runs twice: against a server that forks its instances from the ``python`` runtime's
zygote (the default; a first endpoint starts the zygote before the probes), and against one that
spawns them (``SHIPWAY_INSTANCE_START=spawn``).
"""

from __future__ import annotations

import json
import os
import socket
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from shipway.api.auth import bearer_token
from shipway.serving.runtime import resolve_runtime
from tests.fixtures.hostile import LEAKY
from tests.fixtures.server import ShipwayServer, start_server, write_access_keys

AKID = "AKIDSANDBOXTEST1"
SECRET = "sandbox/secret+Key0123456789abcdefghij"
TIMEOUT = 3.0
SMALL = "ml.test.small"
PROBE = textwrap.dedent(
    """
    import json, os, socket

    def model_fn(model_dir):
        return model_dir

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, model_dir):
        results = {}
        for path in data.get("read", []):
            try:
                with open(path, "rb") as file:
                    results[path] = "read " + repr(file.read(64))
            except OSError as exc:
                results[path] = type(exc).__name__
        for path in data.get("list", []):
            try:
                results[path] = "listed " + repr(sorted(os.listdir(path))[:5])
            except OSError as exc:
                results[path] = type(exc).__name__
        for path in data.get("write", []):
            try:
                with open(path, "w") as file:
                    file.write("written by the model")
                results[path] = "written"
            except OSError as exc:
                results[path] = type(exc).__name__
        for host, port in data.get("connect", []):
            sock = socket.socket()
            sock.settimeout(2)
            try:
                sock.connect((host, port))
                results[f"{host}:{port}"] = "connected"
            except OSError as exc:
                results[f"{host}:{port}"] = type(exc).__name__
            finally:
                sock.close()
        results["env"] = sorted(os.environ)
        results["uid"] = os.getuid()
        results["cwd"] = os.getcwd()
        with open("/proc/self/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        results["CapEff"] = fields["CapEff"].strip()
        results["NoNewPrivs"] = fields["NoNewPrivs"].strip()
        return results

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
    """
)
HOG = textwrap.dedent(
    """
    import json, os, time

    def model_fn(model_dir):
        return None

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, model):
        # three processes spinning for two seconds: 6 CPU-seconds if nothing caps them
        started = time.monotonic()
        children = []
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                end = time.monotonic() + 2.0
                while time.monotonic() < end:
                    pass
                os._exit(0)
            children.append(pid)
        for pid in children:
            os.waitpid(pid, 0)
        wall = time.monotonic() - started
        times = os.times()
        return {"cpu": times.children_user + times.children_system, "wall": wall}

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
    """
)
HUNG = textwrap.dedent(
    """
    import json, time

    def model_fn(model_dir):
        return None

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, model):
        if data == "hang":
            time.sleep(3600)
        if data == "slow":
            time.sleep(3.2)  # past the 3 s timeout, within the 4 s the watchdog allows
        return "ok"

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
    """
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox")


@pytest.fixture(scope="module")
def keys_file(root: Path) -> Path:
    return write_access_keys(root / "keys.json", AKID, SECRET)


@pytest.fixture(scope="module", params=["fork", "spawn"])
def server(request: pytest.FixtureRequest, root: Path, keys_file: Path) -> Iterator[ShipwayServer]:
    """A server starting instances by each method: every probe must be as confined either way."""
    start: str = request.param
    home = root / f"home-{start}"
    home.mkdir()
    small = {"name": SMALL, "vcpus": 1, "memory_gib": 0.5, "price_per_hour": 0.01}
    (home / "instance-types.json").write_text(json.dumps({"instance_types": [small]}))
    running = start_server(
        home,
        env={
            "SHIPWAY_ACCESS_KEYS_FILE": str(keys_file),
            "SHIPWAY_MODEL_TIMEOUT_SECONDS": str(TIMEOUT),
            "SHIPWAY_HEALTH_CHECK_INTERVAL_SECONDS": "0.5",
            "SHIPWAY_INSTANCE_START": start,
        },
    )
    try:
        if start == "fork":
            # the python runtime's zygote: started by a first instance, ready before the probes
            deploy(running, root, "warmup", PROBE, "ml.m5.large")
            runtime = resolve_runtime("python").replace(":", "-")
            zygote_log = home / "logs" / f"zygote-{runtime}.log"
            deadline = time.monotonic() + 60
            while " ready (pid " not in (zygote_log.read_text() if zygote_log.exists() else ""):
                assert time.monotonic() < deadline, running.log()
                time.sleep(0.05)
        yield running
    finally:
        running.stop()


def aws(server: ShipwayServer, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}, read_timeout=30),
    )


def rest(server: ShipwayServer) -> httpx.Client:
    token = bearer_token(AKID, SECRET)
    return httpx.Client(
        base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
    )


def deploy(
    server: ShipwayServer,
    root: Path,
    name: str,
    code: str,
    instance_type: str,
    *,
    forked: bool = False,
) -> None:
    """Deploy a probe; with ``forked``, check that its instance was started as the server
    starts them (forked from a zygote, or spawned)."""
    folder = model_folder(root, server, name)
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "inference.py").write_text(code)
    sagemaker = aws(server, "sagemaker")
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "python", "ModelDataUrl": str(folder)},
        ExecutionRoleArn="arn:aws:iam::123456789012:role/SageMakerRole",
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InstanceType": instance_type,
                "InitialInstanceCount": 1,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 0.5, "MaxAttempts": 120}
    )
    if forked:
        by_fork = server.env["SHIPWAY_INSTANCE_START"] == "fork"
        for instance in instances(server, name):
            log = server.home / "logs" / f"{instance['InstanceId']}.log"
            assert ("; forked from a zygote" in log.read_text()) is by_fork, log.read_text()


def model_folder(root: Path, server: ShipwayServer, name: str) -> Path:
    """Where the probe ``name`` of this server (of its start method) keeps its model."""
    return root / f"model-{name}-{server.env['SHIPWAY_INSTANCE_START']}"


def invoke(server: ShipwayServer, name: str, payload: Any) -> Any:
    answer = aws(server, "sagemaker-runtime").invoke_endpoint(
        EndpointName=name, ContentType="application/json", Body=json.dumps(payload)
    )
    return json.loads(answer["Body"].read())


def instances(server: ShipwayServer, name: str) -> list[dict[str, Any]]:
    """The endpoint's running instances (not the failed one it keeps to say why it went)."""
    with rest(server) as client:
        found: list[dict[str, Any]] = client.get(f"/api/endpoints/{name}/instances").json()[
            "Instances"
        ]
    return [i for i in found if i["Status"] != "Failed"]


def server_pid(server: ShipwayServer) -> int:
    assert server.process is not None
    return server.process.pid


@pytest.fixture(scope="module")
def probe(server: ShipwayServer, root: Path) -> str:
    deploy(server, root, "probe", PROBE, "ml.m5.large", forked=True)
    return "probe"


def test_model_code_cannot_read_the_keys_the_database_or_the_servers_environment(
    server: ShipwayServer, root: Path, keys_file: Path, probe: str
) -> None:
    own = model_folder(root, server, "probe") / "code" / "inference.py"
    other = root / "elsewhere.txt"
    other.write_text("a file of the server's user, outside the model folder")
    secrets = [
        str(keys_file),
        str(server.home / "shipway.db"),
        f"/proc/{server_pid(server)}/environ",
        f"/proc/{server_pid(server)}/cmdline",
        "/proc/1/environ",
        "/root/.bash_history",
        "/etc/shadow",
        str(other),
    ]
    seen = invoke(
        server, probe, {"read": [str(own), *secrets], "list": [str(server.home), "/tmp", "/"]}
    )
    assert seen[str(own)].startswith("read "), seen  # its own model: yes
    for path in secrets:
        assert seen[path] in ("PermissionError", "FileNotFoundError"), (path, seen[path])
    for folder in (str(server.home), "/tmp", "/"):
        # a root server's instances do not even see the folders above their own
        assert seen[folder] in ("PermissionError", "FileNotFoundError"), (folder, seen[folder])
    assert SECRET not in json.dumps(seen)


def test_model_code_has_a_clean_environment_and_no_privileges(
    server: ShipwayServer, probe: str
) -> None:
    seen = invoke(server, probe, {})
    assert not [name for name in seen["env"] if name.startswith(("SHIPWAY", "AWS_"))], seen["env"]
    assert seen["CapEff"] == "0000000000000000"
    if os.geteuid() == 0:  # a root server runs each instance as a user of its own
        assert seen["uid"] >= 1_900_000_000, seen["uid"]
    assert seen["NoNewPrivs"] == "1"
    assert seen["cwd"].startswith(str(server.home / "run")), seen["cwd"]


def test_model_code_writes_only_in_its_scratch_folder(
    server: ShipwayServer, root: Path, probe: str
) -> None:
    outside = [
        str(model_folder(root, server, "probe") / "code" / "planted.py"),
        str(root / "planted.txt"),
        str(server.home / "planted.txt"),
        f"/tmp/shipway-sandbox-{uuid.uuid4().hex}.txt",
        f"/root/shipway-sandbox-{uuid.uuid4().hex}.txt",
    ]
    shm = f"/dev/shm/shipway-sandbox-{uuid.uuid4().hex}"
    seen = invoke(server, probe, {"write": [*outside, "scratch.txt", shm]})
    for path in outside:
        assert seen[path] == "PermissionError", (path, seen[path])
        assert not Path(path).exists()
    assert seen["scratch.txt"] == "written"
    assert seen[shm] == "written"
    assert not Path(shm).exists()  # its /dev/shm is its own


def test_model_code_reaches_no_service_on_loopback(server: ShipwayServer, probe: str) -> None:
    targets = [["127.0.0.1", server.port], ["127.0.0.1", 5432], ["127.0.0.1", 6379]]
    seen = invoke(server, probe, {"connect": targets})
    for host, port in targets:
        assert seen[f"{host}:{port}"] == "OSError", seen  # "Network is unreachable"


def test_instances_are_reachable_only_through_the_main_port(
    server: ShipwayServer, probe: str
) -> None:
    (instance,) = instances(server, probe)
    assert instance["Address"].startswith("unix:")
    path = instance["Address"][len("unix:") :]
    folder = Path(path).parent
    assert folder.stat().st_mode & 0o077 == 0  # only the server's user may enter
    # no TCP port is open on any address by the instance's processes
    listening = _listening_inodes()
    for fd in Path(f"/proc/{instance['Pid']}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            assert int(target[8:-1]) not in listening
    # another local user cannot connect to its socket...
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports by its exit status
        code = 0
        try:
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(path)
            code = 1  # connected: a failure
        except PermissionError:
            code = 0
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # ...and the main port wants a signature
    answer = httpx.post(f"{server.url}/endpoints/{probe}/invocations", json={})
    assert answer.status_code == 403


def _listening_inodes() -> set[int]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as file:
            for line in file.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    inodes.add(int(fields[9]))
    return inodes


def test_a_leaking_model_is_stopped_and_replaced_with_the_reason(
    server: ShipwayServer, root: Path
) -> None:
    deploy(server, root, "leaky", LEAKY, SMALL, forked=True)
    (first,) = instances(server, "leaky")
    failed = None
    for _ in range(12):  # 100 MiB a request on a 0.5 GiB instance: it cannot last
        try:
            invoke(server, "leaky", {})
        except ClientError as exc:
            failed = exc
            break
    assert failed is not None, "the instance kept growing past its memory"
    assert failed.response["Error"]["Code"] == "ModelError"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = instances(server, "leaky")
        if now and now[0]["InstanceId"] != first["InstanceId"] and now[0]["Status"] == "InService":
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the instance was not replaced: {instances(server, 'leaky')}")
    assert invoke(server, "leaky", {}) == 1  # a fresh instance
    described = aws(server, "sagemaker").describe_endpoint(EndpointName="leaky")
    assert described["EndpointStatus"] == "InService"
    with rest(server) as client:  # Shipway's extension of DescribeEndpoint says why
        (variant,) = client.get("/api/endpoints/leaky").json()["ProductionVariants"]
    failure = variant["LastInstanceFailure"]
    assert failure["InstanceId"] == first["InstanceId"]
    assert "ran out of memory" in failure["Reason"]
    assert "0.50 GiB of its instance type ml.test.small" in failure["Reason"]


def test_a_models_processes_get_no_more_cpu_than_its_instance_type(
    server: ShipwayServer, root: Path
) -> None:
    deploy(server, root, "hog", HOG, SMALL, forked=True)
    used = invoke(server, "hog", {})
    # three spinning processes on a 1-vCPU type: at most one CPU's worth of time
    assert used["cpu"] <= 1.15 * used["wall"], used


def test_a_hung_model_is_replaced_within_two_timeouts(server: ShipwayServer, root: Path) -> None:
    deploy(server, root, "hung", HUNG, "ml.m5.large", forked=True)
    assert invoke(server, "hung", "fine") == "ok"
    (first,) = instances(server, "hung")
    started = time.monotonic()
    with pytest.raises(ClientError) as caught:
        invoke(server, "hung", "hang")
    assert caught.value.response["Error"]["Code"] == "ModelError"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert time.monotonic() - started < TIMEOUT + 1.5
    while time.monotonic() - started < 2 * TIMEOUT:
        if first["InstanceId"] not in [i["InstanceId"] for i in instances(server, "hung")]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the hung instance is still there after two timeouts")
    gone = time.monotonic() - started
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            assert invoke(server, "hung", "fine") == "ok"
            break
        except ClientError:
            time.sleep(0.2)
    assert gone <= 2 * TIMEOUT
    with rest(server) as client:
        (variant,) = client.get("/api/endpoints/hung").json()["ProductionVariants"]
    assert "the model is hung" in variant["LastInstanceFailure"]["Reason"]


def test_a_model_that_times_out_three_times_in_a_row_is_replaced(
    server: ShipwayServer, root: Path
) -> None:
    deploy(server, root, "slow", HUNG, "ml.m5.large", forked=True)
    (first,) = instances(server, "slow")
    for _ in range(3):
        with pytest.raises(ClientError) as caught:
            invoke(server, "slow", "slow")
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424
        time.sleep(0.5)  # the model finishes; each request finds it idle
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            assert invoke(server, "slow", "fine") == "ok"
        except ClientError:
            time.sleep(0.2)
            continue
        if first["InstanceId"] not in [i["InstanceId"] for i in instances(server, "slow")]:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"not replaced: {instances(server, 'slow')}")
    with rest(server) as client:
        (variant,) = client.get("/api/endpoints/slow").json()["ProductionVariants"]
    reason = variant["LastInstanceFailure"]["Reason"]
    assert "3 requests in a row were not answered within the invocation timeout" in reason
