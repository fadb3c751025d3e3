"""SFT data curation: score prompt/response pairs with query-specific criteria and a judge, keep the best.

As in the WritingBench paper, each pair is judged against five criteria written for its prompt (or
given with it) by the benchmark's own scoring step; a pair's score is the mean of its criterion
scores; the top fraction (the paper keeps half) or the pairs at or above a threshold are kept. Every
pair lands in exactly one of kept, dropped and unscored (with its reason), and the score
distribution is reported as a text table and a self-contained HTML page. Selection, scoring folds
and the histogram are plain functions, testable without Ray.
"""

from wbray.curate._input import OUTPUT_COLUMNS, Pair, PairFile, check_pair_rows, load_pairs
from wbray.curate._report import histogram_html, histogram_svg, histogram_text
from wbray.curate._run import CurateSummary, CurationLayout, curate, curation_scoring_rows
from wbray.curate._select import (
    EDGES,
    Bin,
    Histogram,
    PairScore,
    Selection,
    check_rule,
    histogram,
    pair_score,
    select,
)

__all__ = [
    "EDGES",
    "OUTPUT_COLUMNS",
    "Bin",
    "CurateSummary",
    "CurationLayout",
    "Histogram",
    "Pair",
    "PairFile",
    "PairScore",
    "Selection",
    "check_pair_rows",
    "check_rule",
    "curate",
    "curation_scoring_rows",
    "histogram",
    "histogram_html",
    "histogram_svg",
    "histogram_text",
    "load_pairs",
    "pair_score",
    "select",
]
