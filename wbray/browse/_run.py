"""The browsable page of one run: read the run's verdicts (with reasons) and current answers, flag
judge-injection attempts, bootstrap the intervals, and write ``reports/<judge>/browse.html``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wbray.dataset import Benchmark
from wbray.records import EVAL_COLUMNS

#: The answer columns the page shows.
ANSWER_COLUMNS = ["model", "index", "sample", "response", "status", "error"]


def browse_run(
    layout: Any,
    judge: str,
    bench: Benchmark,
    *,
    models: Sequence[str] | None = None,
    resamples: int = 1000,
    seed: int = 0,
    title: str | None = None,
) -> dict[str, Any]:
    """Write the run's browsable page next to its leaderboard and say what it found.

    Args:
        layout: The run's :class:`wbray.storage.RunLayout` (its storage options reach the page).
        judge: Whose verdicts to show.
        bench: The benchmark the run evaluated (selected queries).
        models: Only these models (default: every model with verdicts).
        resamples: Bootstrap resamples for the intervals (0: none).
        seed: The bootstrap seed.
        title: The page title (default: the run directory).

    Returns:
        ``{"uri": page URI, "flagged": {model: flagged answers}}``.
    """
    from wbray.browse._page import write_browser
    from wbray.injection import count_flags, flag_responses
    from wbray.stats import bootstrap_cis
    from wbray.storage import read_evaluations, read_generations

    indices = set(bench.by_index)
    evaluations = read_evaluations(layout, judge, indices=indices, models=models, columns=list(EVAL_COLUMNS))
    table = read_generations(layout, ANSWER_COLUMNS, committed_only=True, current_only=True)
    generations = None if table is None else table.to_pandas()
    if generations is not None:
        keep = generations["index"].isin(sorted(indices))
        if models is not None:
            keep &= generations["model"].isin(list(models))
        generations = generations[keep].reset_index(drop=True)
    flags = flag_responses(generations) if generations is not None else None
    cis = (
        bootstrap_cis(evaluations, bench.queries, bench.requirements, resamples=resamples, seed=seed)
        if resamples
        else None
    )
    uri = layout.report(f"{judge}/browse.html")
    write_browser(
        evaluations,
        generations,
        bench,
        uri,
        flags=flags,
        cis=cis,
        title=title or f"WritingBench results: {layout.root}",
        storage=layout.storage,
    )
    flagged: dict[str, int] = {}
    if flags is not None:
        counts = count_flags(flags)
        flagged = {str(r["model"]): int(r["flagged"]) for r in counts.to_dict("records")}
    return {"uri": uri, "flagged": flagged}
