"""The judge prompt: loading a template and rendering one (query, criterion, response) into messages.

Rendering follows upstream WritingBench byte for byte: ``criteria`` is ONE checklist item inserted
with ``str.format`` (so its Python ``repr``), and the response loses everything up to and including
the first ``"</think>\\n\\n"``.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from wbray.errors import ConfigError, DataError, DataNotFoundError, Defect

from ._builtin import BUILTIN_SYSTEM, BUILTIN_USER

TemplateSource = Literal["official", "builtin"]
TemplateMode = Literal["auto", "official", "builtin"]

#: Where the official prompt lives inside a data directory (the upstream repository layout).
PROMPTS_SUBDIR: Final[str] = "prompts"
SYSTEM_FILE: Final[str] = "judge_system.txt"
USER_FILE: Final[str] = "judge_user.txt"
#: Where a clone of the upstream repository keeps the prompt: Python constants, read as data.
PROMPT_MODULE: Final[str] = "prompt.py"
BUILTIN_ORIGIN: Final[str] = "wbray builtin"

#: The marker reasoning models end their thoughts with; upstream strips through its first occurrence.
THINK_MARKER: Final[str] = "</think>\n\n"

_PLACEHOLDERS: Final[frozenset[str]] = frozenset({"criteria", "query", "response"})


@dataclass(frozen=True)
class JudgeTemplate:
    """A judge prompt: a system message and a user-message template.

    Attributes:
        system: The system message, sent as is.
        user: A ``str.format`` template with ``{criteria}`` (twice), ``{query}`` and ``{response}``;
            ``{{`` and ``}}`` are literal braces.
        source: "official" (upstream's text, read from the data directory) or "builtin".
        origin: Where it came from: the prompts directory path, or "wbray builtin".
    """

    system: str
    user: str
    source: TemplateSource
    origin: str

    @property
    def version(self) -> str:
        """``judge-`` plus 12 hex digits of the text's sha256; recorded in every score row.

        Only the text counts (not ``source`` or ``origin``), so the same wording read from two
        places has one version.
        """
        digest = hashlib.sha256(f"{self.system}\x00{self.user}".encode()).hexdigest()
        return f"judge-{digest[:12]}"


def builtin_template() -> JudgeTemplate:
    """wbray's own wording (not comparable with published WritingBench scores)."""
    return JudgeTemplate(system=BUILTIN_SYSTEM, user=BUILTIN_USER, source="builtin", origin=BUILTIN_ORIGIN)


def template_defects(user: str, path: str) -> list[Defect]:
    """Check that ``user`` is a usable judge template; return what is wrong (empty when fine).

    Args:
        user: The user-message template text.
        path: The file it came from, for the messages.
    """
    try:
        fields = [
            (name, conversion, spec)
            for _, name, spec, conversion in string.Formatter().parse(user)
            if name is not None
        ]
    except ValueError as exc:
        return [Defect(path, 0, "", f"not a valid str.format template ({exc}); literal braces are {{{{ }}}}")]
    defects: list[Defect] = []
    for name, conversion, spec in fields:
        if name not in _PLACEHOLDERS or conversion or spec:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            defects.append(
                Defect(
                    path,
                    0,
                    "",
                    f"unexpected placeholder {shown}; allowed are {{criteria}}, {{query}}, {{response}} "
                    "(write literal braces as {{ and }})",
                )
            )
    missing = sorted(_PLACEHOLDERS - {name for name, _, _ in fields})
    if missing:
        listed = ", ".join("{" + m + "}" for m in missing)
        defects.append(Defect(path, 0, "", f"missing placeholder(s) {listed}"))
    return defects


def _read_exact(path: Path) -> str:
    # read_bytes + decode keeps the text byte-exact (read_text would translate \r\n).
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        defect = Defect(str(path), 0, "", f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
        raise DataError([defect]) from None
    except OSError as exc:
        raise DataError([Defect(str(path), 0, "", f"cannot read ({exc.strerror})")]) from None


def load_judge_template(data_dir: Path | None, mode: TemplateMode = "auto") -> JudgeTemplate:
    """Load the judge template.

    Args:
        data_dir: A WritingBench data directory (upstream layout); the official prompt is read from
            ``data_dir/prompts/judge_system.txt`` and ``judge_user.txt`` as exact UTF-8 text (what
            `wbray data download` writes), or — in a clone of the upstream repository — from the
            ``evaluate_system`` / ``evaluate_prompt`` constants of ``data_dir/prompt.py``, read with
            :mod:`ast` and never executed. None means no data directory is known.
        mode: "official" requires the official prompt; "builtin" uses wbray's own wording; "auto"
            takes the official prompt when found, else the builtin wording (callers warn then: such
            scores are not comparable with published ones).

    Returns:
        The template, with ``source`` and ``origin`` saying which one was chosen.

    Raises:
        DataNotFoundError: ``mode`` is "official" and a file is missing.
        DataError: an official file cannot be read, is not UTF-8, or has wrong placeholders.
        ConfigError: ``mode`` is not one of the three allowed values.
    """
    if mode not in ("auto", "official", "builtin"):
        raise ConfigError(
            f"judge template mode {mode!r} is not allowed (use 'auto', 'official' or 'builtin')"
        )
    if mode == "builtin":
        return builtin_template()
    prompts = data_dir / PROMPTS_SUBDIR if data_dir is not None else None
    if prompts is not None and (prompts / SYSTEM_FILE).is_file() and (prompts / USER_FILE).is_file():
        user_path = prompts / USER_FILE
        system, user = _read_exact(prompts / SYSTEM_FILE), _read_exact(user_path)
        defects = template_defects(user, str(user_path))
        if defects:
            raise DataError(defects)
        return JudgeTemplate(system=system, user=user, source="official", origin=str(prompts))
    module = data_dir / PROMPT_MODULE if data_dir is not None else None
    if module is not None and module.is_file():
        return _from_prompt_module(module)
    if mode == "auto":
        return builtin_template()
    if prompts is None:
        where = f"{PROMPTS_SUBDIR}/{SYSTEM_FILE} and {PROMPTS_SUBDIR}/{USER_FILE} (no data directory given)"
    else:
        missing = " and ".join(
            str(f) for f in (prompts / SYSTEM_FILE, prompts / USER_FILE) if not f.is_file()
        )
        where = f"{missing}, and no {module}"
    raise DataNotFoundError(
        f"the official judge prompt is required but not found: missing {where}. Run "
        "`wbray data download` (or point --data-dir / $WBRAY_DATA_DIR at a WritingBench mirror), "
        "or choose the builtin template (not comparable with published scores)"
    )


def _from_prompt_module(path: Path) -> JudgeTemplate:
    """The official prompt from an upstream checkout's prompt.py (its two string constants)."""
    # The downloader's extractor (the same reading of prompt.py both ways); imported here so that
    # rendering prompts never loads the data package.
    from wbray.dataset._download import extract_prompt_constants

    try:
        source = path.read_bytes()
    except OSError as exc:
        raise DataError([Defect(str(path), 0, "", f"cannot read ({exc.strerror})")]) from None
    constants = extract_prompt_constants(source, str(path))
    system, user = constants["evaluate_system"], constants["evaluate_prompt"]
    defects = template_defects(user, f"{path}: evaluate_prompt")
    if defects:
        raise DataError(defects)
    return JudgeTemplate(system=system, user=user, source="official", origin=str(path))


def strip_think(response: str) -> str:
    """Drop a reasoning model's thoughts the way upstream does.

    Everything up to and including the FIRST ``"</think>\\n\\n"`` is removed; a response without
    that exact marker (``"</think>"`` not followed by a blank line included) is returned unchanged.
    """
    head, marker, tail = response.partition(THINK_MARKER)
    return tail if marker else head


def render_judge_messages(
    template: JudgeTemplate, query: str, criterion: Mapping[str, str], response: str
) -> list[dict[str, str]]:
    """Render the judge's chat messages for one (query, criterion, candidate response).

    Args:
        template: The judge template.
        query: The benchmark row's ``query``.
        criterion: ONE checklist item, keys in file order. It is inserted as a plain ``dict``'s
            ``repr`` (what upstream's ``str.format`` of the item produces).
        response: The candidate's full text; thoughts are removed with :func:`strip_think`.

    Returns:
        ``[{"role": "system", ...}, {"role": "user", ...}]``.
    """
    # dict(...) keeps the key order and makes the repr a plain dict's even when the caller holds a
    # read-only mapping (a MappingProxyType would render as "mappingproxy({...})").
    user = template.user.format(criteria=dict(criterion), query=query, response=strip_think(response))
    return [{"role": "system", "content": template.system}, {"role": "user", "content": user}]
