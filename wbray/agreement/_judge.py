"""Scoring the humans' responses with a judge under each criteria mode.

The judge calls go through the same scoring step as a benchmark run (:func:`wbray.steps.score_batch`:
the same prompt, strict parsing and bounded re-asks), over any injected
:class:`~wbray.engines.Engine`. Only the criteria differ between modes:

- ``global``: the same rubric for every query;
- ``domain``: the rubric of the query's primary domain;
- ``query``: the query's own checklist (from the file or the benchmark).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from wbray.agreement._compute import MODES, AgreementReport, agreement_rates
from wbray.agreement._human import HumanJudgments, HumanResponse
from wbray.agreement._rubrics import Rubrics, load_rubrics
from wbray.config import JudgeConfig, content_hash
from wbray.engines import Engine
from wbray.errors import DataError, Defect, WbrayError
from wbray.prompts import JudgeTemplate
from wbray.records import Criterion
from wbray.steps import judge_identity, score_batch

#: Rows handed to the engine per :func:`~wbray.steps.score_batch` call.
DEFAULT_BATCH = 64


def _criteria(
    resp: HumanResponse, mode: str, rubrics: Rubrics, source: str
) -> tuple[Criterion, ...] | Defect:
    if mode == "global":
        return rubrics.global_criteria
    if mode == "domain":
        if resp.domain1 is None:
            return Defect(
                source, resp.line, "domain1", "needed by the 'domain' mode (give domain1 or an index)"
            )
        found = rubrics.domain.get(resp.domain1)
        if found is None:
            known = ", ".join(repr(d) for d in rubrics.domain)
            return Defect(
                source, resp.line, "domain1", f"no rubric for {resp.domain1!r} (rubrics exist for {known})"
            )
        return found
    if resp.checklist is None:
        return Defect(
            source, resp.line, "checklist", "needed by the 'query' mode (give checklist or an index)"
        )
    return resp.checklist


def agreement_rows(
    human: HumanJudgments,
    modes: Sequence[str],
    judge: JudgeConfig,
    template: JudgeTemplate,
    rubrics: Rubrics | None = None,
) -> list[dict[str, Any]]:
    """The scoring rows for every (mode, response, criterion, repeat), in the scoring step's schema.

    Each row also carries ``mode`` and ``key`` (the response's key), which the scoring step keeps.

    Raises:
        WbrayError: an unknown mode.
        DataError: responses lacking what a mode needs (their file lines), all at once.
    """
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise WbrayError(f"unknown criteria mode(s) {unknown}; allowed: {', '.join(MODES)}")
    rubrics = rubrics or load_rubrics()
    ident = judge_identity(judge, template)
    rows: list[dict[str, Any]] = []
    defects: list[Defect] = []
    for mode in modes:
        for resp in human.responses.values():
            crits = _criteria(resp, mode, rubrics, human.source)
            if isinstance(crits, Defect):
                defects.append(crits)
                continue
            for crit in crits:
                for repeat in range(judge.repeats):
                    rows.append(
                        {
                            "row_id": content_hash(
                                {
                                    **ident,
                                    "mode": mode,
                                    "key": resp.key,
                                    "criterion": crit.name,
                                    "repeat": repeat,
                                }
                            ),
                            "gen_row_id": resp.key,
                            "model": f"human-{mode}",
                            "judge": judge.name,
                            "index": resp.index if resp.index is not None else -1,
                            "criterion": crit.name,
                            "repeat": repeat,
                            "query": resp.query,
                            "criterion_json": json.dumps(dict(crit.item), ensure_ascii=False),
                            "response": resp.response,
                            "gen_status": "ok",
                            "gen_error": None,
                            "mode": mode,
                            "key": resp.key,
                        }
                    )
    if defects:
        raise DataError(defects)
    return rows


def response_scores(scored_rows: Sequence[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Judge score per (mode, response) and call counts per mode, from scored rows.

    A response's score is the mean of its ok rows (all criteria and repeats), the definition of a
    query score; a response with no ok row has a NaN score.

    Returns:
        ``(scores with columns mode, key, score, n_ok, n_failed; judging with mode, calls, ok, failed)``.
    """
    df = pd.DataFrame(list(scored_rows), columns=["mode", "key", "score", "status"])
    df["ok"] = (df["status"] == "ok").astype("int64")
    df["failed"] = 1 - df["ok"]
    df["okscore"] = df["score"].where(df["status"] == "ok")
    per = df.groupby(["mode", "key"], sort=False).agg(
        score=("okscore", "mean"), n_ok=("ok", "sum"), n_failed=("failed", "sum")
    )
    judging = df.groupby("mode", sort=False).agg(
        calls=("ok", "size"), ok=("ok", "sum"), failed=("failed", "sum")
    )
    return per.reset_index(), judging.reset_index()


async def judge_agreement(
    human: HumanJudgments,
    engine: Engine,
    judge: JudgeConfig,
    template: JudgeTemplate,
    *,
    modes: Sequence[str] = MODES,
    rubrics: Rubrics | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> AgreementReport:
    """Score every judged response with ``engine`` under each mode, then compute the agreement.

    Args:
        human: The loaded human judgments.
        engine: The judge engine (any backend; a scripted one in tests).
        judge: Judge settings (sampling, repeats, re-asks, constrained decoding).
        template: The judge prompt.
        modes: Criteria modes to compare, among ``global``, ``domain``, ``query``.
        rubrics: Static rubrics (default: the bundled ones).
        batch_size: Rows per scoring call.
        progress: Called with (rows done, rows total) after each batch.

    Returns:
        The :class:`AgreementReport`, with ``judging`` call counts and ``meta`` (judge, template,
        rubric versions, modes).
    """
    rubrics = rubrics or load_rubrics()
    rows = agreement_rows(human, modes, judge, template, rubrics)
    scored: list[dict[str, Any]] = []
    for start in range(0, len(rows), max(1, batch_size)):
        scored += await score_batch(engine, rows[start : start + batch_size], template, judge)
        if progress is not None:
            progress(len(scored), len(rows))
    scores, judging = response_scores(scored)
    report = agreement_rates(human, scores, modes)
    meta = {
        "source": human.source,
        "judge": judge.name,
        "engine": engine.model_id,
        "template": template.version,
        "rubrics": rubrics.version,
        "modes": list(modes),
        "repeats": judge.repeats,
    }
    return dataclasses.replace(report, judging=judging, meta=meta)
