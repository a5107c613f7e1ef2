"""Settings: read once at the edge (CLI, server start) and passed down; never read elsewhere.

Every field can be set from the environment as ``SHIPWAY_<FIELD>`` (``SHIPWAY_HOME``,
``SHIPWAY_DATABASE_URL``...) or given directly.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shipway.domain.names import Account

__all__ = ["Settings"]

MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIPWAY_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".shipway")
    """The data dir: metadata database, artifact cache, instance sockets and logs."""
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str | None = None
    """SQLAlchemy URL of the metadata store; default: SQLite in the data dir."""
    s3_endpoint_url: str | None = None
    """Endpoint of an S3-compatible store (MinIO, moto...) for ``s3://`` URLs."""
    region: str = "us-east-1"
    account_id: str = "123456789012"

    access_keys_file: Path | None = None
    """JSON file of access keys (mode 0600 or stricter). When set, every request but
    ``GET /healthz`` must be SigV4-signed by one of them, or (REST API) carry the bearer token
    derived from one; when unset, authentication is off (the loopback quick start)."""
    max_instances: int = 64
    """Quota: the most instances all endpoints together may ask for (ResourceLimitExceeded)."""
    max_payload_bytes: int = 6 * MIB
    """Largest real-time invocation body (SageMaker: 6 MB)."""
    model_timeout_seconds: float = 60.0
    """How long the router waits for a model's answer (SageMaker: 60 s)."""
    max_shadow_in_flight: int = Field(default=64, ge=1)
    """Copies of requests under way to an endpoint's shadow variant at most; beyond it a sampled
    request is not mirrored (the shadow report counts it as skipped)."""

    instance_wait_seconds: float = 10.0
    """How long an invocation waits for an instance of its variant to be in service (a
    restarted server bringing its instances back, a failed instance being replaced) before it
    is answered 503 ServiceUnavailable."""
    instance_max_timeouts: int = Field(default=3, ge=1)
    """Invocations in a row an instance may leave unanswered past the model timeout before it
    is replaced as hung (a request still in progress past the timeout stops it at once)."""
    instance_startup_timeout_seconds: float = 480.0
    """Deadline for an instance's first healthy /ping (SageMaker's default: 8 minutes)."""
    instance_stop_timeout_seconds: float = 30.0
    """Grace between SIGTERM and SIGKILL when an instance stops (SageMaker: 30 s)."""
    health_check_interval_seconds: float = 2.0
    health_check_failures: int = 3
    """Consecutive failed pings after which an instance is replaced."""
    reconcile_interval_seconds: float = 0.5
    alarm_evaluation_interval_seconds: float = 1.0
    """How often every alarm is evaluated against the metrics (CloudWatch: every period)."""

    public_url: str | None = None
    """The address HTTP subscribers reach this server at (``https://shipway.example.com``): SNS
    messages' ``SubscribeURL`` and ``UnsubscribeURL`` start with it. Set it behind a proxy;
    default ``http://<host>:<port>`` (this machine's name when listening on every address)."""
    notification_timeout_seconds: float = Field(default=15.0, gt=0)
    """How long one POST of an SNS message to a subscriber may take (SNS: 15 s)."""
    notification_no_delay_retries: int = Field(default=3, ge=0)
    """Retries of a failed SNS delivery made at once, before backing off."""
    notification_retries: int = Field(default=50, ge=0)
    """Retries of a failed SNS delivery in all (the no-delay ones included); then it is given
    up. With the delays below, 50 retries span about six hours, as SNS's for HTTP endpoints."""
    notification_min_delay_seconds: float = Field(default=1.0, gt=0)
    """The first backed-off retry's delay; each next one doubles it, up to the maximum."""
    notification_max_delay_seconds: float = Field(default=600.0, gt=0)

    max_model_bytes: int = Field(default=16 * 1024 * MIB, ge=1)
    """Largest model a ModelDataUrl may unpack or download to, in bytes (16 GiB); a bigger
    archive is refused before anything is written."""
    max_model_files: int = Field(default=100_000, ge=1)
    """Most files and folders one model archive may unpack to."""
    min_free_disk_bytes: int = Field(default=1024 * MIB, ge=0)
    """Free space an unpacked archive must leave on the artifact cache's disk (1 GiB)."""
    allow_http_model_data: bool = False
    """Accept ``http://`` and ``https://`` ModelDataUrls (off: a caller could make the server
    request any URL). Hosts must still resolve to public addresses only."""
    allow_private_model_data_hosts: bool = False
    """With ``allow_http_model_data``: also fetch from loopback, link-local (169.254/16, cloud
    metadata), private, multicast and unspecified addresses."""
    model_data_paths: list[Path] | None = None
    """Folders local ModelDataUrls must lie in (JSON list in the environment:
    ``SHIPWAY_MODEL_DATA_PATHS='["/srv/models"]'``); unset: any local path outside the data
    dir and the access keys file."""

    instance_network: bool = False
    """Let instances use this machine's network. Off (the default), each instance runs in an
    empty network namespace: model code reaches no service on loopback (databases, Redis,
    Shipway's own ports), no metadata endpoint and nothing outside. A model created with
    ``EnableNetworkIsolation`` never has network."""

    instance_cgroups: bool = True
    """Limit each instance's memory, CPU and processes with control groups where the machine
    lets the server make them; off (or where it cannot), the server pins instances to cores
    and watches their memory itself."""
    instance_uid_base: int | None = Field(default=1_900_000_000, ge=1)
    """When the server runs as root, each instance runs as a user of its own, from this id up
    (no /etc/passwd entry is needed). Unset (null) runs instances as user 0, every capability
    dropped: not recommended."""

    instance_start: Literal["fork", "spawn"] = "fork"
    """How instances start: ``fork`` from a pre-started parent per runtime (a zygote that has
    imported the model server and the runtime's libraries), so an instance pays only for
    loading its model; ``spawn`` a new interpreter each time (slower, nothing shared)."""

    autoscaling_interval_seconds: float = Field(default=60.0, gt=0)
    """How often scaling policies are evaluated (Application Auto Scaling: every minute).
    TargetValue keeps its per-minute meaning at any interval."""
    serverless_idle_seconds: float = Field(default=300.0, ge=0)
    """A serverless variant with no request for this long scales to zero: no process of it
    remains (its provisioned concurrency stays warm)."""
    serverless_concurrency_per_instance: int = Field(default=10, ge=1)
    """Requests in flight one instance of a serverless variant takes (its model server batches
    them): the variant runs one instance per this many, up to its MaxConcurrency's worth."""

    ray_address: str | None = None
    """A Ray cluster (``host:port`` of its head, or ``auto``) to run transform jobs on; unset,
    they run as local processes. Needs ``pip install 'shipway[ray]'``."""
    queue_url: str | None = None
    """Where asynchronous requests queue: ``redis://host:port/db`` for Redis Streams; unset, a
    table of the metadata store (SQLite, or PostgreSQL with ``database_url``)."""
    queue_namespace: str = "shipway"
    """Prefix of this server's keys in a shared Redis (one server per namespace)."""
    async_concurrency_per_instance: int = Field(default=4, ge=1, le=1000)
    """Asynchronous requests in flight per instance when the endpoint's AsyncInferenceConfig
    gives no MaxConcurrentInvocationsPerInstance."""
    async_data_paths: list[Path] | None = None
    """Folders local asynchronous InputLocations and output paths must lie in (JSON list in the
    environment); unset: any local path outside the data dir and the access keys file."""

    max_batch_size: int = 64
    """Adaptive batching: most requests merged into one predict call."""
    max_batch_delay_ms: float = 0.0
    """Adaptive batching: longest wait for more requests before predicting (0: take what is
    queued)."""

    # --- request size limits ---
    max_request_bytes: int = Field(default=MIB, ge=1024)
    """Largest request body but invocations' (those take ``max_payload_bytes``): SageMaker's
    control plane, CloudWatch, the REST API. Larger bodies are answered 413 unread. The largest
    legitimate SageMaker request (CreateModel with 15 containers, every member at its length
    limit, non-ASCII text escaped by boto3) is about 460 KB; CloudWatch takes 1 MB at most."""

    @property
    def account(self) -> Account:
        return Account(region=self.region, account_id=self.account_id)

    @property
    def base_url(self) -> str:
        """:attr:`public_url`, or where this server listens."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def metadata_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'shipway.db'}"

    @property
    def artifact_cache(self) -> Path:
        return self.home / "artifacts"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def async_inline_dir(self) -> Path:
        """Inline InvokeEndpointAsync bodies, kept until their requests are done."""
        return self.home / "async-inputs"

    @property
    def batch_dir(self) -> Path:
        """Transform jobs' part files, until their objects' outputs are written."""
        return self.home / "batch"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def instance_types_file(self) -> Path:
        return self.home / "instance-types.json"
