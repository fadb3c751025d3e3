"""Storage: URIs (local, file://, s3://) and the key layout of run directories."""

from wbray.storage._fs import (
    Location,
    exists,
    join,
    list_files,
    locate,
    normalize_uri,
    read_bytes,
    read_parquet,
    write_bytes,
    write_parquet,
)
from wbray.storage._layout import MANIFEST, RunLayout
from wbray.storage._results import (
    GENERATION_FIELDS,
    SCORE_FIELDS,
    is_run,
    judges,
    read_evaluations,
    read_generations,
    read_manifest,
    read_scores,
    write_generations,
    write_manifest,
    write_scores,
)

__all__ = [
    "GENERATION_FIELDS",
    "MANIFEST",
    "SCORE_FIELDS",
    "Location",
    "RunLayout",
    "exists",
    "is_run",
    "join",
    "judges",
    "list_files",
    "locate",
    "normalize_uri",
    "read_bytes",
    "read_evaluations",
    "read_generations",
    "read_manifest",
    "read_parquet",
    "read_scores",
    "write_bytes",
    "write_generations",
    "write_manifest",
    "write_parquet",
    "write_scores",
]
