"""wbray: WritingBench as a distributed evaluation cluster on Ray.

The core (data, prompts, judge-reply parsing, aggregation) is plain Python with no Ray import;
Ray lives only in ``wbray.pipelines``, ``wbray.serve``, the CLI and ``jobs/``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
