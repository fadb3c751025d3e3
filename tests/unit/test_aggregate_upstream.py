"""Side by side with upstream's calculate_scores.py (run unmodified in a subprocess) on its own files:
every number of the official sheet is the same float, including files that repeat an index (upstream's
resume re-scores the last saved query), lines out of index order, and requirement subsets with no
scores. Function names in comments are those of calculate_scores.py."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pandas as pd
import pytest

from tests.helpers.official import run_official
from wbray.aggregate import aggregate, load_scores, write_xlsx
from wbray.dataset import Benchmark, load_benchmark


@pytest.fixture(scope="module")
def bench(official_dir: Path) -> Benchmark:
    return load_benchmark(official_dir)


def _line(rng: random.Random, query: Any, repeats: int = 1) -> dict[str, Any]:
    return {
        "index": query.index,
        "scores": {
            c.name: [{"score": rng.randint(1, 10), "reason": "r"} for _ in range(rng.choice([1, repeats]))]
            for c in query.checklist
        },
    }


def _write(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")


@pytest.fixture(scope="module")
def upstream_files(bench: Benchmark, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Score files shaped like the official evaluation's output, in four flavours."""
    rng = random.Random(13)
    root = tmp_path_factory.mktemp("upstream")
    scores, deduped = root / "scores", root / "deduped"
    scores.mkdir()
    deduped.mkdir()
    queries = list(bench.queries)
    # Every query, some criteria judged twice, lines shuffled: sums must follow file order.
    full = [_line(rng, q, repeats=2) for q in queries]
    rng.shuffle(full)
    _write(scores / "full.jsonl", full)
    # A model scored on a few queries only, none of the length subset: length_R/C have nothing to
    # average, and upstream writes 0 there.
    length_r = set(bench.requirements["length"].r_indices)
    _write(scores / "sparse.jsonl", [_line(rng, q) for q in queries if q.index not in length_r][:40])
    # A resumed evaluation: the last saved query was scored again after a restart (twice for one),
    # and one query appears again much later.
    resumed = [_line(rng, q) for q in queries[:300]]
    resumed.insert(120, _line(rng, queries[119]))
    resumed.insert(121, _line(rng, queries[119]))
    resumed.append(_line(rng, queries[5]))
    _write(scores / "resumed.jsonl", resumed)
    last = {x["index"]: pos for pos, x in enumerate(resumed)}
    # What --dedupe should equal: the file without the earlier lines of each repeated index.
    _write(deduped / "resumed.jsonl", [x for pos, x in enumerate(resumed) if last[x["index"]] == pos])
    return {"scores": scores, "deduped": deduped}


def _same_floats(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.columns) == list(expected.columns)
    g = got.set_index("Model").sort_index()
    e = expected.set_index("Model").sort_index()
    assert list(g.index) == list(e.index)
    a, b = g.to_numpy(dtype=np.float64), e.to_numpy(dtype=np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    bad = [(g.index[i], g.columns[j], a[i, j], b[i, j]) for i, j in zip(*np.nonzero(~same), strict=True)]
    assert not bad, bad[:5]


def test_official_sheet_equals_upstream_bit_for_bit(
    official_dir: Path, bench: Benchmark, upstream_files: dict[str, Path], tmp_path: Path
) -> None:
    expected = run_official(official_dir, upstream_files["scores"], tmp_path / "official.xlsx")
    loaded = load_scores([upstream_files["scores"]], bench.queries)
    board = aggregate(loaded.evaluations, bench.queries, bench.requirements)
    _same_floats(board.official, expected)

    # Float addition is order-dependent: summing "full" (lines shuffled) in index order instead of
    # file order (calculate_domain_scores walks scores_data in insertion order) changes some bits.
    ev = loaded.evaluations
    index_order = aggregate(ev.assign(line=ev["index"]), bench.queries, bench.requirements).official
    full = board.official["Model"] == "full"
    assert not board.official[full].drop(columns="Model").equals(index_order[full].drop(columns="Model"))

    got = board.official.set_index("Model")
    # aggregate_scores: "Count" is query_count, the number of lines read: a repeated index counts
    # once per line (300 queries, 3 extra lines).
    assert got.loc["resumed", "Count"] == 303 and got.loc["full", "Count"] == 1000
    # calculate_requirement_scores: `... if len(score_R) else 0`.
    assert got.loc["sparse", "length_R"] == 0 and got.loc["sparse", "length_C"] == 0
    assert ("sparse", "length_R") in board.no_data
    assert np.isnan(board.scaled().set_index("Model").loc["sparse", "length_R"])
    # The repeats are reported with file:line, not silently merged.
    notes = [str(n) for n in loaded.notes]
    resumed = upstream_files["scores"] / "resumed.jsonl"
    assert [n.split(": upstream")[0] for n in notes] == [
        f"{resumed}:121: index: index 120 repeats line 120",
        f"{resumed}:122: index: index 120 repeats line 120",
        f"{resumed}:303: index: index 6 repeats line 6",
    ]

    # The workbook's first sheet holds the same cells as upstream's workbook (16 significant digits,
    # as openpyxl writes them).
    ours = write_xlsx(board, tmp_path / "wbray.xlsx")
    sheets = []
    for path in (tmp_path / "official.xlsx", ours):
        rows = list(openpyxl.load_workbook(path, read_only=True).worksheets[0].iter_rows(values_only=True))
        sheets.append((rows[0], sorted(rows[1:], key=lambda r: str(r[0]))))
    assert sheets[0] == sheets[1]


def test_dedupe_keeps_the_last_line(
    official_dir: Path, bench: Benchmark, upstream_files: dict[str, Path], tmp_path: Path
) -> None:
    expected = run_official(official_dir, upstream_files["deduped"], tmp_path / "official.xlsx")
    loaded = load_scores([upstream_files["scores"] / "resumed.jsonl"], bench.queries, dedupe=True)
    board = aggregate(loaded.evaluations, bench.queries, bench.requirements)
    _same_floats(board.official, expected)
    assert board.official["Count"].tolist() == [300]
    assert all("kept only the last line" in str(n) for n in loaded.notes) and len(loaded.notes) == 3


def test_run_rows_sum_in_index_order(bench: Benchmark, upstream_files: dict[str, Path]) -> None:
    """Rows without a source line (a run's) are summed in index order: what the official script gives on
    the run's export, whose lines `wbray export` writes sorted by index."""
    loaded = load_scores([upstream_files["scores"] / "full.jsonl"], bench.queries)
    shuffled = loaded.evaluations.sample(frac=1.0, random_state=3).drop(columns=["line"])
    as_run = aggregate(shuffled, bench.queries, bench.requirements).official
    # The same file with its lines sorted by index.
    in_index_order = loaded.evaluations.assign(line=loaded.evaluations["index"])
    _same_floats(as_run, aggregate(in_index_order, bench.queries, bench.requirements).official)
