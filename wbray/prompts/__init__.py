"""Prompt rendering: the judge prompt (official or wbray's own wording) and the generation prompt.

Pure functions over plain data; no model, no Ray. The rendered messages are exactly what upstream
WritingBench sends, so scores stay comparable.
"""

from __future__ import annotations

from ._generation import render_generation_messages
from ._judge import JudgeTemplate, load_judge_template, render_judge_messages, strip_think

__all__ = [
    "JudgeTemplate",
    "load_judge_template",
    "render_generation_messages",
    "render_judge_messages",
    "strip_think",
]
