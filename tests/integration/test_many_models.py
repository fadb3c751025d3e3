"""Many models in one pipeline: three candidates (the real SmolLM2 under different names and
settings) and one judge in one run, through the public API.

Checks what a user of an evaluation cluster relies on: the judge model is loaded once per judge
actor however many candidates there are; each candidate's answers and verdicts (greedy) equal those
of running it alone; answers already stored are read inside the cluster, so no answer text ever
reaches the driver (a spy on everything the driver reads or receives).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from wbray.config import load_config
from wbray.dataset import load_benchmark
from wbray.storage import RunLayout, read_evaluations, read_generations, read_manifest

pytestmark = pytest.mark.integration

TEXT_COLUMNS = {"response", "raw", "reason", "query", "messages_json", "criterion_json"}


def _candidate(name: str, model_dir: Path, sampling: str = "", system: str | None = None) -> str:
    prompt = f"system_prompt: '{system}', " if system else ""
    return (
        f"{{name: {name}, {prompt}engine: {{backend: transformers, model: '{model_dir}', batch_size: 2}}, "
        f"sampling: {{temperature: 0, max_tokens: 20{sampling}}}, resources: {{actors: 1, num_cpus: 0.25}}}}"
    )


def _config(model_dir: Path, official_dir: Path, indices: list[int], candidates: list[str]) -> Any:
    return load_config(
        None,
        [
            f"candidates=[{', '.join(candidates)}]",
            f"data.data_dir={official_dir}",
            f"data.indices={indices}",
            "judge.name=critic",
            f"judge.engine={{backend: transformers, model: '{model_dir}', batch_size: 1}}",
            "judge.constrained=true",
            "judge.reason_max_chars=24",
            "judge.sampling={temperature: 0, max_tokens: 112}",
            "judge.resources={actors: 1, num_cpus: 0.5}",
        ],
    )


class DriverSpy:
    """Records everything the driver process reads from Parquet or receives from Ray Data."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import pyarrow.parquet as pq
        import ray.data

        self.read_columns: list[list[str] | None] = []
        self.batch_columns: list[set[str]] = []
        self.item_keys: list[set[str]] = []
        real_read, real_iter, real_items = pq.read_table, ray.data.Dataset.iter_batches, ray.data.from_items

        def read_table(source: Any, *args: Any, columns: list[str] | None = None, **kw: Any) -> Any:
            self.read_columns.append(None if columns is None else list(columns))
            return real_read(source, *args, columns=columns, **kw)

        def iter_batches(ds: Any, *args: Any, **kw: Any) -> Iterator[Any]:
            for batch in real_iter(ds, *args, **kw):
                self.batch_columns.append(set(batch.keys() if isinstance(batch, dict) else batch.columns))
                yield batch

        def from_items(items: list[dict[str, Any]], *args: Any, **kw: Any) -> Any:
            self.item_keys += [set(i) for i in items]
            return real_items(items, *args, **kw)

        monkeypatch.setattr(pq, "read_table", read_table)
        monkeypatch.setattr(ray.data.Dataset, "iter_batches", iter_batches)
        monkeypatch.setattr(ray.data, "from_items", from_items)


def test_three_candidates_one_judge_load_and_no_text_in_the_driver(
    ray_cluster: None, smollm2_dir: Path, official_dir: Path, tmp_path: Path
) -> None:
    import wbray

    full = load_benchmark(official_dir)
    indices = sorted(
        q.index for q in sorted((q for q in full.queries if q.lang == "en"), key=lambda q: len(q.query))[:2]
    )
    c1 = _candidate("plain", smollm2_dir)
    c2 = _candidate("penalised", smollm2_dir, sampling=", repetition_penalty: 1.3")
    c3 = _candidate("brief", smollm2_dir, system="Answer in one sentence.")

    # Each of two candidates alone, each in its own run directory.
    alone = {}
    for name, cand in (("plain", c1), ("penalised", c2)):
        out = tmp_path / f"alone-{name}"
        wbray.evaluate(_config(smollm2_dir, official_dir, indices, [cand]), out=str(out))
        alone[name] = out

    # The three together. "plain" already has its answers stored there (copied from its own run),
    # so they are read back inside the cluster; the other two generate in this run.
    together = tmp_path / "together"
    shutil.copytree(alone["plain"] / "generations", together / "generations")
    with pytest.MonkeyPatch.context() as patch:
        spy = DriverSpy(patch)
        summary = wbray.evaluate(_config(smollm2_dir, official_dir, indices, [c1, c2, c3]), out=str(together))

    assert summary.computed == {
        "generate:plain": 0,
        "score:plain": 10,
        "generate:penalised": 2,
        "score:penalised": 10,
        "generate:brief": 2,
        "score:brief": 10,
    }
    assert summary.skipped["generate:plain"] == 2
    manifest = read_manifest(RunLayout.at(str(together)))
    assert manifest is not None and manifest.last is not None
    pools = {p.pool: p for p in manifest.last.pools}
    # One judge pool for all three candidates, its model loaded once per actor.
    assert set(pools) == {"generate:penalised", "generate:brief", "score:critic"}
    assert pools["score:critic"].engine_loads == 1 and pools["score:critic"].actors == 1
    assert pools["score:critic"].rows == 30 and pools["score:critic"].busy_s > 0
    assert all(pools[p].engine_loads == 1 for p in ("generate:penalised", "generate:brief"))
    stages = {(s.stage, s.model): s for s in manifest.last.stages}
    assert stages[("score", "brief")].computed == 10 and stages[("generate", "plain")].skipped == 2

    # Same answers and the same verdicts as each candidate alone.
    layout = RunLayout.at(str(together))
    gens = read_generations(layout).to_pandas().set_index("row_id")
    verdicts = read_evaluations(layout, "critic")
    assert len(gens) == 6 and len(verdicts) == 30 and set(verdicts["status"]) == {"ok"}
    for name, out in alone.items():
        own = RunLayout.at(str(out))
        own_gens = read_generations(own).to_pandas().set_index("row_id")
        pd.testing.assert_series_equal(
            gens.loc[own_gens.index, "response"], own_gens["response"], check_names=False
        )
        cols = ["index", "criterion", "score", "reason", "status"]
        mine = (
            verdicts[verdicts["model"] == name][cols]
            .sort_values(["index", "criterion"])
            .reset_index(drop=True)
        )
        theirs = (
            read_evaluations(own, "critic")[cols].sort_values(["index", "criterion"]).reset_index(drop=True)
        )
        pd.testing.assert_frame_equal(mine, theirs)

    # The spy: the driver read ids and counts only, and received counts only.
    assert spy.read_columns and all(c is not None for c in spy.read_columns), spy.read_columns
    assert not any(TEXT_COLUMNS & set(c or []) for c in spy.read_columns), spy.read_columns
    assert spy.batch_columns and all(not (TEXT_COLUMNS & cols) for cols in spy.batch_columns)
    assert all("response" not in keys for keys in spy.item_keys)
