"""Run upstream's ``calculate_scores.py``, unmodified, in a subprocess, and read what it computed.

The script is run from the official mirror (``shared/writingbench/reference``), never copied. It
writes its table with pandas + openpyxl, which keeps 16 significant digits; to compare every bit, the
subprocess also pickles the exact DataFrame the script hands to ``DataFrame.to_excel`` (a wrapper
around pandas' method, installed before the script runs; the script itself is untouched).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

_SPY = """
import runpy, sys
import pandas as pd
_to_excel = pd.DataFrame.to_excel
def _spy(self, path, *args, **kwargs):
    self.to_pickle(str(path) + ".pkl")
    return _to_excel(self, path, *args, **kwargs)
pd.DataFrame.to_excel = _spy
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def official_script(official_dir: Path) -> Path:
    return official_dir / "reference" / "calculate_scores.py"


def run_official(official_dir: Path, score_dir: Path, out_xlsx: Path) -> pd.DataFrame:
    """Run the official script on ``score_dir``; return its exact table (also left in ``out_xlsx``)."""
    bq = official_dir / "benchmark_query"
    cmd = [
        sys.executable,
        "-c",
        _SPY,
        str(official_script(official_dir)),
        "--score_dir",
        str(score_dir),
        "--benchmark_file",
        str(bq / "benchmark_all.jsonl"),
        "--output_excel",
        str(out_xlsx),
        "--requirement_dir",
        str(bq / "requirement"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    table: pd.DataFrame = pd.read_pickle(str(out_xlsx) + ".pkl")
    return table
