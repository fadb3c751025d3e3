"""Count result rows as they lie on disk (local or s3://): every row of every Parquet part,
before any de-duplication.

wbray's readers keep one row per ``row_id``, so a row written twice (a batch re-done after a
crash, under another part name) is invisible through them. Fault tests count here instead and
compare the ids with the expected set: nothing lost, nothing written twice.

Parts are listed with pyarrow's filesystem directly, not with wbray's listing, so the count does
not share a blind spot with the code under test. Hidden files (``.part-*.tmp``, what a local
writer killed mid-write leaves) are not parts and are reported separately.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq

from wbray.storage import StorageOptions, locate


@dataclass(frozen=True)
class OnDisk:
    """The rows found under one directory.

    Attributes:
        ids: Every ``row_id`` of every part, in part order (a duplicate appears twice).
        parts: Part URI -> rows in it.
        hidden: Hidden files under the directory (temp files of interrupted writes).
        rows: Every row with the requested columns plus ``part``.
    """

    ids: list[str]
    parts: dict[str, int]
    hidden: list[str]
    rows: list[dict[str, Any]]

    @property
    def duplicates(self) -> dict[str, int]:
        """Row ids written more than once, with how often."""
        return {rid: n for rid, n in Counter(self.ids).items() if n > 1}

    def assert_exact(self, expected: set[str] | frozenset[str], what: str = "rows") -> None:
        """No row lost, none extra, none written twice (the message names the differences)."""
        found = set(self.ids)
        missing, extra = sorted(expected - found), sorted(found - expected)
        assert not missing and not extra and not self.duplicates, (
            f"{what} on disk: {len(self.ids)} rows in {len(self.parts)} parts; "
            f"missing {missing[:5]} ({len(missing)}), unexpected {extra[:5]} ({len(extra)}), "
            f"written twice {list(self.duplicates.items())[:5]} ({len(self.duplicates)})"
        )


def rows_on_disk(root: str, columns: tuple[str, ...] = (), storage: StorageOptions | None = None) -> OnDisk:
    """Every row of every ``*.parquet`` part under ``root`` (recursive), duplicates kept."""
    import pyarrow.fs as pafs

    loc = locate(root, storage)
    try:
        infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True, allow_not_found=True))
    except FileNotFoundError:
        infos = []
    files = sorted(i.path for i in infos if i.type == pafs.FileType.File)
    scheme = "s3://" if loc.uri.startswith("s3://") else ""
    ids: list[str] = []
    parts: dict[str, int] = {}
    hidden: list[str] = []
    rows: list[dict[str, Any]] = []
    for path in files:
        name = path.rsplit("/", 1)[-1]
        if name.startswith("."):
            hidden.append(scheme + path)
            continue
        if not name.endswith(".parquet"):
            continue  # commit markers
        table = pq.read_table(path, filesystem=loc.fs, columns=list(dict.fromkeys(["row_id", *columns])))
        uri = scheme + path
        parts[uri] = table.num_rows
        for rec in table.to_pylist():
            ids.append(str(rec["row_id"]))
            rows.append({**rec, "part": uri})
    return OnDisk(ids, parts, hidden, rows)


@dataclass(frozen=True)
class Expected:
    """The row ids a config must end with, computed from the config alone (no run involved)."""

    generations: frozenset[str]
    scores: frozenset[str]


def expected_ids(config: Any) -> Expected:
    """Every generation and verdict id a complete run of ``config`` holds.

    Computed the way a user would state it — every candidate's answer to every selected query,
    every criterion of each judged ``judge.repeats`` times — through the pure row builders, with
    served engines asked what they serve exactly as a run asks them.
    """
    from wbray.api import judge_template_for
    from wbray.dataset import load_benchmark
    from wbray.engines import describe_engine
    from wbray.steps import generation_rows, scoring_rows

    d = config.data
    bench = load_benchmark(d.data_dir).select(
        domain1=d.domain1, domain2=d.domain2, lang=d.lang, indices=d.indices, limit=d.limit
    )
    template = judge_template_for(config, bench)
    judge_served = describe_engine(config.judge.engine)
    gens: set[str] = set()
    scores: set[str] = set()
    for cand in config.candidates:
        served = describe_engine(cand.engine)
        for row in generation_rows(bench.queries, cand, config.generation, bench.data_version, served):
            gens.add(str(row["row_id"]))
            answer = {**row, "response": "", "status": "ok", "error": None}
            for s in scoring_rows(answer, bench.get(row["index"]), config.judge, template, judge_served):
                scores.add(str(s["row_id"]))
    return Expected(frozenset(gens), frozenset(scores))
