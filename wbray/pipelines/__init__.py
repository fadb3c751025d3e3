"""Ray Data pipelines (the only package besides serve/, cli and jobs/ that imports Ray)."""

from wbray.pipelines._run import RunSummary, judge_template_for, run_evaluation

__all__ = ["RunSummary", "judge_template_for", "run_evaluation"]
