"""Leaderboard outputs: Excel (upstream's sheet first), Markdown, CSV and a rich terminal table."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from wbray.aggregate._compute import LEADERBOARD_SCALE, Leaderboard
from wbray.records import DOMAIN1_ORDER, REQUIREMENTS

#: Sheet names of the workbook; the first is byte-for-byte upstream's table.
SHEET_OFFICIAL = "Leaderboard"
SHEET_SCALED = f"Leaderboard x{LEADERBOARD_SCALE}"
SHEET_LANGUAGES = "Languages"
SHEET_FAILURES = "Failures"
SHEET_PER_QUERY = "Per query"


def _atomic(path: str | Path) -> tuple[Path, Path]:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target, target.with_name(f".{target.name}.tmp")


def write_xlsx(board: Leaderboard, path: str | Path, ledger: pd.DataFrame | None = None) -> Path:
    """Write the workbook: upstream's table (1-10) first, then x10, languages, failures, per query
    (and the token ledger when given)."""
    target, tmp = _atomic(path)
    with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
        board.official.to_excel(writer, sheet_name=SHEET_OFFICIAL, index=False)
        board.scaled().to_excel(writer, sheet_name=SHEET_SCALED, index=False)
        board.languages.to_excel(writer, sheet_name=SHEET_LANGUAGES, index=False)
        board.failures.to_excel(writer, sheet_name=SHEET_FAILURES, index=False)
        board.per_query.to_excel(writer, sheet_name=SHEET_PER_QUERY, index=False)
        if ledger is not None and len(ledger):
            ledger.to_excel(writer, sheet_name="Tokens", index=False)
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
    """The compact leaderboard (x10 scale) shared by Markdown and the terminal tables.

    ``short`` gives 4-letter domain headers and one decimal, for narrow terminals.
    """
    digits = 1 if short else 2

    def _f(value: Any) -> str:
        return _fmt(value, digits=digits)

    names = [d.split(" & ")[0] for d in DOMAIN1_ORDER]
    header = ["Model", "Overall", *[n[:4] if short else n for n in names]]
    header += [f"{r}_{k}" for r in REQUIREMENTS for k in ("R", "C")]
    header += ["zh", "en", "Count", "Failed"]
    langs = board.languages.set_index("Model")
    fails = board.failures.set_index("Model")
    rows = []
    for rec in board.official.to_dict("records"):
        m = str(rec["Model"])
        row = [m, _f(rec["Overall"])]
        row += [_f(rec.get(f"Domain1_{d}")) for d in DOMAIN1_ORDER]
        row += [_f(rec.get(f"{r}_{k}")) for r in REQUIREMENTS for k in ("R", "C")]
        row += [_f(langs.loc[m, "zh"]), _f(langs.loc[m, "en"])]
        row += [str(rec["Count"]), str(int(fails.loc[m, "evaluations_failed"]))]
        rows.append(row)
    order = sorted(range(len(rows)), key=lambda i: -(float(board.official["Overall"].iloc[i] or 0)))
    return header, [rows[i] for i in order]


def to_markdown(board: Leaderboard, ledger: pd.DataFrame | None = None) -> str:
    """A Markdown report: the x10 leaderboard, then subdomains and failures."""
    header, rows = summary_rows(board)
    lines = [
        "# WritingBench leaderboard",
        "",
        f"Scores are on the leaderboard scale (judge score 1-10 x{LEADERBOARD_SCALE}). "
        "Failed evaluations are excluded from every mean and counted in `Failed`.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    d2_cols = [c for c in board.official.columns if c.startswith("Domain2_")]
    if d2_cols:
        lines += ["", "## Subdomains", "", "| Subdomain | " + " | ".join(board.models) + " |"]
        lines.append("|---|" + "---:|" * len(board.models))
        for col in d2_cols:
            vals = [_fmt(v) for v in board.official[col]]
            lines.append(f"| {col.removeprefix('Domain2_')} | " + " | ".join(vals) + " |")
    lines += ["", "## Failures", "", "| " + " | ".join(board.failures.columns) + " |"]
    lines.append("|---|" + "---:|" * (len(board.failures.columns) - 1))
    for rec in board.failures.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in rec) + " |")
    if ledger is not None and len(ledger):
        lines += ["", "## Tokens", "", "| " + " | ".join(ledger.columns) + " |"]
        lines.append("|---|" + "---:|" * (len(ledger.columns) - 1))
        for rec in ledger.itertuples(index=False):
            lines.append("| " + " | ".join(str(v) for v in rec) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(board: Leaderboard, path: str | Path, ledger: pd.DataFrame | None = None) -> Path:
    target, tmp = _atomic(path)
    tmp.write_text(to_markdown(board, ledger), encoding="utf-8")
    os.replace(tmp, target)
    return target


def rich_tables(board: Leaderboard) -> list[Any]:
    """Two rich Tables (domains; requirements and languages) of the x10 leaderboard.

    Two narrow tables instead of one wide one, so they stay readable in an 80-column terminal or log.
    rich is imported here, not at module import.
    """
    from rich.table import Table

    header, rows = summary_rows(board, short=True)
    n_dom = 2 + len(DOMAIN1_ORDER)
    parts = [
        (
            f"WritingBench leaderboard (x{LEADERBOARD_SCALE}): domains",
            [*range(n_dom), len(header) - 2, len(header) - 1],
        ),
        ("Requirements (R = queries, C = criteria) and languages", [0, *range(n_dom, len(header) - 2)]),
    ]
    tables = []
    for title, cols in parts:
        table = Table(title=title)
        for i in cols:
            table.add_column(
                header[i], justify="left" if i == 0 else "right", no_wrap=True, min_width=len(header[i])
            )
        for r in rows:
            table.add_row(*(r[i] for i in cols))
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
