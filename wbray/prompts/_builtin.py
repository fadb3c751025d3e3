"""wbray's own judge wording, used when upstream's prompt files are not available.

It has the same interface as the official template (a system line, and a user template with
``{criteria}`` twice, ``{query}`` and ``{response}``) and asks for the same JSON reply, but it is
written independently: scores obtained with it are NOT comparable with published WritingBench
numbers, which is why every score row records the template version.
"""

from __future__ import annotations

from typing import Final

BUILTIN_SYSTEM: Final[str] = (
    "You are a meticulous writing assessor who grades how well a response fulfils a writing request, "
    "judging one criterion at a time."
)

# A str.format template: {criteria}, {query} and {response} are filled in; {{ and }} are literal braces.
BUILTIN_USER: Final[str] = """\
Rate the Response to the Query below against the single Criterion given, using the scale in the \
Scoring Rules.

## Scoring Rules

- 1-2: Fails the criterion; serious flaws make the response unusable in this respect.
- 3-4: Weak; clear shortcomings noticeably reduce its value and substantial revision is needed.
- 5-6: Acceptable; meets the basic expectation of the criterion without standing out.
- 7-8: Good; solid, competent work with only small points left to polish.
- 9-10: Outstanding; fully satisfies the criterion with no visible weakness.

Guidelines:
- Ground the score in the text: point to the passages that earn or lose points, and say what an \
ideal response would have done differently.
- Judge substance, not surface: tidy formatting or sheer length earn nothing by themselves.
- Check that the content is real: a response that sounds detailed but is invented or hollow scores low.
- A response that only outlines, introduces or promises the work instead of doing it has failed the \
request.
- Where the Criterion describes its own levels (1-2 to 9-10), those descriptions take precedence over \
the general scale above.
- The score is a whole number from 1 to 10.

## Output

Reply with one JSON object and nothing else (do not put double quotes inside the reason):
```json
{{"score": <whole number from 1 to 10>, "reason": "<concrete justification citing the response>"}}
```

## Criterion
```{criteria}```

## Query
```{query}```

## Response
```{response}```

Before answering, read the Criterion once more:

```{criteria}```

## Output

Reply with one JSON object and nothing else (do not put double quotes inside the reason):
```json
{{"score": <whole number from 1 to 10>, "reason": "<concrete justification citing the response>"}}
```"""
