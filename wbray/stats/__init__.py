"""Statistics over the evaluations table: confidence intervals, paired comparisons, judge noise.

Pure numpy/pandas; no Ray import. Every function takes the long evaluations table
(``wbray.records.EVAL_COLUMNS``) and uses the leaderboard's own definitions (a query's score is the
mean of its ok evaluations; failures are excluded, never zero-filled).
"""

from wbray.stats._bootstrap import (
    CI_COLUMNS,
    SCOPES,
    bootstrap_cis,
    cluster_bootstrap,
    group_seed,
    resample_counts,
)
from wbray.stats._format import format_ci, half_width
from wbray.stats._noise import NOISE_COLUMNS, judge_noise
from wbray.stats._paired import (
    COMPARISON_COLUMNS,
    PairedComparison,
    compare_models,
    comparisons_table,
    paired_difference,
    sign_flip_p_value,
)
from wbray.stats._units import query_scores

__all__ = [
    "CI_COLUMNS",
    "COMPARISON_COLUMNS",
    "NOISE_COLUMNS",
    "SCOPES",
    "PairedComparison",
    "bootstrap_cis",
    "cluster_bootstrap",
    "compare_models",
    "comparisons_table",
    "format_ci",
    "group_seed",
    "half_width",
    "judge_noise",
    "paired_difference",
    "query_scores",
    "resample_counts",
    "sign_flip_p_value",
]
