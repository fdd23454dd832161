"""Content-addressed storage shared by every machine of a run: a local folder or an S3-compatible bucket.

Stages write their outputs (tokenized data, adapters, evaluations, datasets) as folders named by a cache key
and pass each other URIs. A worker on another machine shares only the Prefect server, the MLflow server and
this store, so it fetches what a URI names into its own ADAPTERFLOW_HOME/cache before reading it.

A folder is complete once its marker file exists: publishing uploads the marker last and flushes it to a local
disk last (durable.py), so a crash mid-upload or mid-write never leaves a folder that looks finished. S3 endpoint
and credentials come from the usual `AWS_*` and `AWS_ENDPOINT_URL` environment, never from a config file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from adapterflow.core.errors import AdapterflowError
from adapterflow.core.hashing import sha256_json
from adapterflow.core.home import Home
from adapterflow.storage.durable import install, write_durably
from adapterflow.storage.records import RunContext

STORAGE_ENV = "ADAPTERFLOW_STORAGE"


def storage_setting(configured: str | None) -> str | None:
    """The configured store, else $ADAPTERFLOW_STORAGE (so one config runs on a laptop and on a cluster)."""
    return configured or os.environ.get(STORAGE_ENV) or None


@dataclass(frozen=True)
class Storage:
    """A store rooted at `root` (a local folder path or `s3://bucket/prefix`) with a local mirror for reading."""

    root: str
    mirror: Path

    @classmethod
    def resolve(cls, setting: str | None, home: Home) -> Storage:
        """`execution.storage` (or $ADAPTERFLOW_STORAGE), defaulting to ADAPTERFLOW_HOME/cache."""
        setting = storage_setting(setting)
        if setting is None:
            return cls.local(home.cache)
        if setting.startswith("s3://"):
            parsed = urlparse(setting)
            if not parsed.netloc:
                raise AdapterflowError(f"execution.storage {setting!r} names no bucket", hint="use s3://BUCKET/PREFIX")
            root = setting.rstrip("/")
            # each bucket's copies apart, and apart from the default local store: a marker found locally
            # must mean the folder is in *this* store
            return cls(root, home.cache / "mirrors" / sha256_json(root)[:12])
        if "://" in setting and not setting.startswith("file://"):
            raise AdapterflowError(f"execution.storage {setting!r}: only local folders and s3:// are supported",
                                   hint="use a folder path or s3://BUCKET/PREFIX")
        return cls.local(Path(setting.removeprefix("file://")).expanduser().resolve())

    @classmethod
    def local(cls, folder: Path) -> Storage:
        """A store in a local folder (the default one is ADAPTERFLOW_HOME/cache)."""
        return cls(str(folder), folder)

    @property
    def is_remote(self) -> bool:
        return self.root.startswith("s3://")

    def uri(self, kind: str, key: str) -> str:
        """Where the folder `<kind>/<key>` lives in the store."""
        return f"{self.root}/{kind}/{key}"

    def local_dir(self, kind: str, key: str) -> Path:
        """This machine's copy of `<kind>/<key>` (the folder itself for a local store)."""
        return self.mirror / kind / key

    def staging_dir(self, prefix: str) -> Path:
        """A fresh folder next to the local copies, so publishing it is a rename."""
        self.mirror.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=self.mirror))

    @contextmanager
    def staging(self, prefix: str) -> Iterator[Path]:
        """A fresh staging folder that is removed when the block raises (failed, stopped or Ctrl-C): no half-written
        folder stays behind; on success it stays for the caller to publish."""
        folder = self.staging_dir(prefix)
        try:
            yield folder
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def lookup(self, kind: str, key: str, marker: str) -> Path | None:
        """A local copy of a complete `<kind>/<key>` folder, fetched when only the store has it; else None."""
        local = self.local_dir(kind, key)
        if (local / marker).is_file():
            return local
        if not self.is_remote or not _s3_exists(f"{self.uri(kind, key)}/{marker}"):
            return None
        return self._download(kind, key)

    def reusable(self, kind: str, key: str, marker: str, cache: bool) -> tuple[str, Path | None]:
        """The key to store a result under and the complete folder to reuse: `key` and its folder (None when there is
        none) with the cache on; with it off (`execution.cache: false`) a fresh key of its own and None, since
        stored folders are never replaced."""
        if not cache:
            return f"{key}-{uuid.uuid4().hex[:8]}", None
        return key, self.lookup(kind, key, marker)

    def publish(self, staging: Path, kind: str, key: str, marker: str) -> Path:
        """Make a finished staging folder `<kind>/<key>`: uploaded with its marker last, then flushed (its marker
        last) and renamed locally.

        Folders are content-addressed and never replaced: when another run published the same key first,
        this staging copy is dropped.
        """
        if self.is_remote:
            _s3_upload_folder(staging, self.uri(kind, key), marker)
        return install(staging, self.local_dir(kind, key), marker)

    def upload(self, folder: Path, kind: str, key: str, marker: str) -> None:
        """Copy a local folder that stays where it is to `<kind>/<key>` of a remote store, its marker last."""
        if self.is_remote:
            _s3_upload_folder(folder, self.uri(kind, key), marker)

    def remote_keys(self, kind: str, prefix: str) -> list[str]:
        """The keys `<prefix>/<name>` of the folders under `<kind>/<prefix>/` in a remote store (none locally)."""
        if not self.is_remote:
            return []
        return [f"{prefix}/{name}" for name in _s3_list_folders(f"{self.uri(kind, prefix)}/")]

    def has(self, kind: str, key: str, marker: str) -> bool:
        """Whether the store holds a complete `<kind>/<key>` (its marker exists), here or remotely."""
        if (self.local_dir(kind, key) / marker).is_file():
            return True
        return self.is_remote and _s3_exists(f"{self.uri(kind, key)}/{marker}")

    def remove(self, kind: str, key: str, marker: str | None = None) -> None:
        """Delete `<kind>/<key>` here and in a remote store; the marker first, so no reader takes what is left for
        complete."""
        local = self.local_dir(kind, key)
        if marker is not None:
            (local / marker).unlink(missing_ok=True)
        shutil.rmtree(local, ignore_errors=True)
        if self.is_remote:
            _s3_delete_folder(self.uri(kind, key), marker)

    def fetch(self, uri: str) -> Path:
        """A local folder with the content of a URI this store handed out (downloaded once per machine)."""
        if not uri.startswith(self.root + "/"):
            raise AdapterflowError(f"{uri} is not in this run's storage {self.root}",
                                   hint="every stage of a run must use the same execution.storage")
        kind, key = uri[len(self.root) + 1 :].split("/", 1)
        local = self.local_dir(kind, key)
        if local.is_dir() or not self.is_remote:
            if not local.is_dir():
                raise AdapterflowError(f"{uri} does not exist on this machine",
                                       hint="set execution.storage to s3://... when stages run on other machines")
            return local
        return self._download(kind, key)

    def put_json(self, name: str, value: Any) -> str:
        """Store a small JSON document at `<root>/<name>` (records handed from one machine to another)."""
        payload = json.dumps(value).encode()
        if self.is_remote:
            _s3_put(f"{self.root}/{name}", payload)
        else:
            path = Path(self.root) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            write_durably(path, payload)
        return f"{self.root}/{name}"

    def get_json(self, name: str) -> Any:
        if self.is_remote:
            return json.loads(_s3_get(f"{self.root}/{name}"))
        return json.loads((Path(self.root) / name).read_bytes())

    def _download(self, kind: str, key: str) -> Path:
        with self.staging(kind) as staging:
            _s3_download_folder(self.uri(kind, key), staging)
        return install(staging, self.local_dir(kind, key), None)


def _split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def s3_client():  # noqa: ANN201 - boto3 clients have no importable type
    """A boto3 client for the store in AWS_ENDPOINT_URL (any S3-compatible server), credentials from the env."""
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("MLFLOW_S3_ENDPOINT_URL")
    retries = Config(retries={"max_attempts": 8, "mode": "standard"})  # backoff with jitter on 5xx and throttling
    return boto3.client("s3", endpoint_url=endpoint, config=retries)


AUTH_ERRORS = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket")


def _readable(action: str, uri: str, exc: Exception) -> Exception:
    """Credentials and bucket problems become user errors; anything else (5xx, network) stays transient."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    if code in AUTH_ERRORS:
        return AdapterflowError(f"can't {action} {uri}: {code}",
                                hint="check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL and the "
                                     "bucket in execution.storage")
    return exc


def _s3_call(action: str, uri: str, call):  # noqa: ANN001, ANN202
    from botocore.exceptions import ClientError

    try:
        return call()
    except ClientError as exc:
        raise _readable(action, uri, exc) from None


def _s3_exists(uri: str) -> bool:
    from botocore.exceptions import ClientError

    bucket, key = _split(uri)
    try:
        s3_client().head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise _readable("read", uri, exc) from None
    return True


def _s3_put(uri: str, payload: bytes) -> None:
    bucket, key = _split(uri)
    _s3_call("write", uri, lambda: s3_client().put_object(Bucket=bucket, Key=key, Body=payload))


def _s3_get(uri: str) -> bytes:
    bucket, key = _split(uri)
    return _s3_call("read", uri, lambda: s3_client().get_object(Bucket=bucket, Key=key)["Body"].read())


def _s3_upload_folder(folder: Path, uri: str, marker: str) -> None:
    client = s3_client()
    bucket, prefix = _split(uri)
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    # the marker goes last: a reader that sees it sees every other file
    for path in sorted(files, key=lambda p: p.relative_to(folder).as_posix() == marker):
        key = f"{prefix}/{path.relative_to(folder).as_posix()}"
        _s3_call("upload to", uri, lambda p=path, k=key: client.upload_file(str(p), bucket, k))


def _s3_download_folder(uri: str, target: Path) -> None:
    client = s3_client()
    bucket, prefix = _split(uri)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    found = False
    for page in _s3_call("list", uri, lambda: list(pages)):
        for item in page.get("Contents", []):
            found = True
            path = target / item["Key"][len(prefix) + 1 :]
            path.parent.mkdir(parents=True, exist_ok=True)
            _s3_call("download", uri, lambda k=item["Key"], p=path: client.download_file(bucket, k, str(p)))
    if not found:
        raise AdapterflowError(f"{uri} is empty or missing in the store", hint="run the pipeline again to rebuild it")


def _s3_list_folders(uri: str) -> list[str]:
    """The names of the "folders" directly under an s3://bucket/prefix/ URI."""
    bucket, prefix = _split(uri)
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
    return [entry["Prefix"][len(prefix) :].rstrip("/")
            for page in _s3_call("list", uri, lambda: list(pages)) for entry in page.get("CommonPrefixes", [])]


def _s3_delete_folder(uri: str, marker: str | None) -> None:
    client = s3_client()
    bucket, prefix = _split(uri)
    if marker is not None:
        _s3_call("delete", uri, lambda: client.delete_object(Bucket=bucket, Key=f"{prefix}/{marker}"))
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    for page in _s3_call("list", uri, lambda: list(pages)):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            _s3_call("delete", uri, lambda k=keys: client.delete_objects(Bucket=bucket, Delete={"Objects": k}))


def run_storage(run: RunContext) -> Storage:
    """The store of a run as seen from this machine (its local copies under this machine's ADAPTERFLOW_HOME)."""
    return Storage.resolve(run.storage, Home.from_env())


def record_name(run: RunContext, stage: str) -> str:
    """Where a stage run on another machine leaves its record for the pipeline."""
    return f"records/{run.mlflow_run_id}/{stage}.json"
