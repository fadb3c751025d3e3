"""Criteria for new queries: a model writes five query-specific checklist items per writing query.

A team builds its own WritingBench-style benchmark from its prompts: ``generate_criteria`` asks the
configured engine (any backend, on Ray Data) with a JSON schema, validates every reply strictly,
re-asks a bounded number of times with the problems found, and writes a benchmark directory that
``wbray data validate`` accepts and ``wbray run`` evaluates. The prompt, the schema, the reply
parser and the input checks are plain functions, testable without Ray.
"""

from wbray.criteria._build import (
    CriteriaLayout,
    CriteriaOutcome,
    CriteriaSummary,
    generate_criteria,
    load_curation_config,
)
from wbray.criteria._config import CRITERIA_SAMPLING, CriteriaConfig, CurationConfig, QueryDefaults
from wbray.criteria._input import NewQuery, check_query_rows, guess_lang, load_new_queries
from wbray.criteria._parse import CriteriaParseFailure, checklist_problems, parse_criteria_reply
from wbray.criteria._prompt import CRITERIA_COUNT, criteria_schema, prompt_version, render_criteria_messages
from wbray.criteria._task import CRITERIA_INPUT, CRITERIA_OUTPUT, CriteriaTask

__all__ = [
    "CRITERIA_COUNT",
    "CRITERIA_INPUT",
    "CRITERIA_OUTPUT",
    "CRITERIA_SAMPLING",
    "CriteriaConfig",
    "CriteriaLayout",
    "CriteriaOutcome",
    "CriteriaParseFailure",
    "CriteriaSummary",
    "CriteriaTask",
    "CurationConfig",
    "NewQuery",
    "QueryDefaults",
    "check_query_rows",
    "checklist_problems",
    "criteria_schema",
    "generate_criteria",
    "guess_lang",
    "load_curation_config",
    "load_new_queries",
    "parse_criteria_reply",
    "prompt_version",
    "render_criteria_messages",
]
