"""One storage layer for every path wbray reads or writes: a local path, ``file://`` or ``s3://``.

Everything goes through pyarrow's filesystems, which Ray Data uses too, so a URI means the same
thing to the driver, to Ray workers and to Parquet readers. Writes are atomic: a local file is
written beside its target and renamed into place; an object store PUT is atomic by itself. A crashed
writer therefore never leaves a half-written file under its final name.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wbray.errors import WbrayError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs


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


def locate(uri: str | os.PathLike[str]) -> Location:
    """Resolve a URI to a pyarrow filesystem and path."""
    import pyarrow.fs as pafs

    norm = normalize_uri(uri)
    if "://" not in norm:
        return Location(norm, pafs.LocalFileSystem(), norm)
    scheme = norm.split("://", 1)[0]
    if scheme != "s3":
        raise WbrayError(f"{norm}: unsupported URI scheme {scheme!r} (use a local path, file:// or s3://)")
    try:
        fs, path = pafs.FileSystem.from_uri(norm)
    except Exception as exc:  # pyarrow raises ArrowInvalid and friends
        raise WbrayError(f"{norm}: cannot open ({exc})") from None
    return Location(norm, fs, path)


def join(uri: str, *parts: str) -> str:
    """Join path segments onto a URI (forward slashes, whatever the platform)."""
    norm = normalize_uri(uri)
    return posixpath.join(norm, *parts)


def exists(uri: str) -> bool:
    import pyarrow.fs as pafs

    loc = locate(uri)
    return bool(loc.fs.get_file_info(loc.path).type != pafs.FileType.NotFound)


def read_bytes(uri: str) -> bytes:
    loc = locate(uri)
    try:
        with loc.fs.open_input_stream(loc.path) as fh:
            return bytes(fh.read())
    except FileNotFoundError:
        raise WbrayError(f"{uri}: not found") from None


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri`` atomically."""
    loc = locate(uri)
    parent = posixpath.dirname(loc.path)
    if loc.is_local:
        loc.fs.create_dir(parent, recursive=True)
        tmp = posixpath.join(parent, f".{posixpath.basename(loc.path)}.{uuid.uuid4().hex[:8]}.tmp")
        with loc.fs.open_output_stream(tmp) as fh:
            fh.write(data)
        os.replace(tmp, loc.path)
    else:
        with loc.fs.open_output_stream(loc.path) as fh:
            fh.write(data)


def list_files(uri: str, suffix: str = "") -> list[str]:
    """Files under ``uri`` (recursive) ending in ``suffix``, as sorted URIs; hidden temp files skipped."""
    import pyarrow.fs as pafs

    loc = locate(uri)
    info = loc.fs.get_file_info(loc.path)
    if info.type == pafs.FileType.NotFound:
        return []
    selector = pafs.FileSelector(loc.path, recursive=True, allow_not_found=True)
    out = []
    for item in loc.fs.get_file_info(selector):
        name = posixpath.basename(item.path)
        if item.type == pafs.FileType.File and name.endswith(suffix) and not name.startswith("."):
            rel = posixpath.relpath(item.path, loc.path)
            out.append(join(uri, rel))
    return sorted(out)


def write_parquet(uri: str, table: pa.Table) -> None:
    """Write one Parquet file atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    write_bytes(uri, sink.getvalue().to_pybytes())


def read_parquet(uris: list[str], columns: list[str] | None = None) -> pa.Table | None:
    """Read and concatenate Parquet files (None when ``uris`` is empty)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for uri in uris:
        loc = locate(uri)
        tables.append(pq.read_table(loc.path, filesystem=loc.fs, columns=columns))
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")
