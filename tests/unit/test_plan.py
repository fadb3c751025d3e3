"""The plan of a run, built and checked without Ray: what is done, what to generate, what to score."""

from __future__ import annotations

import subprocess
import sys

import pytest

from wbray.config import load_config
from wbray.dataset import load_benchmark
from wbray.errors import ConfigError, WbrayError
from wbray.pipelines._plan import plan_run
from wbray.prompts import load_judge_template
from wbray.steps import generation_rows, scoring_rows
from wbray.storage import StoredRow

BENCH = load_benchmark("example").select(indices=[1, 2, 3])
TEMPLATE = load_judge_template(None, "builtin")


def _config(*extra: str):  # type: ignore[no-untyped-def]
    return load_config(
        None,
        [
            "candidates=[{name: a, engine: {backend: transformers, model: smollm2}},"
            " {name: b, engine: {backend: transformers, model: smollm2},"
            "  sampling: {temperature: 0}, resources: {actors: 2, num_cpus: 0.25}}]",
            "judge.engine={backend: transformers, model: smollm2}",
            *extra,
        ],
    )


def _stored(config, model: str, indices: list[int], part: str, status: str = "ok") -> list[StoredRow]:  # type: ignore[no-untyped-def]
    cand = next(c for c in config.candidates if c.name == model)
    rows = generation_rows(BENCH.queries, cand, config.generation, BENCH.data_version)
    return [StoredRow(r["row_id"], model, r["index"], 0, status, part) for r in rows if r["index"] in indices]


def _verdict_ids(config, stored: list[StoredRow]) -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for row in stored:
        gen = {"row_id": row.row_id, "model": row.model, "index": row.index, "status": "ok"}
        out += [r["row_id"] for r in scoring_rows(gen, BENCH.get(row.index), config.judge, TEMPLATE)]
    return out


def _plan(config, stored=(), done=frozenset(), **kw):  # type: ignore[no-untyped-def]
    return plan_run(config, BENCH.queries, BENCH.data_version, TEMPLATE, list(stored), done, **kw)


def test_a_fresh_run_generates_and_scores_everything() -> None:
    config = _config()
    plan = _plan(config)
    assert plan.models == ["a", "b"]
    assert plan.totals == {"generate": 6, "score": 30}  # 2 models x 3 queries x 5 criteria
    assert [w.model for w in plan.work] == ["a", "b"]
    assert plan.work[1].resources.actors == 2  # the candidate's own pool
    assert plan.work[0].resources == config.generation.resources
    assert plan.work[1].sampling.temperature == 0 and plan.work[0].sampling.temperature == 0.7
    # One pool per candidate and ONE judge pool for all of them.
    assert [p[0] for p in plan.pools()] == ["generate:a", "generate:b", "score:judge"]
    assert plan.stored_parts == {} and not plan.score_ids
    assert all("response" not in r for w in plan.work for r in w.rows)  # no answer text in a plan


def test_resume_plans_only_what_is_missing() -> None:
    config = _config()
    a = _stored(config, "a", [1, 2, 3], "/run/generations/model=a/part-1.parquet")
    b = _stored(config, "b", [1], "/run/generations/model=b/part-2.parquet")
    verdicts = _verdict_ids(config, a)
    done = frozenset(verdicts[:12])  # query 1 and 2 of model a fully scored, query 3 twice
    plan = _plan(config, a + b, done)
    by = {c.model: c for c in plan.candidates}
    assert by["a"].generation is None and by["a"].generations_stored == 3
    assert (by["a"].scores_total, by["a"].scores_done, by["a"].scores_todo) == (15, 12, 3)
    assert by["a"].stored_to_score == {"/run/generations/model=a/part-1.parquet": (a[2].row_id,)}
    assert by["b"].generations_todo == 2 and by["b"].generations_stored == 1
    assert [r["index"] for r in by["b"].generation.rows] == [2, 3]  # type: ignore[union-attr]
    assert (by["b"].scores_total, by["b"].scores_done) == (15, 0)
    assert plan.score_ids == frozenset(verdicts[12:]) | frozenset(_verdict_ids(config, b))
    assert plan.totals == {"generate": 2, "score": 3 + 15}


def test_nothing_to_do_is_an_empty_plan() -> None:
    config = _config()
    stored = _stored(config, "a", [1, 2, 3], "p1") + _stored(config, "b", [1, 2, 3], "p2")
    plan = _plan(config, stored, frozenset(_verdict_ids(config, stored)))
    assert plan.is_empty and plan.pools() == []


def test_a_changed_sampling_or_a_swapped_served_model_is_new_work() -> None:
    config = _config()
    stored = _stored(config, "a", [1, 2, 3], "p1")
    hotter = _config("generation.sampling.temperature=1.2")
    assert _plan(hotter, stored).totals["generate"] == 6  # a's stored answers are another version
    served = {"generate:a": {"id": "a", "root": "/weights/v2"}}
    assert _plan(config, stored, served=served).candidates[0].generations_todo == 3
    judge_swapped = {"score:judge": {"id": "critic", "root": "/critic-v2"}}
    plan = _plan(config, stored, frozenset(_verdict_ids(config, stored)), served=judge_swapped)
    assert plan.candidates[0].scores_todo == 15  # same answers, a new judge: every verdict again


def test_scoring_only_takes_every_stored_model_in_the_selection() -> None:
    config = _config()
    stored = [*_stored(config, "a", [1, 2], "p1"), StoredRow("x1", "zeta", 1, 0, "ok", "p9")]
    stored += [StoredRow("x2", "zeta", 12, 0, "ok", "p9")]  # not selected
    plan = _plan(config, stored, generate=False)
    assert plan.models == ["a", "zeta"] and plan.work == []
    assert {c.model: c.scores_todo for c in plan.candidates} == {"a": 10, "zeta": 5}
    assert plan.stored_parts == {"p1": (stored[0].row_id, stored[1].row_id), "p9": ("x1",)}
    with pytest.raises(WbrayError, match="no stored generations"):
        _plan(config, [], generate=False)


def test_config_errors_come_before_any_work() -> None:
    with pytest.raises(ConfigError, match=r"judge\.engine is not set"):
        _plan(load_config(None, ["candidates=[{name: a, engine: {backend: transformers}}]"]))
    with pytest.raises(ConfigError, match="no candidates"):
        _plan(load_config(None, ["judge.engine={backend: transformers}"]))


def test_planning_imports_no_ray_and_import_wbray_stays_light() -> None:
    code = (
        "import sys, wbray, wbray.pipelines, wbray.pipelines._plan, wbray.api; "
        "heavy = sorted(m for m in ('ray', 'torch', 'transformers', 'vllm') if m in sys.modules); "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    light = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, wbray; print('pydantic' in sys.modules, callable(wbray.evaluate))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    # `import wbray` alone loads no config machinery either; the API appears on first use.
    assert light.stdout.split() == ["False", "True"]
