"""Re-scoring as a Ray job: ``wbray.score`` judges a run's stored answers with the config's judge.

    ray job submit --address http://head:8265 --working-dir . -- \\
        python jobs/score.py configs/judges/critic.yaml --out s3://bucket/runs/r1

Arguments as in ``jobs/run.py``; nothing is generated.
"""

from __future__ import annotations

import sys

# Run as a script, so this directory is on sys.path: the sibling entry point shares its arguments.
from run import main

if __name__ == "__main__":
    sys.exit(main(generate=False))
