"""Leaderboard outputs: Excel (upstream's sheet first), Markdown, CSV and a rich terminal table."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from wbray.aggregate._compute import LEADERBOARD_SCALE, Leaderboard
from wbray.errors import WbrayError
from wbray.records import DOMAIN1_ORDER, REQUIREMENTS

#: Sheet names of the workbook; the first is byte-for-byte upstream's table.
SHEET_OFFICIAL = "Leaderboard"
SHEET_SCALED = f"Leaderboard x{LEADERBOARD_SCALE}"
SHEET_LANGUAGES = "Languages"
SHEET_COVERAGE = "Coverage"
SHEET_FAILURES = "Failures"
SHEET_PER_QUERY = "Per query"
SHEET_INTERVALS = "Intervals"
SHEET_COMPARISONS = "Comparisons"
SHEET_NOISE = "Judge noise"
SHEET_NOTES = "Notes"
#: Suffix of the per-query table written beside a workbook or report (``<stem>.per_query.parquet``).
PER_QUERY_SUFFIX = ".per_query"
INCOMPLETE = "incomplete"


def _atomic(path: str | Path) -> tuple[Path, Path]:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target, target.with_name(f".{target.name}.tmp")


def _with_coverage(board: Leaderboard, table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (one row per model) with Coverage ("998/1000 (99.8%)") and Status columns."""
    incomplete = set(board.incomplete)
    status = {m: INCOMPLETE if m in incomplete else "complete" for m in board.models}
    out = table.copy()
    out["Coverage"] = [board.coverage_text(str(m)) for m in out["Model"]]
    out["Status"] = [status[str(m)] for m in out["Model"]]
    return out


def write_xlsx(
    board: Leaderboard, path: str | Path, ledger: pd.DataFrame | None = None, *, per_query_sheet: bool = False
) -> Path:
    """Write the workbook: upstream's table (1-10, upstream's exact columns) first, then x10,
    languages, coverage and failures (with coverage and status on every extra leaderboard sheet), the
    token ledger when given, and the per-query table only when asked (it has one row per model x query:
    200,000 rows for 200 models; :func:`write_per_query` writes it as Parquet or CSV instead)."""
    from wbray.aggregate._xlsx import write_workbook

    target, tmp = _atomic(path)
    sheets = [
        (SHEET_OFFICIAL, board.official),
        (SHEET_SCALED, _with_coverage(board, board.scaled())),
        (SHEET_LANGUAGES, _with_coverage(board, board.languages)),
        (SHEET_COVERAGE, coverage_table(board)),
        (SHEET_FAILURES, board.failures),
    ]
    if ledger is not None and len(ledger):
        sheets.append(("Tokens", ledger))
    if board.intervals is not None and len(board.intervals):
        sheets.append((SHEET_INTERVALS, board.intervals))
    if board.comparisons is not None and len(board.comparisons):
        sheets.append((SHEET_COMPARISONS, board.comparisons))
    if board.noise is not None and len(board.noise):
        sheets.append((SHEET_NOISE, board.noise))
    if board.notes:
        sheets.append((SHEET_NOTES, pd.DataFrame({"Note": list(board.notes)})))
    if per_query_sheet:
        sheets.append((SHEET_PER_QUERY, board.per_query))
    write_workbook(tmp, sheets)
    os.replace(tmp, target)
    return target


def coverage_table(board: Leaderboard) -> pd.DataFrame:
    out = board.coverage.merge(board.failures[["Model", "queries_failed", "queries_missing"]], on="Model")
    out["Status"] = ["complete" if c else INCOMPLETE for c in out["complete"]]
    return out.drop(columns=["complete"])


def per_query_path(path: str | Path, suffix: str = ".parquet") -> Path:
    """Where the per-query table goes beside ``path``: ``board.xlsx`` -> ``board.per_query.parquet``."""
    p = Path(path)
    return p.with_name(p.name.split(".")[0] + PER_QUERY_SUFFIX + suffix)


def write_per_query(board: Leaderboard, path: str | Path, ledger: pd.DataFrame | None = None) -> Path:
    """Write the per-query table (one row per model x query) as Parquet or CSV, by the file's suffix.

    Raises:
        WbrayError: the suffix is neither ``.parquet`` nor ``.csv``.
    """
    target, tmp = _atomic(path)
    if target.suffix == ".parquet":
        board.per_query.to_parquet(tmp, index=False)
    elif target.suffix == ".csv":
        board.per_query.to_csv(tmp, index=False)
    else:
        raise WbrayError(f"{target}: the per-query table is written as .parquet or .csv")
    os.replace(tmp, target)
    return target


def write_csv(board: Leaderboard, path: str | Path, ledger: pd.DataFrame | None = None) -> Path:
    """Write upstream's table (1-10 scale, same columns as the first Excel sheet) as CSV."""
    target, tmp = _atomic(path)
    board.official.to_csv(tmp, index=False)
    os.replace(tmp, target)
    return target


def _fmt(value: Any, scale: float = LEADERBOARD_SCALE, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value) * scale:.{digits}f}"


def summary_rows(board: Leaderboard, short: bool = False) -> tuple[list[str], list[list[str]]]:
    """The compact leaderboard (x10 scale) shared by Markdown, HTML and the terminal tables.

    Best first; a model scored on fewer queries than selected reads "<name> (incomplete)", and the
    Coverage column gives its queries scored / selected. ``short`` gives 4-letter domain headers, one
    decimal and coverage as a percentage, for narrow terminals.
    """
    digits = 1 if short else 2

    def _f(value: Any, model: str = "", scope: str = "", group: str = "") -> str:
        text = _fmt(value, scale=1, digits=digits)
        half = board.half_width(model, scope, group) if scope else None
        # Intervals come on the 1-10 scale; the table is x10.
        return text if half is None or text == "–" else f"{text} ± {half * LEADERBOARD_SCALE:.{digits}f}"

    names = [d.split(" & ")[0] for d in DOMAIN1_ORDER]
    header = ["Model", "Overall", *[n[:4] if short else n for n in names]]
    header += [f"{r}_{k}" for r in REQUIREMENTS for k in ("R", "C")]
    header += ["zh", "en", "Count", "Failed", "Coverage"]
    scaled = board.scaled()
    langs = board.languages.set_index("Model")
    fails = board.failures.set_index("Model")
    cover = board.coverage.set_index("Model")
    incomplete = set(board.incomplete)
    rows = []
    for rec in scaled.to_dict("records"):
        m = str(rec["Model"])
        row = [f"{m} ({INCOMPLETE})" if m in incomplete else m, _f(rec["Overall"], m, "overall", "Overall")]
        row += [_f(rec.get(f"Domain1_{d}"), m, "domain1", d) for d in DOMAIN1_ORDER]
        row += [_f(rec.get(f"{r}_{k}")) for r in REQUIREMENTS for k in ("R", "C")]
        row += [_fmt(langs.loc[m, "zh"], digits=digits), _fmt(langs.loc[m, "en"], digits=digits)]
        row += [str(rec["Count"]), str(int(fails.loc[m, "evaluations_failed"]))]
        row.append(f"{100 * float(cover.loc[m, 'coverage']):.1f}%" if short else board.coverage_text(m))
        rows.append(row)
    overall = [float(v) for v in board.official["Overall"]]
    order = sorted(range(len(rows)), key=lambda i: -overall[i] if not math.isnan(overall[i]) else math.inf)
    return header, [rows[i] for i in order]


def comparison_rows(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    """Each model against the reference (x10 scale): difference, 95% interval, p-value, queries.

    Empty rows when the board holds no comparisons (a single model, or no bootstrap asked for).
    """
    header = ["Model", "vs", "Difference", "95% interval", "p-value", "Queries"]
    t = board.comparisons
    if t is None or t.empty:
        return header, []
    rows = []
    for rec in t.to_dict("records"):
        interval = (
            "–" if math.isnan(float(rec["low"])) else f"[{_signed(rec['low'])}, {_signed(rec['high'])}]"
        )
        p = float(rec["p_value"])
        rows.append(
            [
                str(rec["model"]),
                str(rec["reference"]),
                _signed(rec["difference"]),
                interval,
                "–" if math.isnan(p) else f"{p:.3g}",
                str(int(rec["n_queries"])),
            ]
        )
    return header, rows


def _signed(value: Any) -> str:
    v = float(value)
    return "–" if math.isnan(v) else f"{v * LEADERBOARD_SCALE:+.2f}"


def noise_rows(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    """Judge noise per model and pooled (1-10 scale); empty rows without repeated judging."""
    header = [
        "Model",
        "Cells",
        "Repeats",
        "Judge SD",
        "Query-score variance",
        "Noise variance",
        "Reliability",
    ]
    t = board.noise
    if t is None or t.empty or not (t["cells"] > 0).any():
        return header, []

    def f(v: Any, digits: int = 3) -> str:
        x = float(v)
        return "–" if math.isnan(x) else f"{x:.{digits}f}"

    rows = [
        [
            str(r["model"]),
            str(int(r["cells"])),
            f(r["repeats"], 2),
            f(r["within_sd"]),
            f(r["between_var"]),
            f(r["noise_var"]),
            f(r["reliability"]),
        ]
        for r in t.to_dict("records")
    ]
    return header, rows


COMPARISONS_TEXT = (
    "Each model minus the reference on the queries both have a score for: the difference of mean "
    "query scores (x10), its 95% bootstrap interval (queries resampled) and the two-sided p-value "
    "of a paired sign-flip test."
)
NOISE_TEXT = (
    "The judge was asked more than once per criterion. Judge SD: the spread of one judge call around "
    "its own average for a (query, criterion); reliability: the share of the query-score variance "
    "that is not judge noise (1-10 scale)."
)


def coverage_note(board: Leaderboard) -> str | None:
    """One sentence naming the incomplete models, or None when every model is complete."""
    if not board.incomplete:
        return None
    shown = ", ".join(f"{m} {board.coverage_text(m)}" for m in board.incomplete)
    return (
        f"Incomplete: {shown}. These models were scored on fewer queries than were selected (failed or "
        "missing queries), so their means are not over the same queries as the others'."
    )


def to_markdown(board: Leaderboard, ledger: pd.DataFrame | None = None) -> str:
    """A Markdown report: the x10 leaderboard (with coverage), then subdomains and failures."""
    header, rows = summary_rows(board)
    lines = [
        "# WritingBench leaderboard",
        "",
        f"Scores are on the leaderboard scale (judge score 1-10 x{LEADERBOARD_SCALE}). "
        "Failed evaluations are excluded from every mean and counted in `Failed`; `Coverage` is queries "
        "scored / queries selected."
        + (
            " `±` is half the 95% bootstrap interval (queries resampled)."
            if board.intervals is not None
            else ""
        ),
        "",
        *[f"> **{n}**\n" for n in board.notes],
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    note = coverage_note(board)
    if note:
        lines += ["", f"**{note}**"]
    d2_cols = [c for c in board.official.columns if c.startswith("Domain2_")]
    if d2_cols:
        lines += ["", "## Subdomains", "", "| Subdomain | " + " | ".join(board.models) + " |"]
        lines.append("|---|" + "---:|" * len(board.models))
        for col in d2_cols:
            vals = [_fmt(v) for v in board.official[col]]
            lines.append(f"| {col.removeprefix('Domain2_')} | " + " | ".join(vals) + " |")
    cover = coverage_table(board)
    lines += ["", "## Coverage and failures", "", "| " + " | ".join(cover.columns) + " |"]
    lines.append("|---|" + "---:|" * (len(cover.columns) - 1))
    for rec in cover.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in rec) + " |")
    lines += ["", "| " + " | ".join(board.failures.columns) + " |"]
    lines.append("|---|" + "---:|" * (len(board.failures.columns) - 1))
    for rec in board.failures.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in rec) + " |")
    for title, text, (head, body) in (
        ("Paired comparisons", COMPARISONS_TEXT, comparison_rows(board)),
        ("Judge noise", NOISE_TEXT, noise_rows(board)),
    ):
        if body:
            lines += ["", f"## {title}", "", text, "", "| " + " | ".join(head) + " |"]
            lines.append("|---|" + "---:|" * (len(head) - 1))
            lines += ["| " + " | ".join(r) + " |" for r in body]
    if ledger is not None and len(ledger):
        lines += ["", "## Tokens", "", "| " + " | ".join(ledger.columns) + " |"]
        lines.append("|---|" + "---:|" * (len(ledger.columns) - 1))
        for rec in ledger.itertuples(index=False):
            lines.append("| " + " | ".join(str(v) for v in rec) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_markdown(board: Leaderboard, path: str | Path, ledger: pd.DataFrame | None = None) -> Path:
    target, tmp = _atomic(path)
    tmp.write_text(to_markdown(board, ledger), encoding="utf-8")
    os.replace(tmp, target)
    return target


def rich_tables(board: Leaderboard, limit: int | None = None) -> list[Any]:
    """Two rich Tables (domains; requirements and languages) of the x10 leaderboard, best first.

    Two narrow tables instead of one wide one, so they stay readable in an 80-column terminal or log.
    ``limit`` shows only the best models (a caption says how many more the reports hold): rich takes
    ~0.1 ms per cell, so 200 models would cost most of a second to print. rich is imported here, not
    at module import.
    """
    from rich.table import Table

    header, rows = summary_rows(board, short=True)
    more = len(rows) - limit if limit is not None and len(rows) > limit else 0
    rows = rows[: len(rows) - more]
    n_dom = 2 + len(DOMAIN1_ORDER)
    n = len(header)
    parts = [
        (
            f"WritingBench leaderboard (x{LEADERBOARD_SCALE}): domains",
            [*range(n_dom), n - 3, n - 2, n - 1],
        ),
        ("Requirements (R = queries, C = criteria) and languages", [0, *range(n_dom, n - 3)]),
    ]
    tables = []
    for title, cols in parts:
        caption = (
            f"best {len(rows)} of {len(rows) + more} models; every model is in the reports" if more else None
        )
        if board.notes and title.startswith("WritingBench"):
            caption = " ".join(filter(None, [caption, *board.notes]))
        table = Table(title=title, caption=caption)
        for i in cols:
            table.add_column(
                header[i], justify="left" if i == 0 else "right", no_wrap=True, min_width=len(header[i])
            )
        for r in rows:
            table.add_row(*(r[i] for i in cols))
        tables.append(table)
    head, body = comparison_rows(board)
    if body:
        table = Table(title="Paired comparisons (x10; 95% interval, sign-flip p)")
        for i, h in enumerate(head):
            table.add_column(h, justify="left" if i < 2 else "right", no_wrap=True)
        for r in body[:limit] if limit is not None else body:
            table.add_row(*r)
        tables.append(table)
    return tables


def write_html(board: Leaderboard, path: str | Path, ledger: pd.DataFrame | None = None) -> Path:
    """Write the self-contained HTML report (tables and inline SVG plots)."""
    from wbray.aggregate._html import to_html

    target, tmp = _atomic(path)
    tmp.write_text(to_html(board, ledger), encoding="utf-8")
    os.replace(tmp, target)
    return target


#: Every report format, by file name, in the order they are written.
REPORT_WRITERS = {
    "leaderboard.xlsx": write_xlsx,
    f"leaderboard{PER_QUERY_SUFFIX}.parquet": write_per_query,
    "leaderboard.md": write_markdown,
    "leaderboard.csv": write_csv,
    "leaderboard.html": write_html,
}


def write_reports(
    board: Leaderboard, out_uri: str, ledger: pd.DataFrame | None = None, storage: Any = None
) -> list[str]:
    """Write every report format into ``out_uri`` (a local directory or an s3:// prefix).

    ``storage`` is the :class:`wbray.storage.StorageOptions` that reach ``out_uri``.
    """
    import tempfile

    from wbray.storage import join, write_bytes

    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, writer in REPORT_WRITERS.items():
            local = writer(board, Path(tmp) / name, ledger)
            uri = join(out_uri, name)
            write_bytes(uri, local.read_bytes(), storage)
            written.append(uri)
    return written


def price_ledger(ledger: pd.DataFrame, prices: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """Add costs to a token ledger.

    Args:
        ledger: From :func:`wbray.storage.token_ledger` (columns model, judge, *_tokens).
        prices: ``{name: {"prompt_per_mtok": x, "completion_per_mtok": y}}`` for candidate models
            and judges (any currency; per million tokens). Unpriced names get empty costs.
    """
    out = ledger.copy()
    for kind, name_col in (("generation", "model"), ("judge", "judge")):
        p_in = out[name_col].map(lambda n: prices.get(str(n), {}).get("prompt_per_mtok"))
        p_out = out[name_col].map(lambda n: prices.get(str(n), {}).get("completion_per_mtok"))
        if f"{kind}_prompt_tokens" in out:
            out[f"{kind}_cost"] = (
                out[f"{kind}_prompt_tokens"] * p_in.astype("float64")
                + out[f"{kind}_completion_tokens"] * p_out.astype("float64")
            ) / 1e6
    return out
