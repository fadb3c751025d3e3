"""Reading and writing a run's result rows (Parquet parts) and its manifest."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wbray.config import content_hash
from wbray.errors import WbrayError
from wbray.storage._fs import (
    StorageOptions,
    exists,
    join,
    list_files,
    locate,
    read_bytes,
    read_parquet,
    write_bytes,
    write_parquet,
)
from wbray.storage._layout import COMMIT_MARKER, RunLayout
from wbray.storage._manifest import RunManifest

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
    # "hit" when the verdict came from the judge cache, "miss" when asked with a cache configured.
    ("cache", "string"),
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
    directory: str,
    rows: Sequence[dict[str, Any]],
    fields: Sequence[tuple[str, str]],
    storage: StorageOptions | None = None,
) -> str | None:
    """Write one batch as ``part-<hash of its row ids>.parquet`` under ``directory`` (atomic)."""
    if not rows:
        return None
    name = RunLayout.part_name(content_hash(sorted(str(r["row_id"]) for r in rows)))
    uri = f"{directory.rstrip('/')}/{name}"
    write_parquet(uri, _table(rows, fields), storage)
    return uri


def write_generations(layout: RunLayout, model: str, rows: Sequence[dict[str, Any]]) -> str | None:
    return write_part(layout.generations(model), rows, GENERATION_FIELDS, layout.storage)


def write_scores(layout: RunLayout, judge: str, model: str, rows: Sequence[dict[str, Any]]) -> str | None:
    return write_part(layout.scores(judge, model), rows, SCORE_FIELDS, layout.storage)


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


def commit_stage(
    directory: str, storage: StorageOptions | None = None, current: Sequence[str] | None = None
) -> int:
    """Seal a stage directory: write its marker (listing its parts) last. Returns the part count.

    Readers that want only complete results (aggregation, export) read just the parts a marker
    lists, so parts left by a crashed writer never read as complete. ``current`` (generation
    stages) lists the ids of the model's current answers: after a changed config or response file
    the older answers stay stored, but readers leave them and their verdicts out. The marker also
    says whether the listed parts hold each row id once (``unique``, checked here, once per
    commit), so readers of a sealed stage skip de-duplication (BENCHMARKS P3b).
    """
    parts = [uri.rsplit("/", 1)[-1] for uri in list_files(directory, ".parquet", storage)]
    marker: dict[str, Any] = {"parts": parts}
    if current is not None:
        marker["current"] = sorted(set(current))
    ids = read_parquet([join(directory, name) for name in parts], ["row_id"], storage)
    marker["unique"] = ids is None or _unique(ids)
    write_bytes(join(directory, COMMIT_MARKER), json.dumps(marker).encode("utf-8"), storage)
    return len(parts)


def _unique(table: pa.Table) -> bool:
    import pyarrow.compute as pc

    return bool(pc.count_distinct(table["row_id"]).as_py() == table.num_rows)


def current_generations(layout: RunLayout) -> dict[str, frozenset[str]]:
    """Per model, the ids of its current answers, from the generation commit markers that list
    them (runs older than this record list none: then every answer counts)."""
    out: dict[str, frozenset[str]] = {}
    for marker in list_files(layout.generations_root, COMMIT_MARKER, layout.storage):
        model = marker.rsplit("/", 2)[-2].removeprefix("model=")
        try:
            listed = json.loads(read_bytes(marker, layout.storage))
        except ValueError:
            raise WbrayError(f"{marker}: damaged commit marker (expected a JSON object)") from None
        if isinstance(listed, dict) and isinstance(listed.get("current"), list):
            out[model] = frozenset(str(i) for i in listed["current"])
    return out


def _committed(root: str, storage: StorageOptions | None = None) -> tuple[list[str], bool]:
    """The parts the stage markers under ``root`` list, and whether every marker says its parts
    hold each row id once (markers written before that was recorded say nothing: not known)."""
    out = []
    unique = True
    for marker in list_files(root, COMMIT_MARKER, storage):
        directory = marker.rsplit("/", 1)[0]
        try:
            record = json.loads(read_bytes(marker, storage))
            listed = record["parts"]
        except (ValueError, KeyError, TypeError):
            raise WbrayError(f"{marker}: damaged commit marker (expected {{'parts': [...]}})") from None
        unique = unique and record.get("unique") is True
        out += [f"{directory}/{name}" for name in listed]
    return sorted(out), unique


def _read_rows(
    root: str, columns: list[str] | None, committed_only: bool, storage: StorageOptions | None
) -> pa.Table | None:
    if committed_only:
        parts, unique = _committed(root, storage)
    else:
        parts, unique = list_files(root, ".parquet", storage), False
    if unique:
        # Sealed stages whose markers vouch for unique row ids (ids differ across stages by
        # construction: they hash the model): nothing to de-duplicate, row_id need not be read.
        return read_parquet(parts, columns, storage)
    # row_id is always read: de-duplication needs it, even when the caller did not ask for it.
    wanted = None if columns is None else list(dict.fromkeys(["row_id", *columns]))
    table = _dedupe(read_parquet(parts, wanted, storage))
    if table is not None and columns is not None and "row_id" not in columns:
        table = table.drop_columns(["row_id"])
    return table


def _keep_current(table: pa.Table, current: Mapping[str, frozenset[str]], id_column: str) -> pa.Table:
    """Rows of models without a current list, and rows whose ``id_column`` (the answer's id) is
    in their model's list. Columnar: one hash-set lookup per model, no per-row Python."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keep = None
    ids_col = table[id_column]
    for model, ids in current.items():
        answered = pc.is_in(ids_col, value_set=pa.array(sorted(ids), ids_col.type))
        fresh = pc.or_(pc.not_equal(table["model"], model), answered)
        keep = fresh if keep is None else pc.and_(keep, fresh)
    return table if keep is None else table.filter(pc.fill_null(keep, True))


def read_generations(
    layout: RunLayout,
    columns: list[str] | None = None,
    committed_only: bool = False,
    current_only: bool = False,
) -> pa.Table | None:
    """Stored generation rows of the run (all models), one per row_id.

    ``committed_only`` reads only parts of sealed stages (see :func:`commit_stage`);
    ``current_only`` keeps each model's current answers (see :func:`current_generations`).
    """
    current = current_generations(layout) if current_only else {}
    if not current:
        return _read_rows(layout.generations_root, columns, committed_only, layout.storage)

    wanted = None if columns is None else list(dict.fromkeys([*columns, "row_id", "model"]))
    table = _read_rows(layout.generations_root, wanted, committed_only, layout.storage)
    if table is None:
        return None
    table = _keep_current(table, current, "row_id")
    return table if columns is None else table.select(columns)


def read_scores(
    layout: RunLayout,
    judge: str | None = None,
    columns: list[str] | None = None,
    committed_only: bool = False,
) -> pa.Table | None:
    """Stored score rows of the run (one judge, or all), one per row_id."""
    root = layout.scores(judge) if judge else layout.scores_root
    return _read_rows(root, columns, committed_only, layout.storage)


def judges(layout: RunLayout) -> list[str]:
    """Judges that have scores in the run."""
    names = set()
    for uri in list_files(layout.scores_root, ".parquet", layout.storage):
        for part in uri.split("/"):
            if part.startswith("judge="):
                names.add(part.removeprefix("judge="))
    return sorted(names)


def read_manifest(layout: RunLayout) -> RunManifest | None:
    """The run's manifest, or None when the directory holds none (yet)."""
    if not exists(layout.manifest, layout.storage):
        return None
    return RunManifest.parse(read_bytes(layout.manifest, layout.storage), layout.manifest)


def write_manifest(layout: RunLayout, manifest: RunManifest | Mapping[str, Any]) -> None:
    """Write the manifest atomically (a dict is validated into a :class:`RunManifest` first)."""
    if not isinstance(manifest, RunManifest):
        manifest = RunManifest.model_validate(dict(manifest))
    write_bytes(layout.manifest, manifest.to_json(), layout.storage)


def is_run(uri: str, storage: StorageOptions | None = None) -> bool:
    """True when ``uri`` holds a run (its manifest)."""
    return exists(RunLayout.at(uri, storage).manifest, storage)


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
    import pyarrow as pa
    import pyarrow.compute as pc

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
    current = current_generations(layout)
    read = wanted if not current else list(dict.fromkeys([*wanted, "gen_row_id"]))
    table = read_scores(layout, judge, read, committed_only=committed_only)
    if table is None:
        return pd.DataFrame(columns=wanted)
    if current:
        # Verdicts on superseded answers (an older config or response file) are not the model's.
        table = _keep_current(table, current, "gen_row_id")
    if indices is not None:
        chosen = pa.array(sorted(indices), table["index"].type)
        table = table.filter(pc.is_in(table["index"], value_set=chosen))
    if models is not None:
        table = table.filter(pc.is_in(table["model"], value_set=pa.array(list(models), table["model"].type)))
    return table.select(wanted).to_pandas()


def discover_runs(prefix: str, storage: StorageOptions | None = None) -> list[str]:
    """Run roots at or under ``prefix`` (any directory holding a manifest.json), sorted."""
    from wbray.storage._layout import MANIFEST

    found = list_files(prefix, MANIFEST, storage)
    return sorted({uri.rsplit("/", 1)[0] for uri in found if uri.endswith(f"/{MANIFEST}")})


@dataclass(frozen=True)
class StoredRow:
    """Where one stored generation row lives, without its text (what the driver plans with)."""

    row_id: str
    model: str
    index: int
    sample: int
    status: str
    part: str


def index_generations(layout: RunLayout) -> list[StoredRow]:
    """Every stored generation row of the run: ids, keys and the part holding it — never the text.

    Every part counts, sealed or not: a part is written atomically, so a part left by a crashed
    run holds finished rows that a resumed run reuses. A row id found in several parts (a batch
    re-written after a crash) is listed once, at its first part in sorted order.
    """
    import pyarrow.parquet as pq

    out: dict[str, StoredRow] = {}
    columns = ["row_id", "model", "index", "sample", "status"]
    for uri in list_files(layout.generations_root, ".parquet", layout.storage):
        loc = locate(uri, layout.storage)
        table = pq.read_table(loc.path, filesystem=loc.fs, columns=columns)
        for rec in table.to_pylist():
            rid = str(rec["row_id"])
            if rid not in out:
                out[rid] = StoredRow(
                    rid, str(rec["model"]), int(rec["index"]), int(rec["sample"]), str(rec["status"]), uri
                )
    return list(out.values())


def score_ids(layout: RunLayout, judge: str) -> frozenset[str]:
    """Row ids of every score the judge already has in the run (any part)."""
    table = read_scores(layout, judge, ["row_id"])
    return frozenset() if table is None else frozenset(table.column("row_id").to_pylist())


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
