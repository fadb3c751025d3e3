"""One storage layer for every path wbray reads or writes: a local path, ``file://`` or ``s3://``.

Parquet goes through pyarrow's filesystems (what Ray Data uses too), so a URI means the same thing
to the driver, to Ray workers and to Parquet readers; on S3, manifests, listings and other small
objects go through boto3.

S3 settings travel as an explicit :class:`StorageOptions` object (built from a config's
``storage:`` section and handed to every stage), never through ``os.environ``: a Ray job that calls
the library with ``storage.endpoint_url`` in its YAML reaches that endpoint from every worker. A
setting left unset falls back to the standard environment where the code runs —
``AWS_ENDPOINT_URL`` (MinIO, Ceph, moto), ``AWS_REGION``/``AWS_DEFAULT_REGION``,
``WBRAY_S3_ADDRESSING_STYLE``, ``AWS_MAX_ATTEMPTS``. Credentials come only from the standard AWS
chain (env, profile, instance role): never from config, never logged, never copied into options.

Writes are atomic: a local file is written beside its target and renamed into place; an object
store PUT is atomic by itself. A crashed writer never leaves a half-written file under its name.

Every S3 request is retried with exponential, jittered backoff (botocore's and Arrow's "standard"
retries: throttling, 5xx, timeouts, refused connections) up to :data:`S3_MAX_ATTEMPTS` attempts,
so a store that restarts mid-run costs a pause, not the run. A write that still fails raises one
:class:`WbrayError` line; nothing it meant to write exists under its name.
"""

from __future__ import annotations

import functools
import hashlib
import os
import posixpath
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wbray import env
from wbray.errors import WbrayError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs


@dataclass(frozen=True)
class StorageOptions:
    """S3 settings passed explicitly to whatever reads or writes (picklable; no credentials).

    Attributes:
        endpoint_url: S3 endpoint (MinIO, Ceph, moto); None = the environment's, else AWS.
        region: Region; None = the environment's, else us-east-1.
        addressing_style: auto, path or virtual; None = the environment's, else auto.
        max_attempts: Attempts per S3 request; None = ``$AWS_MAX_ATTEMPTS``, else
            :data:`S3_MAX_ATTEMPTS`.
    """

    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: str | None = None
    max_attempts: int | None = None

    @classmethod
    def of(cls, config: Any) -> StorageOptions:
        """Options from a config's ``storage:`` section (any object with the same attributes)."""
        if config is None:
            return cls()
        return cls(
            endpoint_url=getattr(config, "endpoint_url", None),
            region=getattr(config, "region", None),
            addressing_style=getattr(config, "addressing_style", None),
        )

    def with_env_defaults(self) -> StorageOptions:
        """These options, with unset ones taken from this process's environment.

        The driver calls this once, so settings a user exported in the shell that starts a run
        travel to every worker inside the options — workers on another node never see that shell.
        What is unset here too stays unset, and each worker then uses its own environment.
        """
        here = S3Settings.from_environment()
        return StorageOptions(
            endpoint_url=self.endpoint_url or here.endpoint_url,
            region=self.region or here.region,
            addressing_style=self.addressing_style or here.addressing_style,
            max_attempts=self.max_attempts or here.max_attempts,
        )


#: Nothing set explicitly: every setting comes from the environment where the code runs.
DEFAULT_STORAGE = StorageOptions()
#: Attempts per S3 request. botocore's "standard" backoff waits up to 1, 2, 4, 8, 16, then 20 s
#: (jittered) between attempts, so ten ride out an endpoint that is down for about half a minute
#: to a minute (a MinIO or moto restart) instead of failing the run on its first refused
#: connection. ``AWS_MAX_ATTEMPTS`` (the AWS SDKs' own setting) overrides it.
S3_MAX_ATTEMPTS = 10
#: Attempts of the check before any work (:func:`check_destination`): a wrong endpoint or bucket
#: fails in seconds, not after a minute of backoff.
S3_CHECK_ATTEMPTS = 2


@dataclass(frozen=True)
class S3Settings:
    """Where S3 requests go: explicit options first, then the environment (module docstring)."""

    endpoint_url: str | None
    region: str
    addressing_style: str
    max_attempts: int = S3_MAX_ATTEMPTS
    #: A hash of the credential variables, so cached clients follow credential changes (never the
    #: credentials themselves).
    auth_id: str = ""

    @staticmethod
    def from_environment() -> StorageOptions:
        """Only what this process's environment sets (None where it sets nothing)."""
        return StorageOptions(
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
            addressing_style=env.get(env.WBRAY_S3_ADDRESSING_STYLE),
            max_attempts=_attempts_from_environment(),
        )

    @classmethod
    def resolve(cls, options: StorageOptions | None = None) -> S3Settings:
        """The settings in force here: ``options`` where set, the environment otherwise."""
        opts = options or DEFAULT_STORAGE
        endpoint = (
            opts.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )
        region = (
            opts.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        )
        style = opts.addressing_style or env.get(env.WBRAY_S3_ADDRESSING_STYLE) or "auto"
        if style not in ("auto", "path", "virtual"):
            raise WbrayError(f"{env.WBRAY_S3_ADDRESSING_STYLE}={style!r}: use auto, path or virtual")
        creds = "\0".join(
            os.environ.get(k, "")
            for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
        )
        auth_id = hashlib.sha256(creds.encode("utf-8")).hexdigest()[:12]
        attempts = opts.max_attempts or _attempts_from_environment() or S3_MAX_ATTEMPTS
        return cls(endpoint, region, style, attempts, auth_id)


def _attempts_from_environment() -> int | None:
    value = os.environ.get("AWS_MAX_ATTEMPTS") or None
    if value is None:
        return None
    try:
        attempts = int(value)
    except ValueError:
        attempts = 0
    if attempts < 1:
        raise WbrayError(f"AWS_MAX_ATTEMPTS={value!r}: use a whole number of attempts, 1 or more")
    return attempts


@functools.lru_cache(maxsize=8)
def _s3_client(settings: S3Settings, max_attempts: int | None = None) -> Any:
    import boto3
    from botocore.config import Config

    cfg = Config(
        s3={"addressing_style": settings.addressing_style},
        connect_timeout=5,
        read_timeout=60,
        # total_max_attempts counts the first attempt too, as AWS_MAX_ATTEMPTS does.
        retries={"total_max_attempts": max_attempts or settings.max_attempts, "mode": "standard"},
    )
    return boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region, config=cfg)


@functools.lru_cache(maxsize=8)
def _s3_filesystem(settings: S3Settings) -> pafs.FileSystem:
    import pyarrow.fs as pafs

    kwargs: dict[str, Any] = {
        "region": settings.region,
        "connect_timeout": 5,
        "request_timeout": 60,
        # The same retry budget as boto3's: Parquet reads and writes outlast a restart too.
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=settings.max_attempts),
    }
    if settings.endpoint_url:
        scheme, _, host = settings.endpoint_url.partition("://")
        kwargs["endpoint_override"] = host.rstrip("/") if host else scheme
        kwargs["scheme"] = scheme if host else "https"
    if settings.addressing_style == "virtual":
        kwargs["force_virtual_addressing"] = True
    return pafs.S3FileSystem(**kwargs)


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/key/part`` -> (``bucket``, ``key/part``)."""
    rest = uri.removeprefix("s3://")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise WbrayError(f"{uri}: an s3:// URI needs a bucket (s3://bucket/prefix)")
    return bucket, key


def _s3_error(uri: str, exc: Exception, storage: StorageOptions | None = None) -> WbrayError:
    """One clear line for the S3 failures a user can fix."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    bucket, _ = split_s3(uri)
    endpoint = S3Settings.resolve(storage).endpoint_url or "the AWS default endpoint"
    if isinstance(exc, NoCredentialsError):
        return WbrayError(
            f"{uri}: no AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile or a role)"
        )
    if isinstance(exc, EndpointConnectionError):
        return WbrayError(
            f"{uri}: cannot reach the S3 endpoint {endpoint} (is the server up? AWS_ENDPOINT_URL?)"
        )
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchBucket", "404") and not exc.response.get("Error", {}).get("Key"):
            return WbrayError(f"{uri}: bucket {bucket!r} does not exist at {endpoint}")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"):
            return WbrayError(f"{uri}: access denied by {endpoint} ({code}); check the AWS credentials")
        return WbrayError(f"{uri}: S3 error {code or type(exc).__name__}")
    return WbrayError(f"{uri}: S3 request failed ({type(exc).__name__}: {exc})")


def _client(storage: StorageOptions | None, max_attempts: int | None = None) -> Any:
    return _s3_client(S3Settings.resolve(storage), max_attempts)


def _s3_call(uri: str, storage: StorageOptions | None, fn: Any, *args: Any, **kwargs: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(*args, **kwargs)
    except (BotoCoreError, ClientError) as exc:
        raise _s3_error(uri, exc, storage) from None


def is_s3(uri: str) -> bool:
    return normalize_uri(uri).startswith("s3://")


@dataclass(frozen=True)
class Location:
    """A resolved URI: the filesystem and the path inside it."""

    uri: str
    fs: pafs.FileSystem
    path: str

    @property
    def is_local(self) -> bool:
        return bool(self.fs.type_name == "local")


def normalize_uri(uri: str | os.PathLike[str]) -> str:
    """Local paths become absolute ``file://``-free paths; URIs keep their scheme."""
    text = os.fspath(uri)
    if "://" in text:
        if text.startswith("file://"):
            return text.removeprefix("file://") or "/"
        return text.rstrip("/")
    return str(Path(text).expanduser().resolve())


def locate(uri: str | os.PathLike[str], storage: StorageOptions | None = None) -> Location:
    """Resolve a URI to a pyarrow filesystem and path."""
    import pyarrow.fs as pafs

    norm = normalize_uri(uri)
    if "://" not in norm:
        return Location(norm, pafs.LocalFileSystem(), norm)
    scheme = norm.split("://", 1)[0]
    if scheme != "s3":
        raise WbrayError(f"{norm}: unsupported URI scheme {scheme!r} (use a local path, file:// or s3://)")
    bucket, key = split_s3(norm)
    return Location(norm, _s3_filesystem(S3Settings.resolve(storage)), f"{bucket}/{key}".rstrip("/"))


def check_destination(uri: str, storage: StorageOptions | None = None) -> None:
    """Fail early, with one clear line, when ``uri`` cannot be written (missing bucket, bad
    credentials, unreachable endpoint), before any work starts."""
    norm = normalize_uri(uri)
    if is_s3(norm):
        bucket, _ = split_s3(norm)
        _s3_call(norm, storage, _client(storage, S3_CHECK_ATTEMPTS).head_bucket, Bucket=bucket)
        return
    try:
        Path(norm).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WbrayError(f"{norm}: cannot create the directory ({exc.strerror})") from None


def join(uri: str, *parts: str) -> str:
    """Join path segments onto a URI (forward slashes, whatever the platform)."""
    norm = normalize_uri(uri)
    return posixpath.join(norm, *parts)


def exists(uri: str, storage: StorageOptions | None = None) -> bool:
    """Whether a file (object) exists at ``uri``."""
    norm = normalize_uri(uri)
    if is_s3(norm):
        from botocore.exceptions import ClientError

        bucket, key = split_s3(norm)
        try:
            _client(storage).head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise _s3_error(norm, exc, storage) from None
        except Exception as exc:
            raise _s3_error(norm, exc, storage) from None
        return True
    return Path(norm).exists()


def read_bytes(uri: str, storage: StorageOptions | None = None) -> bytes:
    norm = normalize_uri(uri)
    if is_s3(norm):
        bucket, key = split_s3(norm)
        body = _s3_call(norm, storage, _client(storage).get_object, Bucket=bucket, Key=key)["Body"]
        return bytes(body.read())
    try:
        return Path(norm).read_bytes()
    except FileNotFoundError:
        raise WbrayError(f"{uri}: not found") from None


def write_bytes(uri: str, data: bytes, storage: StorageOptions | None = None) -> None:
    """Write ``data`` to ``uri`` atomically."""
    norm = normalize_uri(uri)
    if is_s3(norm):
        bucket, key = split_s3(norm)
        _s3_call(norm, storage, _client(storage).put_object, Bucket=bucket, Key=key, Body=data)
        return
    target = Path(norm)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def delete(uri: str, storage: StorageOptions | None = None) -> None:
    """Remove one file (object); a missing one is fine."""
    norm = normalize_uri(uri)
    if is_s3(norm):
        bucket, key = split_s3(norm)
        _s3_call(norm, storage, _client(storage).delete_object, Bucket=bucket, Key=key)
        return
    Path(norm).unlink(missing_ok=True)


def list_files(uri: str, suffix: str = "", storage: StorageOptions | None = None) -> list[str]:
    """Files under ``uri`` (recursive) ending in ``suffix``, as sorted URIs; hidden temp files skipped."""
    norm = normalize_uri(uri)
    out = []
    if is_s3(norm):
        bucket, key = split_s3(norm)
        prefix = f"{key.rstrip('/')}/" if key else ""
        pages = _client(storage).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        try:
            for page in pages:
                for obj in page.get("Contents", []):
                    name = posixpath.basename(obj["Key"])
                    if name.endswith(suffix) and not name.startswith("."):
                        out.append(f"s3://{bucket}/{obj['Key']}")
        except Exception as exc:
            raise _s3_error(norm, exc, storage) from None
        return sorted(out)
    root = Path(norm)
    if not root.is_dir():
        return []
    for path in root.rglob(f"*{suffix}"):
        if path.is_file() and not path.name.startswith("."):
            out.append(str(path))
    return sorted(out)


def write_parquet(uri: str, table: pa.Table, storage: StorageOptions | None = None) -> None:
    """Write one Parquet file atomically.

    A part is one batch (kilobytes to a few megabytes), so it is serialised in memory and stored
    with a single PUT: atomic on every S3-compatible store, where pyarrow's streaming writer uses
    multipart uploads that some stores (and moto) complete unreliably.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    write_bytes(uri, sink.getvalue().to_pybytes(), storage)


def read_parquet(
    uris: list[str], columns: list[str] | None = None, storage: StorageOptions | None = None
) -> pa.Table | None:
    """Read and concatenate Parquet files (None when ``uris`` is empty)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for uri in uris:
        loc = locate(uri, storage)
        tables.append(pq.read_table(loc.path, filesystem=loc.fs, columns=columns))
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")
