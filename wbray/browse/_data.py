"""The data a browser page embeds: compact, positional, every text stored once.

Layout (``SCHEMA`` names the version the page's script reads)::

    title, schema
    models:   [name, ...]                              model i is models[i]
    domains:  [domain1, ...]                           leaderboard order
    groups:   [[scope, group, label], ...]             leaderboard columns
    queries:  [[index, domain1 position, domain2, lang, query text, [requirement, ...],
                [[criterion name, description], ...]], ...]    query j is queries[j]
    board:    [[[estimate, low, high, n_queries] per group] per model]      (1-10 scale)
    scores:   [[query score or null per query] per model]
    failures: [[evaluations failed, queries with a failure] per model]
    ev:       [[model, query, criterion (position, or the name when not in the checklist),
                repeat, score or null, reason or null, error or null], ...]
    gen:      [[model, query, sample, response or null, error or null], ...]
    flags:    [[model, query, codes, reasons], ...]
"""

from __future__ import annotations

import math
from typing import Any, Final

import pandas as pd

from wbray.dataset import Benchmark
from wbray.errors import WbrayError
from wbray.records import DOMAIN1_ORDER, LANGS, REQUIREMENTS
from wbray.stats import bootstrap_cis, query_scores

#: Version of the embedded layout; the page's script checks it.
SCHEMA: Final[int] = 1
#: Leaderboard column scopes, in order (domain2 is left to the per-query view: 100 columns is no table).
_BOARD_SCOPES: Final[tuple[str, ...]] = ("overall", "domain1", "lang", "requirement")


def _num(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return None if math.isnan(f) else round(f, 4)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _groups(cis: pd.DataFrame) -> list[tuple[str, str]]:
    present = list(dict.fromkeys(zip(cis["scope"], cis["group"], strict=True)))
    ordered: list[tuple[str, str]] = [("overall", "Overall")]
    ordered += [("domain1", d) for d in DOMAIN1_ORDER]
    ordered += [("lang", lang) for lang in LANGS]
    ordered += [("requirement", f"{r}_{k}") for r in REQUIREMENTS for k in ("R", "C")]
    extra = [g for g in present if g[0] in _BOARD_SCOPES and g not in ordered]
    return [g for g in ordered if g in present] + extra


def _label(scope: str, group: str) -> str:
    if scope == "lang":
        return {"zh": "Chinese", "en": "English"}.get(group, group)
    if scope == "requirement":
        req, kind = group.rsplit("_", 1)
        return f"{req.capitalize()} ({kind})"
    return group


def browser_data(
    evaluations: pd.DataFrame,
    generations: pd.DataFrame | None,
    benchmark: Benchmark,
    *,
    flags: pd.DataFrame | None = None,
    cis: pd.DataFrame | None = None,
    title: str = "WritingBench results",
) -> dict[str, Any]:
    """Everything the page shows, as plain JSON-able lists (see the module docstring).

    Args:
        evaluations: The long evaluations table, with ``reason`` and ``error`` when available.
        generations: Columns ``model``, ``index``, ``response`` (optional ``sample``, ``status``,
            ``error``); None when the responses are not at hand.
        benchmark: The benchmark the evaluations were made on.
        flags: Output of :func:`wbray.injection.flag_responses` (only flagged rows are kept).
        cis: Output of :func:`wbray.stats.bootstrap_cis`; None computes the point estimates alone.
        title: The page title.

    Raises:
        WbrayError: missing columns, or scored indices that are not benchmark queries.
    """
    if cis is None:
        cis = bootstrap_cis(evaluations, benchmark.queries, benchmark.requirements, resamples=0)
    for need, frame, what in (
        (
            ("model", "scope", "group", "estimate", "low", "high", "n_queries"),
            cis,
            "confidence-interval table",
        ),
        (("model", "index", "criterion", "status"), evaluations, "evaluations table"),
    ):
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise WbrayError(f"{what} lacks columns {missing}")
    models = [str(m) for m in dict.fromkeys(evaluations["model"].astype(str))]
    if generations is not None:
        models += [str(m) for m in dict.fromkeys(generations["model"].astype(str)) if str(m) not in models]
    mpos = {m: i for i, m in enumerate(models)}

    scored = set(int(i) for i in evaluations["index"].astype("int64"))
    if generations is not None:
        scored |= set(int(i) for i in generations["index"].astype("int64"))
    unknown = sorted(scored - set(benchmark.by_index))
    if unknown:
        raise WbrayError(
            f"{len(unknown)} query indices are not in the benchmark ({', '.join(map(str, unknown[:10]))}); "
            "is --data-dir the benchmark these results were made on?"
        )
    queries = [q for q in benchmark.queries if q.index in scored]
    qpos = {q.index: j for j, q in enumerate(queries)}
    domains = [d for d in DOMAIN1_ORDER if any(q.domain1 == d for q in queries)]
    domains += sorted({q.domain1 for q in queries} - set(domains))
    dpos = {d: i for i, d in enumerate(domains)}
    in_req = {r: set(s.r_indices) for r, s in benchmark.requirements.items()}
    crit_pos = {q.index: {c.name: k for k, c in enumerate(q.checklist)} for q in queries}

    groups = _groups(cis)
    keyed = cis.set_index(["model", "scope", "group"])
    board = []
    for m in models:
        row = []
        for scope, group in groups:
            key = (m, scope, group)
            if key in keyed.index:
                rec = keyed.loc[key]
                row.append(
                    [_num(rec["estimate"]), _num(rec["low"]), _num(rec["high"]), int(rec["n_queries"])]
                )
            else:
                row.append([None, None, None, 0])
        board.append(row)

    qs = query_scores(evaluations)
    score_grid: list[list[float | None]] = [[None] * len(queries) for _ in models]
    for m, i, s in zip(qs["model"], qs["index"], qs["score"], strict=True):
        score_grid[mpos[str(m)]][qpos[int(i)]] = _num(s)

    ev_rows = []
    failed_evals = [0] * len(models)
    failed_queries: list[set[int]] = [set() for _ in models]
    cols = evaluations.columns
    reasons = evaluations["reason"] if "reason" in cols else [None] * len(evaluations)
    errors = evaluations["error"] if "error" in cols else [None] * len(evaluations)
    repeats = evaluations["repeat"] if "repeat" in cols else [0] * len(evaluations)
    for m, i, c, r, s, st, why, err in zip(
        evaluations["model"].astype(str),
        evaluations["index"].astype("int64"),
        evaluations["criterion"].astype(str),
        repeats,
        evaluations["score"],
        evaluations["status"],
        reasons,
        errors,
        strict=True,
    ):
        mi, qi = mpos[m], qpos[int(i)]
        ok = st == "ok"
        if not ok:
            failed_evals[mi] += 1
            failed_queries[mi].add(qi)
        ev_rows.append(
            [
                mi,
                qi,
                crit_pos[int(i)].get(c, c),
                int(r) if r is not None and not pd.isna(r) else 0,
                _num(s) if ok else None,
                _text(why),
                None if ok else (_text(err) or "failed"),
            ]
        )

    gen_rows = []
    if generations is not None:
        n = len(generations)
        samples = generations["sample"] if "sample" in generations.columns else [0] * n
        statuses = generations["status"] if "status" in generations.columns else ["ok"] * n
        gerrs = generations["error"] if "error" in generations.columns else [None] * n
        for m, i, smp, text, st, err in zip(
            generations["model"].astype(str),
            generations["index"].astype("int64"),
            samples,
            generations["response"],
            statuses,
            gerrs,
            strict=True,
        ):
            mi, qi = mpos[m], qpos[int(i)]
            failed = st not in ("ok", None)
            if failed:
                failed_queries[mi].add(qi)
            gen_rows.append(
                [mi, qi, int(smp or 0), _text(text), (_text(err) or "failed") if failed else None]
            )

    flag_rows = []
    if flags is not None and len(flags):
        kept = flags[flags["flagged"].astype(bool)] if "flagged" in flags.columns else flags
        for m, i, codes, why in zip(
            kept["model"].astype(str),
            kept["index"].astype("int64"),
            kept["codes"],
            kept["reasons"],
            strict=True,
        ):
            if m in mpos and int(i) in qpos:
                flag_rows.append([mpos[m], qpos[int(i)], str(codes), str(why)])

    return {
        "schema": SCHEMA,
        "title": title,
        "models": models,
        "domains": domains,
        "groups": [[s, g, _label(s, g)] for s, g in groups],
        "queries": [
            [
                q.index,
                dpos[q.domain1],
                q.domain2,
                q.lang,
                q.query,
                [r for r in REQUIREMENTS if q.index in in_req.get(r, set())],
                [[c.name, str(c.item.get("criteria_description", ""))] for c in q.checklist],
            ]
            for q in queries
        ],
        "board": board,
        "scores": score_grid,
        "failures": [[failed_evals[k], len(failed_queries[k])] for k in range(len(models))],
        "ev": ev_rows,
        "gen": gen_rows,
        "flags": flag_rows,
    }
