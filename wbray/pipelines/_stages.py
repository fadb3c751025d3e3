"""Ray Data stages: thin shims that wire the pure steps to an engine, storage and progress.

Each stage is a callable class (one engine per actor, loaded once in ``__init__``) that checks its
input columns, runs the step on the batch, writes the batch's results as one Parquet part (so
finished work survives a crash), reports progress, and passes the rows on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd
import ray

from wbray.config import JudgeConfig, SamplingParams
from wbray.engines import Completion, create_engine
from wbray.prompts import JudgeTemplate
from wbray.records import Query
from wbray.steps import generate_batch, score_batch, scoring_rows
from wbray.steps.generation import apply_generations
from wbray.steps.scoring import apply_judgements
from wbray.storage import RunLayout, write_generations, write_scores

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0)
class ProgressActor:
    """Counts rows, failures and tokens per stage; stages report to it, the driver polls it."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, float]] = {}

    def add(self, stage: str, rows: int, failed: int, tokens: int) -> None:
        c = self.counts.setdefault(stage, {"rows": 0, "failed": 0, "tokens": 0})
        c["rows"] += rows
        c["failed"] += failed
        c["tokens"] += tokens

    def snapshot(self) -> dict[str, dict[str, float]]:
        return {k: dict(v) for k, v in self.counts.items()}


def records(batch: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as plain dicts with None (not NaN) for missing values."""
    return [{k: (None if _missing(v) else v) for k, v in row.items()} for row in batch.to_dict("records")]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _report(progress: Any, stage: str, rows: list[dict[str, Any]]) -> None:
    if progress is None:
        return
    failed = sum(1 for r in rows if r.get("status") != "ok")
    tokens = int(sum((r.get("completion_tokens") or 0) for r in rows))
    progress.add.remote(stage, len(rows), failed, tokens)


class _EngineStage:
    def __init__(self, engine_config: Any) -> None:
        self.engine = create_engine(engine_config)
        # One loop per actor: engines keep async clients (HTTP sessions) bound to it.
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:  # pragma: no cover - best effort at actor exit
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(self.engine.close())


class GenerateStage(_EngineStage):
    """Answers generation rows with one candidate's engine and stores each batch."""

    def __init__(
        self, engine_config: Any, sampling: SamplingParams, run_root: str, progress: Any = None
    ) -> None:
        super().__init__(engine_config)
        self.sampling = sampling
        self.layout = RunLayout.at(run_root)
        self.progress = progress

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = self.loop.run_until_complete(generate_batch(self.engine, records(batch), self.sampling))
        return _store_generations(self.layout, rows, self.progress)


class ScoreStage(_EngineStage):
    """Judges scoring rows, parses strictly, re-asks a bounded number of times, stores each batch."""

    def __init__(
        self,
        engine_config: Any,
        judge: JudgeConfig,
        template: JudgeTemplate,
        run_root: str,
        progress: Any = None,
    ) -> None:
        super().__init__(engine_config)
        self.judge = judge
        self.template = template
        self.layout = RunLayout.at(run_root)
        self.progress = progress

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = self.loop.run_until_complete(
            score_batch(self.engine, records(batch), self.template, self.judge)
        )
        return _store_scores(self.layout, self.judge.name, rows, self.progress)


def _store_generations(layout: RunLayout, rows: list[dict[str, Any]], progress: Any) -> pd.DataFrame:
    for model in {r["model"] for r in rows}:
        write_generations(layout, model, [r for r in rows if r["model"] == model])
    _report(progress, "generate", rows)
    return pd.DataFrame(rows)


def _store_scores(layout: RunLayout, judge: str, rows: list[dict[str, Any]], progress: Any) -> pd.DataFrame:
    for model in {r["model"] for r in rows}:
        write_scores(layout, judge, model, [r for r in rows if r["model"] == model])
    _report(progress, "score", rows)
    return pd.DataFrame(rows)


class Explode:
    """Turns each generation row into its scoring rows, skipping those already scored."""

    def __init__(
        self, queries: Mapping[int, Query], judge: JudgeConfig, template: JudgeTemplate, done: frozenset[str]
    ) -> None:
        self.queries = queries
        self.judge = judge
        self.template = template
        self.done = done

    def __call__(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        gen = {k: (None if _missing(v) else v) for k, v in row.items()}
        rows = scoring_rows(gen, self.queries[int(str(gen["index"]))], self.judge, self.template)
        return [r for r in rows if r["row_id"] not in self.done]


# --- processor backends (vLLM through ray.data.llm) -------------------------------------------


def _processor_completion(row: Mapping[str, Any]) -> Completion:
    error = row.get("__inference_error__")
    if error:
        return Completion.failed(str(error))
    return Completion(
        text=str(row.get("generated_text") or ""),
        prompt_tokens=int(row.get("num_input_tokens") or 0),
        completion_tokens=int(row.get("num_generated_tokens") or 0),
    )


class FinishProcessorGenerations:
    """After a vLLM processor: turn its columns into generation results and store them."""

    def __init__(self, run_root: str, progress: Any = None) -> None:
        self.layout = RunLayout.at(run_root)
        self.progress = progress

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        raw = records(batch)
        rows = apply_generations(raw, [_processor_completion(r) for r in raw])
        return _store_generations(self.layout, _strip_processor(rows), self.progress)


class FinishProcessorScores:
    """After a vLLM processor: parse judge replies (single pass) and store them."""

    def __init__(self, judge: JudgeConfig, run_root: str, progress: Any = None) -> None:
        self.judge = judge
        self.layout = RunLayout.at(run_root)
        self.progress = progress

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        raw = records(batch)
        comps = [None if r.get("gen_status") != "ok" else _processor_completion(r) for r in raw]
        rows = apply_judgements(raw, comps)
        return _store_scores(self.layout, self.judge.name, _strip_processor(rows), self.progress)


_PROCESSOR_COLUMNS = ("generated_text", "num_input_tokens", "num_generated_tokens", "__inference_error__")


def _strip_processor(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in _PROCESSOR_COLUMNS} for r in rows]
