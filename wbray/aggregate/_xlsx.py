"""A small, fast .xlsx writer for plain tables (header row + values), written column by column.

openpyxl spends ~15 µs per cell; the leaderboard's sheets hold ~50,000 cells for 200 models, which
made the workbook the slowest part of ``wbray aggregate`` (BENCHMARKS P3). A table needs none of
openpyxl's object model: this writes the same OOXML parts (workbook, one worksheet per table, a
style sheet with a bold header) straight from the columns.

Numbers are written as openpyxl writes them (``%.16g``), so the upstream-column sheet holds exactly
the cell values that upstream's ``calculate_scores.py`` (pandas + openpyxl) writes for the same
floats. NaN and None are empty cells, as in upstream's sheet.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd

_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
MAX_SHEET_NAME = 31

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    "{sheets}</Types>"
)
_SHEET_TYPE = (
    '<Override PartName="/xl/worksheets/sheet{n}.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
)
_ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="xl/workbook.xml"/></Relationships>'
)
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    "<sheets>{sheets}</sheets></workbook>"
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    "{rels}"
    '<Relationship Id="rIdStyles" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" '
    'Target="styles.xml"/></Relationships>'
)
_SHEET_REL = (
    '<Relationship Id="rId{n}" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
    'Target="worksheets/sheet{n}.xml"/>'
)
# Style 0: default; style 1: bold (the header row).
_STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="2"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)
_SHEET_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" '
    'state="frozen"/></sheetView></sheetViews>'
    '<cols><col min="1" max="1" width="{width}" customWidth="1"/></cols><sheetData>'
)
_SHEET_TAIL = "</sheetData></worksheet>"


def column_letter(i: int) -> str:
    """Excel's name of the 0-based column ``i`` (0 -> A, 26 -> AA)."""
    name = ""
    i += 1
    while i:
        i, rem = divmod(i - 1, 26)
        name = chr(65 + rem) + name
    return name


def _text_cell(ref: str, value: str, style: str = "") -> str:
    text = escape(_ILLEGAL.sub("\ufffd", value))
    space = ' xml:space="preserve"' if text != text.strip() else ""
    return f'<c r="{ref}"{style} t="inlineStr"><is><t{space}>{text}</t></is></c>'


def _column_cells(series: pd.Series, letter: str, first_row: int) -> list[str]:
    """The XML of every cell of one column (empty string for an empty cell)."""
    rows = range(first_row, first_row + len(series))
    dtype = series.dtype
    if pd.api.types.is_float_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
        return [
            f'<c r="{letter}{r}"><v>{v:.16g}</v></c>' if math.isfinite(v) else ""
            for r, v in zip(rows, series.to_numpy(dtype=np.float64, na_value=np.nan).tolist(), strict=True)
        ]
    if not series.hasnans and pd.api.types.is_bool_dtype(dtype):
        return [
            f'<c r="{letter}{r}" t="b"><v>{int(v)}</v></c>'
            for r, v in zip(rows, series.tolist(), strict=True)
        ]
    if not series.hasnans and pd.api.types.is_integer_dtype(dtype):
        return [f'<c r="{letter}{r}"><v>{int(v)}</v></c>' for r, v in zip(rows, series.tolist(), strict=True)]
    # Anything else (text, categories, nullable values with gaps): cell by cell.
    out = []
    for r, v in zip(rows, series.tolist(), strict=True):
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            out.append("")
        elif isinstance(v, bool | np.bool_):
            out.append(f'<c r="{letter}{r}" t="b"><v>{int(v)}</v></c>')
        elif isinstance(v, int | np.integer):
            out.append(f'<c r="{letter}{r}"><v>{int(v)}</v></c>')
        elif isinstance(v, float | np.floating):
            out.append("" if not math.isfinite(v) else f'<c r="{letter}{r}"><v>{float(v):.16g}</v></c>')
        else:
            out.append(_text_cell(f"{letter}{r}", str(v)))
    return out


def _sheet_xml(frame: pd.DataFrame) -> str:
    letters = [column_letter(i) for i in range(len(frame.columns))]
    header = "".join(
        _text_cell(f"{c}1", str(name), ' s="1"') for c, name in zip(letters, frame.columns, strict=True)
    )
    columns = [_column_cells(frame.iloc[:, i], letters[i], 2) for i in range(len(frame.columns))]
    first = [str(v) for v in frame.iloc[:, 0].tolist()] if len(frame.columns) else []
    width = min(60, max([len(str(frame.columns[0])) if len(frame.columns) else 8, *map(len, first)]) + 2)
    parts = [_SHEET_HEAD.format(width=width), f'<row r="1">{header}</row>']
    for r, cells in enumerate(zip(*columns, strict=True), start=2):
        parts.append(f'<row r="{r}">{"".join(cells)}</row>')
    parts.append(_SHEET_TAIL)
    return "".join(parts)


def write_workbook(path: str | Path, sheets: Sequence[tuple[str, pd.DataFrame]]) -> None:
    """Write ``sheets`` (name, table), in order, to a new .xlsx at ``path`` (not atomic: callers
    write to a temporary name and rename)."""
    names = [name for name, _ in sheets]
    bad = [n for n in names if len(n) > MAX_SHEET_NAME or set(n) & set("[]:*?/\\")]
    if bad or len(set(names)) != len(names):
        raise ValueError(f"invalid or repeated sheet names: {names}")
    n = range(1, len(sheets) + 1)
    # Level 1: the sheets are small, repetitive XML; level 6 took 3x the time for ~25% fewer bytes.
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr(
            "[Content_Types].xml", _CONTENT_TYPES.format(sheets="".join(_SHEET_TYPE.format(n=i) for i in n))
        )
        z.writestr("_rels/.rels", _ROOT_RELS)
        z.writestr(
            "xl/workbook.xml",
            _WORKBOOK.format(
                sheets="".join(
                    f'<sheet name="{escape(name, {chr(34): "&quot;"})}" sheetId="{i}" r:id="rId{i}"/>'
                    for i, name in zip(n, names, strict=True)
                )
            ),
        )
        z.writestr(
            "xl/_rels/workbook.xml.rels",
            _WORKBOOK_RELS.format(rels="".join(_SHEET_REL.format(n=i) for i in n)),
        )
        z.writestr("xl/styles.xml", _STYLES)
        for i, (_, frame) in zip(n, sheets, strict=True):
            z.writestr(f"xl/worksheets/sheet{i}.xml", _sheet_xml(frame))
