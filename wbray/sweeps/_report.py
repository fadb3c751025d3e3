"""One leaderboard for a sweep: per judge (and subset, samples), over every succeeded cell, with each
model's difference to the baseline cell.

Scores are read from each cell's run with :func:`wbray.storage.read_evaluations` and aggregated with
:func:`wbray.aggregate.aggregate` (upstream's arithmetic); the delta table is computed here from the
leaderboard, apart from the aggregation internals.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from wbray.errors import WbrayError
from wbray.storage import join, read_bytes, write_bytes
from wbray.sweeps._config import Cell, expand, load_sweep
from wbray.sweeps._layout import SweepLayout
from wbray.sweeps._store import read_state

if TYPE_CHECKING:
    import pandas as pd

    from wbray.aggregate import Leaderboard

#: Only what the numbers need: no reasons, no raw replies.
_COLUMNS = ["model", "index", "criterion", "repeat", "score", "status"]
#: Leaderboard columns of the primary domains (upstream's naming).
_DOMAIN_PREFIX = "Domain1_"


@dataclass
class GroupReport:
    """The leaderboard of one group of cells (same judge, subset and samples).

    Attributes:
        group: The report folder name (``<judge>[--<subset>][--s<n>]``).
        cells: The succeeded cells it covers.
        missing: The group's cells that have not succeeded (left out).
        board: The leaderboard.
        deltas: Each model's difference to the baseline (x10 scale), or None without one.
        reports: URIs written.
    """

    group: str
    cells: list[str]
    missing: list[str]
    board: Leaderboard
    deltas: pd.DataFrame | None = None
    reports: list[str] = field(default_factory=list)


def baseline_deltas(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Each model's ``Overall`` and its difference to ``baseline``, overall and per primary domain.

    Args:
        table: A leaderboard table with ``Model``, ``Overall`` and ``Domain1_<d>`` columns (any scale).
        baseline: The model every row is compared with.

    Returns:
        Columns ``Model``, ``Overall``, ``Δ Overall`` and ``Δ <domain>`` per domain, one row per
        model in the table's order; empty where either value is missing.
    """
    import pandas as pd

    if baseline not in set(table["Model"]):
        raise WbrayError(
            f"baseline {baseline!r} is not on the leaderboard (models: {', '.join(table['Model'])})"
        )
    base = table.set_index("Model").loc[baseline]
    domains = [c for c in table.columns if str(c).startswith(_DOMAIN_PREFIX)]
    out = pd.DataFrame({"Model": table["Model"], "Overall": table["Overall"]})
    out["Δ Overall"] = table["Overall"] - base["Overall"]
    for col in domains:
        out[f"Δ {str(col).removeprefix(_DOMAIN_PREFIX)}"] = table[col] - base[col]
    return out.reset_index(drop=True)


def deltas_markdown(deltas: pd.DataFrame, baseline: str) -> str:
    """The delta table as Markdown (signed, two decimals)."""
    header = list(deltas.columns)
    lines = [
        f"# Difference to the baseline ({baseline}), x10 scale",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    for row in deltas.itertuples(index=False):
        cells = [str(row[0])]
        for name, value in zip(header[1:], row[1:], strict=True):
            cells.append(_number(value, signed=name.startswith("Δ")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _number(value: Any, signed: bool) -> str:
    import pandas as pd

    if value is None or pd.isna(value):
        return ""
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def write_sweep_report(layout: SweepLayout, *, say: Callable[[str], None] | None = None) -> list[GroupReport]:
    """Aggregate every succeeded cell into one leaderboard per group, with deltas to the baseline.

    Writes ``reports/<group>/leaderboard.*`` and, with a baseline, ``deltas.csv`` and ``deltas.md``.

    Raises:
        WbrayError: The prefix is not a sweep, or scores do not match the benchmark found here.
    """
    import pandas as pd

    from wbray.aggregate import aggregate, write_reports
    from wbray.dataset import Benchmark, load_benchmark
    from wbray.storage import read_evaluations, token_ledger

    tell = say or (lambda _line: None)
    text = read_bytes(layout.sweep_yaml, layout.storage).decode("utf-8")
    sweep = load_sweep(yaml.safe_load(text))
    cells = expand(sweep, layout.sweep_yaml)
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.group, []).append(cell)
    benches: dict[str | None, Benchmark] = {}
    out: list[GroupReport] = []
    for group, members in groups.items():
        done: list[Cell] = []
        missing: list[Cell] = []
        for cell in members:
            state = read_state(layout, cell.name)
            (done if state is not None and state.status == "succeeded" else missing).append(cell)
        if not done:
            continue
        d = done[0].config.data
        if d.data_dir not in benches:
            benches[d.data_dir] = load_benchmark(d.data_dir)
        bench = benches[d.data_dir].select(
            domain1=d.domain1, domain2=d.domain2, lang=d.lang, indices=d.indices, limit=d.limit
        )
        frames = [
            read_evaluations(
                layout.run(c.name),
                c.judge,
                indices=set(bench.by_index),
                models=[c.candidate],
                columns=_COLUMNS,
            )
            for c in done
        ]
        frames = [f for f in frames if not f.empty]
        if not frames:
            continue
        board = aggregate(pd.concat(frames, ignore_index=True), bench.queries, bench.requirements)
        ledgers = [x for x in (token_ledger(layout.run(c.name), c.judge) for c in done) if not x.empty]
        ledger = pd.concat(ledgers, ignore_index=True) if ledgers else None
        target = layout.report(group)
        report = GroupReport(group, [c.name for c in done], [c.name for c in missing], board)
        report.reports = [str(u) for u in write_reports(board, target, ledger, layout.storage)]
        if sweep.baseline is not None and sweep.baseline in board.models:
            report.deltas = baseline_deltas(board.scaled(), sweep.baseline)
            buf = io.StringIO()
            report.deltas.to_csv(buf, index=False)
            for name, data in (
                ("deltas.csv", buf.getvalue()),
                ("deltas.md", deltas_markdown(report.deltas, sweep.baseline)),
            ):
                uri = join(target, name)
                write_bytes(uri, data.encode("utf-8"), layout.storage)
                report.reports.append(uri)
        left = f"; not yet in it: {', '.join(report.missing)}" if report.missing else ""
        tell(f"leaderboard {group}: {len(done)} cell(s) -> {target}{left}")
        out.append(report)
    return out
