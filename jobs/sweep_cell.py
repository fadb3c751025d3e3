"""One cell of a sweep as a Ray job: the entry point ``wbray sweep --address`` submits per cell.

The sweep submits it as ``python -m wbray.sweeps.cell SWEEP_URI CELL --attempt N --submission-id ID``
(the package travels with the job, so no working directory is needed); with the repository as the
job's working directory this script is the same thing::

    python jobs/sweep_cell.py s3://evals/sweeps/paper-grid qwen2.5-7b-instruct--writingbench-critic \\
        --attempt 2 --submission-id wbray-1a2b3c4d-qwen2.5-7b-instruct--writingbench-critic-2

It runs only the attempt the cell's record names (a stale job refuses), marks the cell running,
calls ``wbray.evaluate`` on the config the sweep stored for the cell, and records succeeded or
failed with the reason.
"""

from __future__ import annotations

import sys

from wbray.sweeps.cell import main

if __name__ == "__main__":
    sys.exit(main())
