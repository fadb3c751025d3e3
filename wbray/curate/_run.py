"""``curate``: score an instruction dataset with query-specific criteria and a judge, keep the best.

1. Criteria: pairs that bring a ``checklist`` use it; for the others the criteria writer runs once
   per distinct (prompt, domain1, domain2, lang), through the same step as ``wbray criteria``.
2. Judging: every (pair, criterion, repeat) goes through the benchmark's scoring step
   (:class:`~wbray.steps.ScoringTask`: the judge prompt per criterion, strict parsing, bounded
   re-asks), on Ray Data with the judge's engine.
3. Selection (``_select``): a pair's score is the mean of its ok verdicts; the top fraction or the
   pairs at or above a threshold are kept.

Every pair ends up in exactly one of ``kept``, ``dropped`` and ``unscored`` (written in the input's
format, every input column kept, plus ``score`` and ``criteria_scores``, and ``checklist`` when
the criteria were written here); ``unscored`` says why in ``unscored_reason``. ``report.json``,
``histogram.txt`` and ``histogram.html`` describe the score distribution.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wbray import __version__
from wbray._rows import RowFormat, write_rows
from wbray.config import JudgeConfig, content_hash
from wbray.criteria import CurationConfig, load_curation_config, prompt_version
from wbray.criteria._build import ConfigSource, CriteriaOutcome, criteria_input_row, run_criteria
from wbray.criteria._input import guess_lang
from wbray.curate._input import Pair, load_pairs
from wbray.curate._report import histogram_html, histogram_text
from wbray.curate._select import Histogram, PairScore, Selection, check_rule, histogram, pair_score, select
from wbray.errors import ConfigError
from wbray.prompts import JudgeTemplate
from wbray.storage import StorageOptions, check_destination, join, write_bytes

#: Progress callback: (stage "criteria" or "judge", rows done, rows in all).
CurateProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class CurationLayout:
    """Where ``wbray curate`` writes inside its output directory (the one place that says so)."""

    root: str
    format: RowFormat

    def rows(self, name: str) -> str:
        """``kept``, ``dropped`` or ``unscored``, in the input's format."""
        return join(self.root, f"{name}.{self.format}")

    @property
    def report(self) -> str:
        return join(self.root, "report.json")

    @property
    def histogram_text(self) -> str:
        return join(self.root, "histogram.txt")

    @property
    def histogram_html(self) -> str:
        return join(self.root, "histogram.html")


@dataclass
class CurateSummary:
    """What :func:`curate` did.

    Attributes:
        out: The output directory.
        files: ``kept``, ``dropped``, ``unscored``, ``report``, ``histogram_text``,
            ``histogram_html`` -> URI written.
        pairs: Pairs read.
        kept: Pairs kept.
        dropped: Pairs dropped.
        unscored: Pairs that could not be scored.
        unscored_reasons: Reason kind (``criteria``, ``judge``) -> pairs.
        selection: The selection (rule, cut score, ties at the cut).
        histogram: The score distribution of the scored pairs.
        text: The histogram as a text table.
        template_source: ``official`` or ``builtin``: which judge prompt was used.
        wall_s: Wall time of the call.
    """

    out: str
    files: dict[str, str]
    pairs: int
    kept: int
    dropped: int
    unscored: int
    unscored_reasons: dict[str, int] = field(default_factory=dict)
    selection: Selection | None = None
    histogram: Histogram | None = None
    text: str = ""
    template_source: str = ""
    wall_s: float = 0.0


def _prompt_key(pair: Pair, config: CurationConfig) -> tuple[str, dict[str, Any]]:
    """The criteria-writer row of a pair (same prompt and context -> same key, asked once)."""
    d = config.criteria.defaults
    lang = pair.lang or (guess_lang(pair.prompt) if d.lang == "auto" else d.lang)
    context = {
        "query": pair.prompt,
        "domain1": pair.domain1 or d.domain1,
        "domain2": pair.domain2 or d.domain2,
        "lang": lang,
    }
    key = content_hash(context)
    return key, criteria_input_row(key, **context)


def curation_scoring_rows(
    pair: Pair, checklist: Sequence[Mapping[str, str]], judge: JudgeConfig, template: JudgeTemplate
) -> list[dict[str, Any]]:
    """The scoring-step rows of one pair: each criterion, ``judge.repeats`` times.

    ``index`` holds the pair's position (the scoring step keeps it), which maps verdicts back.
    """
    from wbray.steps import judge_identity

    ident = judge_identity(judge, template)
    pair_hash = content_hash({"prompt": pair.prompt, "response": pair.response, "id": pair.id})
    rows = []
    for item in checklist:
        for repeat in range(judge.repeats):
            rows.append(
                {
                    "row_id": content_hash(
                        {**ident, "pair": pair_hash, "criterion": item["name"], "repeat": repeat}
                    ),
                    "gen_row_id": pair_hash,
                    "model": "curate",
                    "judge": judge.name,
                    "index": pair.position,
                    "criterion": item["name"],
                    "repeat": repeat,
                    "query": pair.prompt,
                    # JSON keeps the item's key order, so the prompt embeds the same repr as a benchmark run.
                    "criterion_json": json.dumps(dict(item), ensure_ascii=False),
                    "response": pair.response,
                    "gen_status": "ok",
                    "gen_error": None,
                }
            )
    return rows


def _template(config: CurationConfig, data_dir: str | None) -> JudgeTemplate:
    """The judge prompt: official from ``data_dir`` (or the data wbray finds on its own) when there."""
    from wbray.dataset import resolve_data_dir
    from wbray.errors import DataNotFoundError
    from wbray.prompts import load_judge_template

    root = None
    try:
        root = resolve_data_dir(data_dir)
    except DataNotFoundError:
        if data_dir is not None:
            raise
    return load_judge_template(root, config.judge.template)


def curate(
    input_uri: str,
    out: str,
    config: ConfigSource,
    *,
    keep: float | None = None,
    min_score: float | None = None,
    data_dir: str | None = None,
    overrides: Sequence[str] = (),
    address: str | None = None,
    on_event: Callable[[str], None] | None = None,
    on_progress: CurateProgress | None = None,
) -> CurateSummary:
    """Score prompt/response pairs with query-specific criteria and a judge; keep the best.

    Args:
        input_uri: Pairs, JSONL or Parquet (local or ``s3://``): ``prompt`` (or ``query``) and
            ``response``, optional ``id``, ``checklist``, ``domain1``, ``domain2``, ``lang``.
        out: The output directory (local or ``s3://``).
        config: A :class:`~wbray.criteria.CurationConfig`, a YAML path or a mapping.
        keep: Keep this fraction of the scored pairs (the paper keeps 0.5).
        min_score: Or: keep the pairs scoring at least this (1-10).
        data_dir: A WritingBench data directory holding the official judge prompt (default:
            ``$WBRAY_DATA_DIR``, then the download cache; without one, wbray's builtin wording).
        overrides: Dotted ``key=value`` overrides.
        address: A Ray cluster to join; default ``ray.address``, ``$RAY_ADDRESS``, else local.
        on_event: Called with one-line notices.
        on_progress: Called with (stage, rows done, rows in all).

    Returns:
        A summary; ``kept + dropped + unscored == pairs``.

    Raises:
        DataError: the input has defects (the first named by file:line and field).
        ConfigError: the config is invalid, or lacks the judge or criteria engine it needs.
        WbrayError: not exactly one of ``keep`` and ``min_score``, or one out of range.
    """
    started = time.time()
    say = on_event or (lambda _line: None)
    check_rule(keep, min_score)
    cfg = load_curation_config(config, overrides)
    if cfg.judge.engine is None:
        raise ConfigError("judge.engine is not set: curation needs a judge model (see README)")
    if cfg.judge.cache is not None:
        # Said, not ignored: a user who set it expects verdicts to be reused.
        raise ConfigError("judge.cache: wbray curate does not read or fill the judge cache; remove it")
    storage = StorageOptions.of(cfg.storage).with_env_defaults()
    pair_file = load_pairs(input_uri, storage)
    pairs = pair_file.pairs
    layout = CurationLayout(out, pair_file.format)
    check_destination(layout.root, storage)
    template = _template(cfg, data_dir)
    to_write = {key: row for key, row in (_prompt_key(p, cfg) for p in pairs if p.checklist is None)}
    if to_write and cfg.criteria.engine is None:
        raise ConfigError(
            f"criteria.engine is not set, but {sum(p.checklist is None for p in pairs)} pair(s) bring no "
            "checklist: set a criteria writer, or give every row a checklist"
        )
    say(
        f"wbray curate: {len(pairs)} pairs from {input_uri}; criteria to write for {len(to_write)} "
        f"distinct prompt(s); judge {cfg.judge.name}"
    )
    if template.source != "official":
        say("judge prompt: wbray's builtin wording (no official prompt found; pass --data-dir to use it)")

    from wbray.pipelines import configure_data, ray_session, run_task_rows
    from wbray.steps import ScoringTask

    def progress(stage: str) -> Callable[[int, int], None] | None:
        if on_progress is None:
            return None
        return lambda done, total: on_progress(stage, done, total)

    with ray_session(cfg.ray, address, say=say):
        configure_data(cfg.ray)
        outcomes: dict[str, CriteriaOutcome] = {}
        if to_write:
            outcomes = run_criteria(list(to_write.values()), cfg.criteria, progress("criteria"))
        state = _checklists(pairs, cfg, outcomes)
        scoring = [
            row
            for pair in pairs
            if pair.position in state.checklists
            for row in curation_scoring_rows(pair, state.checklists[pair.position], cfg.judge, template)
        ]
        verdicts = run_task_rows(
            scoring,
            ScoringTask(cfg.judge, template),
            cfg.judge.engine,
            cfg.judge.resources,
            pool=f"judge:{cfg.judge.name}",
            on_rows=progress("judge"),
        )
    _fold_verdicts(pairs, state, verdicts, cfg.judge.repeats)
    scored = [
        (p.position, score)
        for p in pairs
        if p.position not in state.reasons and (score := state.scores[p.position].score) is not None
    ]
    selection = select(scored, keep=keep, min_score=min_score)
    kept = set(selection.kept)
    hist = histogram([v for _, v in scored], [k in kept for k, _ in scored])
    files = _write_sets(pairs, state, selection, layout, storage)
    summary = CurateSummary(
        out=layout.root,
        files=files,
        pairs=len(pairs),
        kept=len(selection.kept),
        dropped=len(selection.dropped),
        unscored=len(state.reasons),
        unscored_reasons=dict(Counter(r.split(":", 1)[0] for r in state.reasons.values())),
        selection=selection,
        histogram=hist,
        text=histogram_text(hist),
        template_source=template.source,
    )
    report = _report(input_uri, cfg, template, summary, len(to_write), outcomes, verdicts, keep, min_score)
    summary.files.update(
        report=layout.report, histogram_text=layout.histogram_text, histogram_html=layout.histogram_html
    )
    write_bytes(layout.histogram_text, summary.text.encode("utf-8"), storage)
    write_bytes(layout.histogram_html, histogram_html(hist, report).encode("utf-8"), storage)
    summary.wall_s = time.time() - started
    report["wall_s"] = summary.wall_s
    write_bytes(layout.report, json.dumps(report, ensure_ascii=False, indent=2).encode("utf-8"), storage)
    return summary


@dataclass
class _State:
    """Per pair position: its checklist, its score, why it is unscored, whether its criteria are new."""

    checklists: dict[int, list[Mapping[str, str]]] = field(default_factory=dict)
    generated: set[int] = field(default_factory=set)
    scores: dict[int, PairScore] = field(default_factory=dict)
    reasons: dict[int, str] = field(default_factory=dict)


def _checklists(
    pairs: Sequence[Pair], cfg: CurationConfig, outcomes: Mapping[str, CriteriaOutcome]
) -> _State:
    """Each pair's checklist: its own, or the one written for its prompt; a failure is a reason."""
    state = _State()
    for pair in pairs:
        if pair.checklist is not None:
            state.checklists[pair.position] = list(pair.checklist)
            continue
        got = outcomes.get(_prompt_key(pair, cfg)[0])
        if got is None or got.status != "ok" or got.checklist is None:
            why = got.error if got is not None else "no result came back from the criteria stage"
            state.reasons[pair.position] = f"criteria: {why}"
        else:
            state.checklists[pair.position] = list(got.checklist)
            state.generated.add(pair.position)
    return state


def _fold_verdicts(
    pairs: Sequence[Pair], state: _State, verdicts: Sequence[Mapping[str, Any]], repeats: int
) -> None:
    """Fold verdicts into pair scores; a pair without any ok verdict (or missing some) gets a reason."""
    by_pair: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for v in verdicts:
        by_pair[int(v["index"])].append(v)
    for pair in pairs:
        if pair.position not in state.checklists:
            continue
        names = [str(c["name"]) for c in state.checklists[pair.position]]
        ps = pair_score(by_pair.get(pair.position, []), names)
        expected = len(names) * repeats
        if len(ps.entries) != expected:
            state.reasons[pair.position] = f"judge: {len(ps.entries)} of {expected} verdicts came back"
        elif ps.score is None:
            errors = "; ".join(sorted({str(e["error"]) for e in ps.entries}))
            state.reasons[pair.position] = f"judge: no verdict parsed ({len(ps.entries)} failed: {errors})"
        state.scores[pair.position] = ps


def _write_sets(
    pairs: Sequence[Pair],
    state: _State,
    selection: Selection,
    layout: CurationLayout,
    storage: StorageOptions,
) -> dict[str, str]:
    """Write kept, dropped and unscored in the input's format; every pair lands in exactly one."""

    def out_row(pair: Pair) -> dict[str, Any]:
        row = dict(pair.row)
        if pair.position in state.generated:
            row["checklist"] = state.checklists[pair.position]
        ps = state.scores.get(pair.position)
        row["score"] = ps.score if ps is not None and pair.position not in state.reasons else None
        row["criteria_scores"] = list(ps.entries) if ps is not None else []
        return row

    kept, dropped = set(selection.kept), set(selection.dropped)
    sets = {
        "kept": [out_row(p) for p in pairs if p.position in kept],
        "dropped": [out_row(p) for p in pairs if p.position in dropped],
        "unscored": [
            {**out_row(p), "unscored_reason": state.reasons[p.position]}
            for p in pairs
            if p.position in state.reasons
        ],
    }
    files = {}
    for name, rows in sets.items():
        files[name] = layout.rows(name)
        write_rows(files[name], rows, layout.format, storage)
    return files


def _report(
    input_uri: str,
    cfg: CurationConfig,
    template: JudgeTemplate,
    summary: CurateSummary,
    prompts_written: int,
    outcomes: Mapping[str, CriteriaOutcome],
    verdicts: Sequence[Mapping[str, Any]],
    keep: float | None,
    min_score: float | None,
) -> dict[str, Any]:
    from wbray.steps import judge_identity

    sel, hist = summary.selection, summary.histogram
    assert sel is not None and hist is not None
    return {
        "kind": "wbray-curation",
        "wbray_version": __version__,
        "input": input_uri,
        "rule": sel.rule,
        "keep": keep,
        "min_score": min_score,
        "cut_score": sel.cut,
        "tied_at_cut": {"pairs": sel.tied_at_cut[0], "kept": sel.tied_at_cut[1]},
        "counts": {
            "pairs": summary.pairs,
            "kept": summary.kept,
            "dropped": summary.dropped,
            "unscored": summary.unscored,
        },
        "unscored_reasons": summary.unscored_reasons,
        "score_stats": dict(hist.stats),
        "histogram": [{"lo": b.lo, "hi": b.hi, "pairs": b.count, "kept": b.kept} for b in hist.bins],
        "criteria": {
            "prompt_version": prompt_version(),
            "prompts_written": prompts_written,
            "prompts_failed": sum(o.status != "ok" for o in outcomes.values()),
            "engine": cfg.criteria.engine.model_dump(mode="json") if cfg.criteria.engine else None,
            "tokens": {
                "prompt": sum(o.prompt_tokens for o in outcomes.values()),
                "completion": sum(o.completion_tokens for o in outcomes.values()),
            },
        },
        "judge": {
            "name": cfg.judge.name,
            "identity": judge_identity(cfg.judge, template),
            "template_source": template.source,
            "verdicts": len(verdicts),
            "verdicts_failed": sum(v["status"] != "ok" for v in verdicts),
            "tokens": {
                "prompt": int(sum(int(v.get("prompt_tokens") or 0) for v in verdicts)),
                "completion": int(sum(int(v.get("completion_tokens") or 0) for v in verdicts)),
            },
        },
    }
