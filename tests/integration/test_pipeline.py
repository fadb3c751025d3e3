"""`wbray run` mechanics on a real local Ray cluster with the real SmolLM2 model (tiny slices).

Asserts mechanics only — rows complete, scores parse and lie in 1-10 under constrained decoding,
failures become counted rows, resume recomputes only what is missing, re-scoring reuses
generations — never that the 135M model writes or judges well.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.on_disk import expected_ids, rows_on_disk
from wbray.api import load
from wbray.config import load_config
from wbray.dataset import Benchmark, load_benchmark
from wbray.storage import RunLayout, list_files, read_generations, read_manifest, read_scores

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bench(official_dir: Path) -> Benchmark:
    full = load_benchmark(official_dir)
    # The shortest English queries keep judge prompts (and CPU time) small.
    shortest = sorted((q for q in full.queries if q.lang == "en"), key=lambda q: len(q.query))[:3]
    return full.select(indices=sorted(q.index for q in shortest))


def _config(tmp: Path, model_dir: Path, **judge: object) -> object:
    judge_yaml = "\n".join(f"  {k}: {v}" for k, v in judge.items())
    f = tmp / "cfg.yaml"
    f.write_text(
        f"""
candidates:
  - name: smol
    engine: {{backend: transformers, model: "{model_dir}", batch_size: 2}}
    sampling: {{max_tokens: 24, temperature: 0, repetition_penalty: 1.15}}
generation:
  resources: {{actors: 1, num_cpus: 1, batch_size: 2}}
judge:
  engine: {{backend: transformers, model: "{model_dir}", batch_size: 5}}
  resources: {{actors: 1, num_cpus: 1, batch_size: 5}}
{judge_yaml}
"""
    )
    return load_config(f)


def _parts(root: Path, kind: str) -> dict[str, float]:
    return {p: os.path.getmtime(p) for p in list_files(str(root / kind), ".parquet")}


def _select(bench: Benchmark, official_dir: Path) -> list[str]:
    """Overrides that make a config select exactly ``bench``'s queries."""
    return [f"data.data_dir={official_dir}", f"data.indices={[q.index for q in bench.queries]}"]


def test_run_resume_and_rescore(
    ray_cluster: None, bench: Benchmark, smollm2_dir: Path, tmp_path: Path, official_dir: Path
) -> None:
    import wbray

    out = tmp_path / "run"
    two = bench.select(limit=2)
    strict = _config(
        tmp_path,
        smollm2_dir,
        name="strict",
        constrained="true",
        reason_max_chars=40,
        max_reasks=1,
        sampling="{max_tokens: 176, seed: 1}",
    )
    seen: list[tuple[dict, dict]] = []
    summary = wbray.evaluate(
        strict,  # type: ignore[arg-type]
        out=str(out),
        overrides=_select(two, official_dir),
        on_progress=lambda c, t: seen.append((dict(c), dict(t))),
    )
    layout = RunLayout.at(str(out))
    # Counted on disk (every row of every part, before de-duplication) against the stated rows.
    expected = expected_ids(load(strict, overrides=_select(two, official_dir)))  # type: ignore[arg-type]
    rows_on_disk(str(out / "generations")).assert_exact(expected.generations, "generations")
    rows_on_disk(str(out / "scores")).assert_exact(expected.scores, "verdicts")

    gens = read_generations(layout).to_pandas()
    assert len(gens) == 2 and set(gens["status"]) == {"ok"}
    assert (gens["completion_tokens"] > 0).all()
    scores = read_scores(layout, "strict").to_pandas()
    assert len(scores) == 10  # 2 queries x 5 criteria
    # Constrained decoding: every reply parses, every score is an integer 1..10.
    assert set(scores["status"]) == {"ok"}, scores[scores["status"] != "ok"][["error", "raw"]].to_dict(
        "records"
    )
    assert scores["score"].between(1, 10).all() and (scores["score"] % 1 == 0).all()
    assert scores["reason"].str.len().max() <= 40
    assert scores["prompt_version"].nunique() == 1
    manifest = read_manifest(layout)
    assert manifest is not None and manifest.status == "complete"
    assert manifest.row_counts["scores"].model_dump() == {"total": 10, "ok": 10, "failed": 0}
    assert manifest.tokens["judge"].completion > 0 and manifest.packages["ray"].startswith("2.60")
    assert seen and seen[-1][0]["score"]["rows"] == 10 and seen[-1][1] == {"generate": 2, "score": 10}
    # Hive-style partitions.
    assert all("/model=smol/" in p for p in _parts(out, "generations"))
    assert all("/judge=strict/model=smol/" in p for p in _parts(out, "scores"))

    # Same command again: nothing recomputed, nothing rewritten.
    before = {**_parts(out, "generations"), **_parts(out, "scores")}
    again = wbray.evaluate(strict, out=str(out), overrides=_select(two, official_dir))  # type: ignore[arg-type]
    assert again.computed == {"generate:smol": 0, "score:smol": 0}
    assert {**_parts(out, "generations"), **_parts(out, "scores")} == before

    # A wider selection computes only the new query.
    wider = wbray.evaluate(strict, out=str(out), overrides=_select(bench, official_dir))  # type: ignore[arg-type]
    assert wider.computed == {"generate:smol": 1, "score:smol": 5}
    scores = read_scores(layout, "strict").to_pandas()
    expected = expected_ids(load(strict, overrides=_select(bench, official_dir)))  # type: ignore[arg-type]
    rows_on_disk(str(out / "generations")).assert_exact(expected.generations, "generations")
    rows_on_disk(str(out / "scores")).assert_exact(expected.scores, "verdicts")
    assert len(scores) == 15

    # Re-score with an unconstrained judge: generations are reused, failures are rows, not zeros.
    gen_parts = _parts(out, "generations")
    free = _config(
        tmp_path, smollm2_dir, name="free", constrained="false", max_reasks=0, sampling="{max_tokens: 40}"
    )
    rescored = wbray.score(free, out=str(out), overrides=_select(bench, official_dir))  # type: ignore[arg-type]
    assert rescored.computed == {"generate:smol": 0, "score:smol": 15}
    assert _parts(out, "generations") == gen_parts
    fs = read_scores(layout, "free").to_pandas()
    failed = fs[fs["status"] == "failed"]
    free_ids = expected_ids(load(free, overrides=_select(bench, official_dir))).scores  # type: ignore[arg-type]
    rows_on_disk(str(out / "scores" / "judge=free")).assert_exact(free_ids, "verdicts of the second judge")
    assert len(fs) == 15 and len(failed) >= 1
    assert failed["score"].isna().all() and failed["error"].str.startswith("unparseable reply").all()
    assert failed["raw"].notna().all()

    from wbray.aggregate import aggregate
    from wbray.storage import read_evaluations

    board = aggregate(read_evaluations(layout, "free"), bench.queries, bench.requirements)
    fails = board.failures.set_index("Model").loc["smol"]
    assert fails["evaluations_failed"] == len(failed)
    ok = fs[fs["status"] == "ok"]
    overall = board.official.set_index("Model").loc["smol", "Overall"]
    if len(ok):
        assert overall == pytest.approx(ok["score"].mean())  # failures excluded, not zero-filled
    # The first judge's scores are untouched by the second.
    assert len(read_scores(layout, "strict")) == 15
    assert summary.models == ["smol"]
