"""The plan of a run: per candidate, what is done, what to generate and what to score.

Pure (no Ray, no storage I/O): :func:`plan_run` takes the config, the selected benchmark, the ids
of what the run directory already holds and what served endpoints said they serve, and returns a
typed :class:`RunPlan`. The executor (``_execute.py``) runs a plan; tests check plans directly.

Generations already stored are named by the part file that holds them, never by their text: the
executor reads them inside the cluster.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wbray.config import CandidateConfig, JudgeConfig, SamplingParams, StageResources, WbrayConfig
from wbray.errors import ConfigError, WbrayError
from wbray.prompts import JudgeTemplate
from wbray.records import Query
from wbray.steps import candidate_sampling, generation_rows, judge_identity, score_row_id
from wbray.storage import StoredRow


def generation_pool(model: str) -> str:
    """The name of a candidate's generation pool (progress keys, manifests, identities)."""
    return f"generate:{model}"


def judge_pool(judge: str) -> str:
    """The name of a judge's scoring pool."""
    return f"score:{judge}"


@dataclass(frozen=True)
class GenerationWork:
    """One candidate's pending generations and how to run them.

    Attributes:
        model: The candidate's name.
        engine: Its engine config.
        resources: Its generation pool.
        sampling: The effective sampling.
        rows: The generation rows to compute (ids, keys, rendered messages; no answers).
    """

    model: str
    engine: Any
    resources: StageResources
    sampling: SamplingParams
    rows: tuple[dict[str, Any], ...]

    @property
    def pool(self) -> str:
        return generation_pool(self.model)


@dataclass(frozen=True)
class CandidatePlan:
    """What one candidate needs in this run.

    Attributes:
        model: The candidate's name.
        generation: Generations to compute, or None when every answer is stored (or when only
            scoring was asked for).
        generations_total: Generation rows the selection asks for.
        generations_stored: Of those, rows already stored (skipped).
        stored_to_score: Part URI -> ids of stored generations that still lack verdicts.
        scores_total: Verdicts the selection asks for (criteria x repeats per answer).
        scores_done: Of those, verdicts already stored (skipped).
        generation_ids: Ids of every answer the selection asks for: the model's *current*
            answers (a changed config or response file leaves older ones stored but superseded).
    """

    model: str
    generation: GenerationWork | None
    generations_total: int
    generations_stored: int
    stored_to_score: Mapping[str, tuple[str, ...]]
    scores_total: int
    scores_done: int
    generation_ids: tuple[str, ...] = ()

    @property
    def generations_todo(self) -> int:
        return 0 if self.generation is None else len(self.generation.rows)

    @property
    def scores_todo(self) -> int:
        return self.scores_total - self.scores_done


@dataclass(frozen=True)
class RunPlan:
    """Everything one invocation will compute (see the module docstring).

    Attributes:
        generate: False when the invocation only scores stored answers.
        judge: The judge config.
        template: The judge prompt.
        judge_served: What the judge's endpoint said it serves (None for local engines).
        candidates: One plan per model, in config (or name) order.
        score_ids: Ids of the verdicts to compute for stored answers (answers generated in this
            run are scored in full; their verdicts cannot exist yet).
    """

    generate: bool
    judge: JudgeConfig
    template: JudgeTemplate
    judge_served: Mapping[str, Any] | None
    candidates: tuple[CandidatePlan, ...]
    score_ids: frozenset[str] = field(default_factory=frozenset)

    @property
    def models(self) -> list[str]:
        return [c.model for c in self.candidates]

    @property
    def judge_pool(self) -> str:
        return judge_pool(self.judge.name)

    @property
    def totals(self) -> dict[str, int]:
        """Rows to compute per stage (what progress counts up to)."""
        return {
            "generate": sum(c.generations_todo for c in self.candidates),
            "score": sum(c.scores_todo for c in self.candidates),
        }

    @property
    def work(self) -> list[GenerationWork]:
        return [c.generation for c in self.candidates if c.generation is not None]

    @property
    def stored_parts(self) -> dict[str, tuple[str, ...]]:
        """Part URI -> ids of stored answers to score, over every candidate."""
        merged: dict[str, list[str]] = defaultdict(list)
        for c in self.candidates:
            for part, ids in c.stored_to_score.items():
                merged[part] += ids
        return {part: tuple(ids) for part, ids in sorted(merged.items())}

    @property
    def is_empty(self) -> bool:
        return not any(self.totals.values())

    def pools(self) -> list[tuple[str, Any, StageResources]]:
        """``(pool name, engine config, resources)`` of every pool that will run."""
        out: list[tuple[str, Any, StageResources]] = [(w.pool, w.engine, w.resources) for w in self.work]
        if self.totals["score"]:
            out.append((self.judge_pool, self.judge.engine, self.judge.resources))
        return out


def _score_ids(gen_row_id: str, query: Query, judge: JudgeConfig, ident: Mapping[str, Any]) -> Iterable[str]:
    for crit in query.checklist:
        for repeat in range(judge.repeats):
            yield score_row_id(ident, gen_row_id, crit.name, repeat)


def plan_run(
    config: WbrayConfig,
    queries: Sequence[Query],
    data_version: str,
    template: JudgeTemplate,
    stored: Sequence[StoredRow],
    done_scores: frozenset[str],
    *,
    generate: bool = True,
    served: Mapping[str, Mapping[str, Any] | None] | None = None,
    imported: Mapping[str, Sequence[tuple[str, int]]] | None = None,
    current: Mapping[str, frozenset[str]] | None = None,
) -> RunPlan:
    """Plan one invocation.

    Args:
        config: The evaluation config.
        queries: The selected benchmark queries.
        data_version: The benchmark's data version (part of every generation id).
        template: The judge prompt.
        stored: Every generation row the run directory holds (ids and parts, no text).
        done_scores: Ids of the verdicts the judge already has in the run directory.
        generate: False plans scoring of the stored answers only (every model found there).
        served: Per pool name, what a served engine said it serves (see ``describe_engine``).
        imported: Per candidate given by ``responses:``, ``(row id, index)`` of its imported
            answers (already stored: see ``wbray.steps.imported``).
        current: Per model, the ids of its current answers (from the last run's commit); when
            only scoring, superseded answers of a model listed here are not judged.

    Raises:
        ConfigError: No judge engine, or no candidates to generate with.
        WbrayError: Scoring only, but the run holds no answers for the selected queries.
    """
    judge = config.judge
    if judge.engine is None:
        raise ConfigError(
            "judge.engine is not set: scoring needs a judge model (see configs/quickstart.yaml)"
        )
    served = served or {}
    judge_served = served.get(judge_pool(judge.name))
    ident = judge_identity(judge, template, judge_served)
    by_index = {q.index: q for q in queries}
    by_id = {row.row_id: row for row in stored}

    plans: list[CandidatePlan] = []
    score_ids: set[str] = set()

    def candidate_plan(model: str, wanted: Sequence[tuple[str, int]], work: GenerationWork | None) -> None:
        # wanted: (generation row id, query index) of every answer the selection asks for.
        stored_here = [(rid, i) for rid, i in wanted if rid in by_id]
        to_score: dict[str, list[str]] = defaultdict(list)
        total = done = 0
        for rid, index in wanted:
            ids = list(_score_ids(rid, by_index[index], judge, ident))
            total += len(ids)
            if rid not in by_id:
                continue  # generated in this run: every verdict is new
            missing = [s for s in ids if s not in done_scores]
            done += len(ids) - len(missing)
            if missing:
                to_score[by_id[rid].part].append(rid)
                score_ids.update(missing)
        plans.append(
            CandidatePlan(
                model=model,
                generation=work,
                generations_total=len(wanted),
                generations_stored=len(stored_here),
                stored_to_score={part: tuple(ids) for part, ids in sorted(to_score.items())},
                scores_total=total,
                scores_done=done,
                generation_ids=tuple(rid for rid, _ in wanted),
            )
        )

    imported = imported or {}
    current = current or {}
    if generate:
        if not config.candidates:
            raise ConfigError("no candidates: list the models to evaluate under `candidates:`")
        for cand in config.candidates:
            if cand.engine is None:
                if cand.name not in imported:
                    raise ConfigError(f"candidate {cand.name!r}: its responses were not imported")
                candidate_plan(cand.name, list(imported[cand.name]), None)
                continue
            rows = generation_rows(
                queries, cand, config.generation, data_version, served.get(generation_pool(cand.name))
            )
            pending = tuple(r for r in rows if r["row_id"] not in by_id)
            work = (
                GenerationWork(
                    model=cand.name,
                    engine=cand.engine,
                    resources=_resources(cand, config),
                    sampling=candidate_sampling(cand, config.generation),
                    rows=pending,
                )
                if pending
                else None
            )
            candidate_plan(cand.name, [(r["row_id"], r["index"]) for r in rows], work)
    else:
        by_model: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for row in sorted(stored, key=lambda r: (r.model, r.index, r.sample)):
            if row.index in by_index and (row.model not in current or row.row_id in current[row.model]):
                by_model[row.model].append((row.row_id, row.index))
        for model, ids in imported.items():
            # A response file is the truth about its model: answers from an older file are not judged.
            by_model[model] = sorted(ids, key=lambda t: (t[1], t[0]))
        if not by_model:
            raise WbrayError("no stored generations for the selected queries; run `wbray run` first")
        for model in sorted(by_model):
            candidate_plan(model, by_model[model], None)

    return RunPlan(
        generate=generate,
        judge=judge,
        template=template,
        judge_served=judge_served,
        candidates=tuple(plans),
        score_ids=frozenset(score_ids),
    )


def _resources(candidate: CandidateConfig, config: WbrayConfig) -> StageResources:
    return candidate.resources or config.generation.resources
