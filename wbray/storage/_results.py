"""Reading and writing a run's result rows (Parquet parts) and its manifest."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wbray.config import content_hash
from wbray.errors import WbrayError
from wbray.storage._fs import exists, join, list_files, read_bytes, read_parquet, write_bytes, write_parquet
from wbray.storage._layout import COMMIT_MARKER, RunLayout

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

#: Stored generation columns and their Arrow types (explicit, so an all-null batch keeps its types).
GENERATION_FIELDS: tuple[tuple[str, str], ...] = (
    ("row_id", "string"),
    ("model", "string"),
    ("index", "int64"),
    ("sample", "int64"),
    ("data_version", "string"),
    ("messages_json", "string"),
    ("response", "string"),
    ("status", "string"),
    ("error", "string"),
    ("finish_reason", "string"),
    ("prompt_tokens", "int64"),
    ("completion_tokens", "int64"),
    ("latency_s", "float64"),
    ("created_at", "float64"),
)
#: Stored score columns.
SCORE_FIELDS: tuple[tuple[str, str], ...] = (
    ("row_id", "string"),
    ("gen_row_id", "string"),
    ("model", "string"),
    ("judge", "string"),
    ("index", "int64"),
    ("criterion", "string"),
    ("repeat", "int64"),
    ("prompt_version", "string"),
    ("data_version", "string"),
    ("gen_status", "string"),
    ("gen_error", "string"),
    ("score", "float64"),
    ("reason", "string"),
    ("raw", "string"),
    ("status", "string"),
    ("error", "string"),
    ("attempts", "int64"),
    ("prompt_tokens", "int64"),
    ("completion_tokens", "int64"),
    ("latency_s", "float64"),
    ("created_at", "float64"),
)


def _schema(fields: Sequence[tuple[str, str]]) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([(name, pa.type_for_alias(kind)) for name, kind in fields])


def _table(rows: Sequence[dict[str, Any]], fields: Sequence[tuple[str, str]]) -> pa.Table:
    import pyarrow as pa

    schema = _schema(fields)
    cols = {name: [_clean(r.get(name)) for r in rows] for name, _ in fields}
    return pa.Table.from_pydict(cols, schema=schema)


def _clean(value: Any) -> Any:
    # pandas hands NaN for missing numbers and numpy scalars for the rest; Arrow wants None and Python.
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def write_part(
    directory: str, rows: Sequence[dict[str, Any]], fields: Sequence[tuple[str, str]]
) -> str | None:
    """Write one batch as ``part-<hash of its row ids>.parquet`` under ``directory`` (atomic)."""
    if not rows:
        return None
    name = RunLayout.part_name(content_hash(sorted(str(r["row_id"]) for r in rows)))
    uri = f"{directory.rstrip('/')}/{name}"
    write_parquet(uri, _table(rows, fields))
    return uri


def write_generations(layout: RunLayout, model: str, rows: Sequence[dict[str, Any]]) -> str | None:
    return write_part(layout.generations(model), rows, GENERATION_FIELDS)


def write_scores(layout: RunLayout, judge: str, model: str, rows: Sequence[dict[str, Any]]) -> str | None:
    return write_part(layout.scores(judge, model), rows, SCORE_FIELDS)


def _dedupe(table: pa.Table | None) -> pa.Table | None:
    """Keep one row per row_id (a re-written batch after a crash can repeat rows across parts)."""
    if table is None or table.num_rows == 0:
        return table
    import pyarrow as pa
    import pyarrow.compute as pc

    if pc.count_distinct(table["row_id"]).as_py() == table.num_rows:
        return table  # the normal case: one hash pass, no group-by
    idx = pa.array(range(table.num_rows))
    table = table.append_column("__i", idx)
    first = table.group_by("row_id", use_threads=False).aggregate([("__i", "min")])
    keep = pc.is_in(table["__i"], value_set=first["__i_min"])
    return table.filter(keep).drop_columns(["__i"])


def commit_stage(directory: str) -> int:
    """Seal a stage directory: write its marker (listing its parts) last. Returns the part count.

    Readers that want only complete results (aggregation, export) read just the parts a marker
    lists, so parts left by a crashed writer never read as complete.
    """
    parts = [uri.rsplit("/", 1)[-1] for uri in list_files(directory, ".parquet")]
    write_bytes(join(directory, COMMIT_MARKER), json.dumps({"parts": parts}).encode("utf-8"))
    return len(parts)


def _committed(root: str) -> list[str]:
    out = []
    for marker in list_files(root, COMMIT_MARKER):
        directory = marker.rsplit("/", 1)[0]
        try:
            listed = json.loads(read_bytes(marker))["parts"]
        except (ValueError, KeyError, TypeError):
            raise WbrayError(f"{marker}: damaged commit marker (expected {{'parts': [...]}})") from None
        out += [f"{directory}/{name}" for name in listed]
    return sorted(out)


def _read_rows(root: str, columns: list[str] | None, committed_only: bool = False) -> pa.Table | None:
    # row_id is always read: de-duplication needs it, even when the caller did not ask for it.
    wanted = None if columns is None else list(dict.fromkeys(["row_id", *columns]))
    parts = _committed(root) if committed_only else list_files(root, ".parquet")
    table = _dedupe(read_parquet(parts, wanted))
    if table is not None and columns is not None and "row_id" not in columns:
        table = table.drop_columns(["row_id"])
    return table


def read_generations(
    layout: RunLayout, columns: list[str] | None = None, committed_only: bool = False
) -> pa.Table | None:
    """Stored generation rows of the run (all models), one per row_id.

    ``committed_only`` reads only parts of sealed stages (see :func:`commit_stage`).
    """
    return _read_rows(layout.generations_root, columns, committed_only)


def read_scores(
    layout: RunLayout,
    judge: str | None = None,
    columns: list[str] | None = None,
    committed_only: bool = False,
) -> pa.Table | None:
    """Stored score rows of the run (one judge, or all), one per row_id."""
    return _read_rows(layout.scores(judge) if judge else layout.scores_root, columns, committed_only)


def judges(layout: RunLayout) -> list[str]:
    """Judges that have scores in the run."""
    names = set()
    for uri in list_files(layout.scores_root, ".parquet"):
        for part in uri.split("/"):
            if part.startswith("judge="):
                names.add(part.removeprefix("judge="))
    return sorted(names)


def read_manifest(layout: RunLayout) -> dict[str, Any] | None:
    if not exists(layout.manifest):
        return None
    # Manifests are written atomically, so a bad one was damaged outside wbray (a cut-short copy or
    # sync, an edit); a re-run rewrites it from the config, and the committed parts are kept.
    data = read_bytes(layout.manifest)
    where, what, value = layout.manifest, "expected a JSON object", None
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        what = f"not UTF-8 at byte {exc.start}"
    except json.JSONDecodeError as exc:
        if data.strip():
            where, what = f"{layout.manifest}:{exc.lineno}", f"{exc.msg} at column {exc.colno}"
        else:
            what = "empty file"
    except RecursionError:
        what = "nested too deeply to parse"
    if not isinstance(value, dict):
        raise WbrayError(
            f"{where}: truncated or corrupt manifest ({what}); restore it, or delete it and re-run "
            "the run's config to rebuild it"
        )
    return value


def write_manifest(layout: RunLayout, manifest: dict[str, Any]) -> None:
    write_bytes(
        layout.manifest, json.dumps(manifest, indent=2, ensure_ascii=False, default=str).encode("utf-8")
    )


def is_run(uri: str) -> bool:
    """True when ``uri`` holds a run (its manifest)."""
    return exists(RunLayout.at(uri).manifest)


def read_evaluations(
    layout: RunLayout,
    judge: str | None = None,
    indices: set[int] | None = None,
    models: Sequence[str] | None = None,
    committed_only: bool = True,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """A run's committed score rows as the evaluations table aggregation consumes (one judge).

    ``judge`` may be omitted when the run holds exactly one judge. ``columns`` narrows what is
    read (aggregation needs no reasons); default: every evaluation column.
    """
    import pandas as pd

    from wbray.records import EVAL_COLUMNS

    wanted = list(columns or EVAL_COLUMNS)

    if judge is None:
        found = judges(layout)
        if len(found) > 1:
            raise WbrayError(
                f"{layout.root}: scores of several judges ({', '.join(found)}); choose one with --judge"
            )
        if not found:
            return pd.DataFrame(columns=wanted)
        judge = found[0]
    table = read_scores(layout, judge, wanted, committed_only=committed_only)
    if table is None:
        return pd.DataFrame(columns=wanted)
    df = table.to_pandas()
    if indices is not None:
        df = df[df["index"].isin(sorted(indices))]
    if models is not None:
        df = df[df["model"].isin(list(models))]
    return df[wanted].reset_index(drop=True)


def discover_runs(prefix: str) -> list[str]:
    """Run roots at or under ``prefix`` (any directory holding a manifest.json), sorted."""
    from wbray.storage._layout import MANIFEST

    return sorted(
        {uri.rsplit("/", 1)[0] for uri in list_files(prefix, MANIFEST) if uri.endswith(f"/{MANIFEST}")}
    )


def token_ledger(layout: RunLayout, judge: str | None = None) -> pd.DataFrame:
    """Tokens per model: spent generating its answers, and spent judging them (committed rows).

    The ``judge`` column names the judge whose tokens are counted (the only one, when omitted).
    """
    import pandas as pd

    if judge is None:
        found = judges(layout)
        judge = found[0] if len(found) == 1 else None
    cols = ["model", "prompt_tokens", "completion_tokens"]
    gens = read_generations(layout, cols, committed_only=True)
    scores = read_scores(layout, judge, cols, committed_only=True)
    frames = []
    for table, prefix in ((gens, "generation"), (scores, "judge")):
        if table is None:
            continue
        df = table.to_pandas().groupby("model", sort=True)[["prompt_tokens", "completion_tokens"]].sum()
        frames.append(df.add_prefix(f"{prefix}_"))
    if not frames:
        return pd.DataFrame(columns=["model", "judge"])
    out = pd.concat(frames, axis=1).fillna(0).astype("int64").reset_index()
    out.insert(1, "judge", judge or "")
    return out
