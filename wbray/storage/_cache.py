"""The judge cache: verdicts content-addressed by what was asked, shared across runs.

A verdict's key hashes the judge's identity (model, engine, served identity, sampling, output
contract — not its name), the exact rendered messages and the repeat number. Runs, sweep cells and
the served critic that point at the same prefix reuse each other's verdicts: a new run directory
re-scoring the same answers with the same judge makes no engine call. A sampled verdict is reused
per repeat number, exactly as a resumed run reuses its own rows; ``cache_refresh`` draws anew.

Layout (Parquet parts, like a run's)::

    <prefix>/judge=<identity hash>/part-<hash of keys>.parquet

Only settled, parsed verdicts (``status == "ok"``) are cached: a transport failure or an
unparseable reply is retried by the next run, never remembered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wbray.storage._fs import StorageOptions, join, list_files, read_parquet

if TYPE_CHECKING:
    import pyarrow as pa

#: Stored cache columns (``row_id`` is the cache key, so parts are named like a run's).
CACHE_FIELDS: tuple[tuple[str, str], ...] = (
    ("row_id", "string"),
    ("score", "float64"),
    ("reason", "string"),
    ("raw", "string"),
    ("status", "string"),
    ("error", "string"),
    ("attempts", "int64"),
    ("created_at", "float64"),
)


def cache_dir(prefix: str, judge_hash: str) -> str:
    """The cache directory of one judge identity under ``prefix``."""
    return join(prefix, f"judge={judge_hash}")


def write_cache(
    prefix: str, judge_hash: str, rows: Sequence[dict[str, Any]], storage: StorageOptions | None = None
) -> str | None:
    """Add verdicts to the cache (rows carry ``cache_key``); only ok verdicts are kept."""
    from wbray.storage._results import write_part

    keep = [{**r, "row_id": r["cache_key"]} for r in rows if r.get("status") == "ok" and r.get("cache_key")]
    return write_part(cache_dir(prefix, judge_hash), keep, CACHE_FIELDS, storage)


def read_cache(prefix: str, judge_hash: str, storage: StorageOptions | None = None) -> pa.Table | None:
    """Every cached verdict of one judge identity; the newest per key when a key repeats (a
    refreshed draw supersedes the older one)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = read_parquet(list_files(cache_dir(prefix, judge_hash), ".parquet", storage), None, storage)
    if table is None or table.num_rows == 0:
        return table
    table = table.sort_by([("row_id", "ascending"), ("created_at", "descending")])
    keys = table["row_id"].combine_chunks()
    # After the sort, the first row of each key is its newest draw.
    first = pc.not_equal(keys.slice(1), keys.slice(0, len(keys) - 1))
    keep = pa.concat_arrays([pa.array([True]), first])
    return table.filter(keep)
