"""Judge-injection flags: responses that hold score-like JSON or instructions aimed at the judge.

Pure regular expressions over text; flags are counted in reports and never change a score.
"""

from wbray.injection._flag import FLAG_COLUMNS, InjectionFlag, count_flags, flag_injection, flag_responses
from wbray.injection._rules import RULES, Rule

__all__ = [
    "FLAG_COLUMNS",
    "RULES",
    "InjectionFlag",
    "Rule",
    "count_flags",
    "flag_injection",
    "flag_responses",
]
