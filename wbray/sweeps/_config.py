"""The sweep schema, its loader, and the grid of cells it expands to (pure: no Ray, no storage).

A sweep file names a base evaluation config and the axes of a grid::

    name: paper-grid
    out: s3://evals/sweeps/paper-grid
    base: ../paper/base.yaml                       # relative paths resolve against this file
    candidates:
      - {include: ../paper/qwen2.5-7b-instruct.yaml}   # the candidates of another config
      - {name: m, engine: {backend: openai, ...}}      # or a candidate written out
    judges: [{include: ../judges/writingbench-critic.yaml}]   # the judge of another config
    subsets: [{name: en, lang: [en]}]              # optional data selections
    samples: [1, 4]                                # optional generation.samples values
    baseline: qwen2.5-7b-instruct
    max_concurrent: 4

Every combination is a cell: one evaluation run with one candidate and one judge under
``<out>/cells/<cell>``, named ``<candidate>--<judge>[--<subset>][--s<samples>]``.
:func:`load_sweep` resolves includes and the base into a self-contained :class:`SweepConfig` (what
a sweep stores next to its results) and validates every cell's full evaluation config, so a bad cell
fails before anything is submitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from wbray.config import (
    CandidateConfig,
    JudgeConfig,
    Name,
    WbrayConfig,
    content_hash,
    load_config,
)
from wbray.errors import ConfigError

#: Separates the parts of a cell name. Names themselves may hold single dashes.
CELL_SEPARATOR = "--"
#: A cell name is one path segment; most filesystems and S3 tools stop at 255 bytes.
MAX_CELL_NAME = 200


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Subset(_Strict):
    """A named data selection: the base's ``data:`` with these filters set on top."""

    name: Name = Field(description="Subset name in cell names and report folders.")
    domain1: list[str] | None = Field(None, description="Keep only these primary domains.")
    domain2: list[str] | None = Field(None, description="Keep only these subdomains.")
    lang: list[Literal["zh", "en"]] | None = Field(None, description="Keep only these languages.")
    indices: list[int] | None = Field(None, description="Keep only these query indices.")
    limit: int | None = Field(None, ge=1, description="Keep the first N queries after the other filters.")

    def data_update(self) -> dict[str, Any]:
        """The ``data:`` fields this subset sets (those written in the sweep, and only those)."""
        return {k: getattr(self, k) for k in self.model_fields_set if k != "name"}


class JobOptions(_Strict):
    """How each cell is submitted as a Ray job (``wbray sweep --address``)."""

    num_cpus: float = Field(
        0.1,
        ge=0,
        description="CPUs reserved for a cell's job driver (entrypoint_num_cpus). The driver plans, "
        "writes manifests and streams Ray Data; the engine pools reserve their own resources.",
    )
    num_gpus: float = Field(
        0.0, ge=0, description="GPUs reserved for the driver (entrypoint_num_gpus); pools hold their own."
    )
    memory_mb: int | None = Field(
        None, ge=1, description="Memory reserved for the driver (entrypoint_memory)."
    )
    ship_wbray: bool = Field(
        True,
        description="Upload the submitting wbray package with each job (runtime_env py_modules), so jobs "
        "run the same code as the sweep command; false when the cluster's image has that wbray installed. "
        "Its dependencies must be installed on the cluster either way.",
    )
    runtime_env: dict[str, Any] = Field(
        default_factory=dict,
        description="More of Ray's runtime env for every cell's job, e.g. {pip: [...]} where the image "
        "lacks wbray's dependencies; merged with the py_modules of ship_wbray. Never credentials: "
        "jobs take them from the nodes.",
    )

    @field_validator("runtime_env")
    @classmethod
    def _own_variables(cls, value: dict[str, Any]) -> dict[str, Any]:
        from wbray import env

        # A run hands wbray's variables to its workers through ray.init, and Ray refuses a job
        # whose runtime env sets the same variable as its driver's ray.init.
        clash = sorted(set(value.get("env_vars") or {}) & set(env.ALL))
        if clash:
            raise ValueError(
                f"env_vars: {', '.join(clash)} cannot be set per job; set it on the nodes, or use the "
                "base config (e.g. data.data_dir)"
            )
        return value


class _SweepFile(_Strict):
    """The file as written: includes and the base path are resolved into :class:`SweepConfig`."""

    name: Name
    out: str | None = None
    base: str | dict[str, Any] | None = None
    candidates: list[dict[str, Any]] = Field(min_length=1)
    judges: list[dict[str, Any]] = Field(default_factory=list)
    subsets: list[Subset] = Field(default_factory=list)
    samples: list[int] = Field(default_factory=list)
    baseline: str | None = None
    max_concurrent: int = Field(2, ge=1)
    job: JobOptions = Field(JobOptions())


class SweepConfig(_Strict):
    """A self-contained sweep: the base and every candidate and judge written out (no includes).

    This is what :func:`load_sweep` returns and what a sweep stores as ``sweep.yaml``; loading that
    file gives the same sweep back.
    """

    name: Name = Field(description="Sweep name (in job ids and reports).")
    out: str | None = Field(
        None, description="Sweep prefix (local path or s3://); default sweeps/<name>. --out overrides it."
    )
    base: WbrayConfig = Field(
        WbrayConfig(),
        description="The evaluation config every cell starts from: a path (relative to the sweep file) "
        "or the config itself. It lists no candidates; its judge is used when `judges` is empty.",
    )
    candidates: list[CandidateConfig] = Field(
        min_length=1, description="Models under evaluation; an entry {include: PATH} takes PATH's candidates."
    )
    judges: list[JudgeConfig] = Field(
        default_factory=list,
        description="Judges; an entry {include: PATH} takes PATH's judge. Empty: the base's judge.",
    )
    subsets: list[Subset] = Field(default_factory=list, description="Optional data selections (a grid axis).")
    samples: list[int] = Field(
        default_factory=list, description="Optional values of generation.samples (a grid axis)."
    )
    baseline: str | None = Field(
        None, description="A candidate name: leaderboards show every model's difference to it."
    )
    max_concurrent: int = Field(2, ge=1, description="Cells running at once (jobs in flight).")
    job: JobOptions = Field(JobOptions(), description="How cells are submitted as Ray jobs.")

    @field_validator("samples")
    @classmethod
    def _samples(cls, value: list[int]) -> list[int]:
        if any(n < 1 for n in value):
            raise ValueError("every samples value must be at least 1")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SweepConfig:
        for axis, names in (
            ("candidates", [c.name for c in self.candidates]),
            ("judges", [j.name for j in self.judges]),
            ("subsets", [s.name for s in self.subsets]),
            ("samples", [str(n) for n in self.samples]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{axis}: names must be unique; repeated: {', '.join(dupes)}")
        if self.base.candidates:
            raise ValueError(
                "base: lists candidates; a sweep's candidates come from its `candidates:` (one per cell)"
            )
        if self.base.run.out:
            raise ValueError("base: sets run.out; each cell's run goes under the sweep's out (cells/<cell>)")
        if not self.judges and self.base.judge.engine is None:
            raise ValueError("no judges: list them under `judges:` or give the base a judge")
        if self.baseline is not None and self.baseline not in {c.name for c in self.candidates}:
            known = ", ".join(c.name for c in self.candidates)
            raise ValueError(f"baseline: {self.baseline!r} is not a candidate (candidates: {known})")
        return self

    @property
    def judge_list(self) -> list[JudgeConfig]:
        """The judges of the grid (the base's when none are listed)."""
        return list(self.judges) or [self.base.judge]

    def default_out(self) -> str:
        return self.out or str(Path("sweeps") / self.name)


@dataclass(frozen=True)
class Cell:
    """One run of the grid.

    Attributes:
        name: ``<candidate>--<judge>[--<subset>][--s<samples>]``; the run directory's name.
        candidate: The candidate's name.
        judge: The judge's name.
        subset: The data subset's name, or None without subsets.
        samples: generation.samples of this cell, or None without a samples axis.
        config: The cell's full evaluation config (run.out unset: the sweep places it).
    """

    name: str
    candidate: str
    judge: str
    subset: str | None
    samples: int | None
    config: WbrayConfig

    @property
    def group(self) -> str:
        """The cells one leaderboard compares: same judge, subset and samples (report folder name)."""
        parts = [self.judge]
        if self.subset is not None:
            parts.append(self.subset)
        if self.samples is not None:
            parts.append(f"s{self.samples}")
        return CELL_SEPARATOR.join(parts)

    @property
    def config_hash(self) -> str:
        """Hash of everything in the cell's config (a changed config makes a succeeded cell stale)."""
        return content_hash(self.config.model_dump(mode="json", exclude={"run"}))


def cell_name(candidate: str, judge: str, subset: str | None = None, samples: int | None = None) -> str:
    """The deterministic name of a cell."""
    parts = [candidate, judge]
    if subset is not None:
        parts.append(subset)
    if samples is not None:
        parts.append(f"s{samples}")
    return CELL_SEPARATOR.join(parts)


def expand(sweep: SweepConfig, source: str = "<sweep>") -> list[Cell]:
    """Every cell of the grid, in a stable order (candidates, then judges, subsets, samples).

    Raises:
        ConfigError: Naming ``source`` and the cell, when a cell's config is invalid or two cells
            would share a name.
    """
    base = sweep.base.model_dump(mode="json")
    subsets: list[Subset | None] = [*sweep.subsets] or [None]
    samples: list[int | None] = [*sweep.samples] or [None]
    cells: list[Cell] = []
    seen: dict[str, str] = {}
    for cand in sweep.candidates:
        for judge in sweep.judge_list:
            for subset in subsets:
                for n in samples:
                    name = cell_name(cand.name, judge.name, subset.name if subset else None, n)
                    where = f"{source}: cell {name}"
                    combo = f"{cand.name} x {judge.name}" + (f" x {subset.name}" if subset else "")
                    if name in seen:
                        raise ConfigError(
                            f"{where}: two cells share this name ({seen[name]} and {combo}); rename a "
                            f"candidate, judge or subset so that no name contains {CELL_SEPARATOR!r}"
                        )
                    if len(name) > MAX_CELL_NAME:
                        raise ConfigError(
                            f"{where}: the name is {len(name)} characters, over {MAX_CELL_NAME}; "
                            "use shorter candidate, judge or subset names"
                        )
                    seen[name] = combo
                    tree = dict(base)
                    tree["candidates"] = [cand.model_dump(mode="json")]
                    tree["judge"] = judge.model_dump(mode="json")
                    if subset is not None:
                        tree["data"] = {**base["data"], **subset.data_update()}
                    if n is not None:
                        tree["generation"] = {**base["generation"], "samples": n}
                    try:
                        config = load_config(tree)
                    except ConfigError as exc:
                        raise ConfigError(_relabel(str(exc), where)) from None
                    cells.append(
                        Cell(name, cand.name, judge.name, subset.name if subset else None, n, config)
                    )
    return cells


def load_sweep(path: str | Path | Mapping[str, Any], *, root: str | Path | None = None) -> SweepConfig:
    """Load a sweep file (or an already-parsed mapping), resolve its includes and base, and
    validate every cell.

    Args:
        path: The sweep YAML, or its parsed content (e.g. a stored ``sweep.yaml``).
        root: The directory relative paths resolve against; default: the file's directory (the
            working directory for a mapping).

    Raises:
        ConfigError: One line naming the sweep file and the entry, cell or field at fault.
    """
    if isinstance(path, Mapping):
        source, folder = "<sweep>", Path(root) if root is not None else Path.cwd()
        raw = load_config(dict(path), None, _SweepFile)
    else:
        source, folder = str(path), Path(root) if root is not None else Path(path).parent
        try:
            raw = load_config(path, None, _SweepFile)
        except ConfigError as exc:
            raise ConfigError(_relabel(str(exc), source)) from None
    base = _base(raw.base, folder, source)
    candidates: list[CandidateConfig] = []
    for i, entry in enumerate(raw.candidates):
        where = f"{source}: candidates[{i}]"
        if "include" in entry:
            included = _include(entry, folder, where)
            if not included.candidates:
                raise ConfigError(f"{where}: {entry['include']} lists no candidates")
            candidates.extend(included.candidates)
        else:
            candidates.append(_entry(entry, CandidateConfig, where))
    judges: list[JudgeConfig] = []
    for i, entry in enumerate(raw.judges):
        where = f"{source}: judges[{i}]"
        if "include" in entry:
            judge = _include(entry, folder, where).judge
            if judge.engine is None:
                raise ConfigError(f"{where}: {entry['include']} has no judge (judge.engine is not set)")
            judges.append(judge)
        else:
            judges.append(_entry(entry, JudgeConfig, where))
    try:
        sweep = SweepConfig(
            name=raw.name,
            out=raw.out,
            base=base,
            candidates=candidates,
            judges=judges,
            subsets=raw.subsets,
            samples=raw.samples,
            baseline=raw.baseline,
            max_concurrent=raw.max_concurrent,
            job=raw.job,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{source}: {loc + ': ' if loc else ''}{msg}") from None
    expand(sweep, source)
    return sweep


def sweep_yaml(sweep: SweepConfig) -> str:
    """The sweep as self-contained YAML (round-trips through :func:`load_sweep`)."""
    import yaml

    return yaml.safe_dump(sweep.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _relabel(message: str, where: str) -> str:
    # load_config names a parsed mapping "<args>"; say which file and which entry it came from.
    for prefix in ("<args> (with -o overrides)", "<args>"):
        if message.startswith(prefix):
            return where + message[len(prefix) :]
    return message if message.startswith(where) else f"{where}: {message}"


def _base(base: str | dict[str, Any] | None, folder: Path, source: str) -> WbrayConfig:
    if base is None:
        return WbrayConfig()
    if isinstance(base, dict):
        try:
            return load_config(base)
        except ConfigError as exc:
            raise ConfigError(_relabel(str(exc), f"{source}: base")) from None
    target = folder / base
    if not target.is_file():
        raise ConfigError(f"{source}: base: {target} is not a file (paths resolve against the sweep file)")
    return load_config(target)


def _include(entry: Mapping[str, Any], folder: Path, where: str) -> WbrayConfig:
    extra = sorted(set(entry) - {"include"})
    if extra:
        raise ConfigError(f"{where}: an include entry holds only `include`, not {', '.join(extra)}")
    ref = entry["include"]
    if not isinstance(ref, str) or not ref:
        raise ConfigError(f"{where}: include must be a path (relative to the sweep file), got {ref!r}")
    target = folder / ref
    if not target.is_file():
        raise ConfigError(f"{where}: include {target} is not a file (paths resolve against the sweep file)")
    # Errors inside the included file name that file.
    return load_config(target)


def _entry(entry: Mapping[str, Any], model: type[CandidateConfig] | type[JudgeConfig], where: str) -> Any:
    try:
        return load_config(dict(entry), None, model)
    except ConfigError as exc:
        raise ConfigError(_relabel(str(exc), where)) from None
