"""Statistics and notes in every report: leaderboards show ``score ± half-width`` from a query
bootstrap, and a run judged with wbray's own prompt says so on every report."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

import wbray.api as api
from wbray.aggregate import rich_tables, to_markdown
from wbray.aggregate._html import to_html
from wbray.dataset import example_dir, load_benchmark
from wbray.errors import ConfigError
from wbray.storage import RunLayout, commit_stage, write_manifest, write_scores


def _percentile_half_width(query_sums: np.ndarray, query_counts: np.ndarray, draws: np.ndarray) -> float:
    """An independent cluster bootstrap of the micro-averaged Overall (queries resampled)."""
    stats = [query_sums[d].sum() / query_counts[d].sum() for d in draws]
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(high - low) / 2


def test_the_leaderboard_shows_score_plus_minus_half_width(tmp_path: Path) -> None:
    built = api.aggregate(["example"], data_dir="example", resamples=400, seed=7)
    board = built.board
    assert board.intervals is not None and set(board.intervals["scope"]) >= {"overall", "domain1"}
    md = to_markdown(board)
    model = board.models[0]
    overall = board.official.set_index("Model").loc[model, "Overall"]
    half = board.half_width(model, "overall", "Overall")
    assert half is not None and half > 0
    # The Markdown row of the model carries the x10 score and the x10 half-width.
    row = next(line for line in md.splitlines() if line.startswith(f"| {model}"))
    assert f"{overall * 10:.2f} ± {half * 10:.2f}" in row
    assert "half the 95% bootstrap interval" in md
    # The half-width is a real bootstrap of the model's query scores: the same order of size as
    # an independent percentile bootstrap of the same data (different draws, so not equal).
    ev = pd.concat(
        [
            pd.read_json(p, lines=True).assign(model=p.stem)
            for p in (example_dir() / "results").glob("*.jsonl")
        ]
    )
    mine = ev[ev["model"] == model]
    sums = np.array([sum(s[0]["score"] for s in r.values()) for r in mine["scores"]], dtype=float)
    counts = np.array([len(r) for r in mine["scores"]], dtype=float)
    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(sums), size=(2000, len(sums)))
    independent = _percentile_half_width(sums, counts, draws)
    assert 0.5 * independent < half < 2 * independent
    # Every format shows it; the workbook holds the whole interval table.
    assert "±" in to_html(board) and any(
        "±" in str(c) for t in rich_tables(board) for c in t.columns[1]._cells
    )
    api.aggregate(["example"], data_dir="example", resamples=50, out=str(tmp_path / "r"))
    wb = openpyxl.load_workbook(tmp_path / "r" / "leaderboard.xlsx")
    assert "Intervals" in wb.sheetnames
    # Without resamples, no intervals and no ±.
    plain = api.aggregate(["example"], data_dir="example", resamples=0).board
    assert plain.intervals is None and "±" not in to_markdown(plain)
    # Reproducible with a seed.
    again = api.aggregate(["example"], data_dir="example", resamples=400, seed=7).board
    assert again.half_width(model, "overall", "Overall") == half


@pytest.mark.parametrize("source", ["builtin", "official"])
def test_a_run_judged_with_the_builtin_prompt_is_marked_on_every_report(source: str, tmp_path: Path) -> None:
    bench = load_benchmark("example")
    run = tmp_path / "run"
    layout = RunLayout.at(str(run))
    rows = [
        {
            "row_id": f"{q.index}-{c.name}",
            "gen_row_id": f"g{q.index}",
            "model": "m",
            "judge": "j",
            "index": q.index,
            "criterion": c.name,
            "repeat": 0,
            "score": 6.0,
            "status": "ok",
        }
        for q in bench.queries
        for c in q.checklist
    ]
    write_scores(layout, "j", "m", rows)
    commit_stage(layout.scores("j", "m"))
    write_manifest(
        layout,
        {"status": "complete", "data": {"source": "example"}, "judge_template": {"source": source}},
    )
    board = api.aggregate([str(run)], resamples=0).board
    marked = [n for n in board.notes if "not the official one" in n]
    assert bool(marked) == (source == "builtin")
    if marked:
        assert str(run) in marked[0]
        assert marked[0] in to_markdown(board) and re.search("not the official one", to_html(board))


def _query_means(path: Path) -> pd.Series:
    """Per query: the mean of its criterion scores, read straight from an upstream score file."""
    frame = pd.read_json(path, lines=True)
    return pd.Series(
        [np.mean([s[0]["score"] for s in r.values()]) for r in frame["scores"]], index=frame["index"]
    )


def test_every_report_compares_each_model_with_the_leader_or_a_baseline(tmp_path: Path) -> None:
    results = example_dir() / "results"
    means = {p.stem: _query_means(p) for p in results.glob("*.jsonl")}
    built = api.aggregate(["example"], data_dir="example", resamples=500, seed=3, out=str(tmp_path / "r"))
    board = built.board
    leader = str(board.official.sort_values("Overall", ascending=False)["Model"].iloc[0])
    (other,) = [m for m in board.models if m != leader]
    t = board.comparisons
    assert t is not None and list(t["model"]) == [other] and list(t["reference"]) == [leader]
    row = t.iloc[0]
    common = means[other].index.intersection(means[leader].index)
    diff = (means[other][common] - means[leader][common]).mean()
    assert row["n_queries"] == len(common) and row["difference"] == pytest.approx(diff)
    assert row["low"] <= row["difference"] <= row["high"] and 0 < row["p_value"] <= 1
    # Markdown, HTML, terminal and the workbook all show it, on the x10 scale.
    shown = f"{diff * 10:+.2f}"
    md = to_markdown(board)
    assert "## Paired comparisons" in md
    assert any(line.startswith(f"| {other} | {leader} | {shown} |") for line in md.splitlines())
    assert "Paired comparisons" in to_html(board) and shown in to_html(board)
    assert any(t.title and t.title.startswith("Paired comparisons") for t in rich_tables(board))
    wb = openpyxl.load_workbook(tmp_path / "r" / "leaderboard.xlsx")
    assert wb["Comparisons"]["A2"].value == other and wb["Comparisons"]["B2"].value == leader

    # A named baseline is the reference instead; one that is not a model is a clear error.
    flipped = api.aggregate(["example"], data_dir="example", resamples=500, seed=3, baseline=other).board
    assert flipped.comparisons is not None
    assert list(flipped.comparisons["model"]) == [leader]
    assert flipped.comparisons["difference"].iloc[0] == pytest.approx(-diff)
    with pytest.raises(ConfigError, match="baseline 'nobody' is not a model of these results"):
        api.aggregate(["example"], data_dir="example", resamples=10, baseline="nobody")
    # No bootstrap asked for: no comparison either, and no section.
    plain = api.aggregate(["example"], data_dir="example", resamples=0).board
    assert plain.comparisons is None and "Paired comparisons" not in to_markdown(plain)


def test_a_run_judged_twice_per_criterion_reports_the_judge_noise(tmp_path: Path) -> None:
    bench = load_benchmark("example")
    run = tmp_path / "run"
    layout = RunLayout.at(str(run))
    # Repeat 0 scores 5 and repeat 1 scores 7 on every criterion: each cell's two calls differ by
    # 2, so one judge call's variance around its cell mean is 2 (sd sqrt 2).
    rows = [
        {
            "row_id": f"{q.index}-{c.name}-{r}",
            "gen_row_id": f"g{q.index}",
            "model": "m",
            "judge": "j",
            "index": q.index,
            "criterion": c.name,
            "repeat": r,
            "score": 5.0 + 2 * r + (q.index % 3),
            "status": "ok",
        }
        for q in bench.queries
        for c in q.checklist
        for r in (0, 1)
    ]
    write_scores(layout, "j", "m", rows)
    commit_stage(layout.scores("j", "m"))
    write_manifest(layout, {"status": "complete", "data": {"source": "example"}})
    board = api.aggregate([str(run)], resamples=0).board
    assert board.noise is not None
    mine = board.noise.set_index("model").loc["m"]
    assert mine["cells"] == sum(len(q.checklist) for q in bench.queries)
    assert mine["within_sd"] == pytest.approx(np.sqrt(2))
    md = to_markdown(board)
    assert "## Judge noise" in md and "| m |" in md.split("## Judge noise")[1]
    assert "Judge noise" in to_html(board)
    # Judged once: no noise section.
    once = api.aggregate(["example"], data_dir="example", resamples=0).board
    assert once.noise is None and "Judge noise" not in to_markdown(once)
