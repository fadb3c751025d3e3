"""``generate_criteria``: new queries in, a WritingBench-style benchmark directory out.

The criteria step runs on Ray Data with the configured engine (:class:`CriteriaTask`, any backend).
Queries whose criteria validate go to ``OUT/benchmark_query/benchmark_all.jsonl`` (upstream's
layout: ``wbray data validate OUT`` checks it and ``wbray run --data-dir OUT`` evaluates it); the
others go to ``OUT/criteria_failures.jsonl`` with their reason and last raw reply, and
``OUT/criteria_manifest.json`` records the prompt version, the writer's settings and the counts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wbray import __version__
from wbray.config import content_hash, load_config
from wbray.criteria._config import CriteriaConfig, CurationConfig
from wbray.criteria._input import NewQuery, load_new_queries
from wbray.criteria._prompt import criteria_schema, prompt_version
from wbray.criteria._task import CriteriaTask
from wbray.errors import ConfigError
from wbray.storage import StorageOptions, check_destination, delete, join, write_bytes

ConfigSource = CurationConfig | str | Path | Mapping[str, Any]


@dataclass(frozen=True)
class CriteriaLayout:
    """Where ``wbray criteria`` writes inside its output directory (the one place that says so)."""

    root: str

    @property
    def benchmark(self) -> str:
        """The query file, in upstream's layout."""
        return join(self.root, "benchmark_query", "benchmark_all.jsonl")

    @property
    def failures(self) -> str:
        return join(self.root, "criteria_failures.jsonl")

    @property
    def manifest(self) -> str:
        return join(self.root, "criteria_manifest.json")


@dataclass(frozen=True)
class CriteriaOutcome:
    """The criteria step's result for one query (or, in curation, one distinct prompt).

    Attributes:
        key: The row key it was asked under.
        checklist: The five items when ``status`` is ok, else None.
        status: ``"ok"`` or ``"failed"``.
        error: Why it failed (None when ok).
        raw: The last raw reply.
        attempts: Calls made.
        prompt_tokens: Prompt tokens over all calls.
        completion_tokens: Completion tokens over all calls.
    """

    key: str
    checklist: list[dict[str, str]] | None
    status: str
    error: str | None
    raw: str | None
    attempts: int
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class CriteriaSummary:
    """What :func:`generate_criteria` did.

    Attributes:
        out: The output directory.
        benchmark: The query file written (None when no query got criteria).
        failures_file: The failures file (always written; empty when none failed).
        manifest_file: The manifest written.
        queries: Queries read.
        ok: Queries with valid criteria (in the benchmark).
        failed: ``(index, reason)`` of each query without criteria.
        defaulted: Field -> how many queries took the default (``index`` means numbered 1..N).
        prompt_version: The criteria prompt's version.
        wall_s: Wall time of the call.
    """

    out: str
    benchmark: str | None
    failures_file: str
    manifest_file: str
    queries: int
    ok: int
    failed: list[tuple[int, str]] = field(default_factory=list)
    defaulted: dict[str, int] = field(default_factory=dict)
    prompt_version: str = ""
    wall_s: float = 0.0


def load_curation_config(config: ConfigSource, overrides: Sequence[str] = ()) -> CurationConfig:
    """The config from an object, a YAML path or a mapping, with dotted overrides applied."""
    if isinstance(config, CurationConfig):
        if not overrides:
            return config
        return load_config(config.model_dump(mode="json"), list(overrides), CurationConfig)
    source = config if isinstance(config, Mapping) else Path(config)
    return load_config(source, list(overrides), CurationConfig)


def criteria_input_row(key: str, query: str, domain1: str, domain2: str, lang: str) -> dict[str, Any]:
    """One input row of :class:`CriteriaTask`."""
    return {"key": key, "query": query, "domain1": domain1, "domain2": domain2, "lang": lang}


def run_criteria(
    rows: Sequence[dict[str, Any]],
    config: CriteriaConfig,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, CriteriaOutcome]:
    """Run the criteria step over task rows on the connected Ray cluster; outcomes by row key."""
    from wbray.pipelines import run_task_rows

    if config.engine is None:
        raise ConfigError("criteria.engine is not set: writing criteria needs a model (see README)")
    done = run_task_rows(
        rows, CriteriaTask(config), config.engine, config.resources, pool="criteria", on_rows=on_progress
    )
    out = {}
    for r in done:
        checklist = json.loads(r["checklist_json"]) if r["status"] == "ok" else None
        out[str(r["key"])] = CriteriaOutcome(
            key=str(r["key"]),
            checklist=checklist,
            status=str(r["status"]),
            error=r["error"],
            raw=r["raw"],
            attempts=int(r["attempts"] or 0),
            prompt_tokens=int(r["prompt_tokens"] or 0),
            completion_tokens=int(r["completion_tokens"] or 0),
        )
    return out


def benchmark_row(query: NewQuery, checklist: list[dict[str, str]]) -> dict[str, Any]:
    """A benchmark row in upstream's key order."""
    return {
        "index": query.index,
        "domain1": query.domain1,
        "domain2": query.domain2,
        "lang": query.lang,
        "query": query.query,
        "checklist": checklist,
    }


def _jsonl(rows: Sequence[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def generate_criteria(
    input_uri: str,
    out: str,
    config: ConfigSource,
    *,
    overrides: Sequence[str] = (),
    address: str | None = None,
    on_event: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> CriteriaSummary:
    """Write five query-specific criteria for each new query and lay them out as a benchmark.

    Args:
        input_uri: New queries, JSONL or Parquet (local or ``s3://``): ``query`` and optional
            ``index``, ``domain1``, ``domain2``, ``lang``.
        out: The output directory (local or ``s3://``).
        config: A :class:`CurationConfig`, a YAML path or a mapping (its ``criteria``, ``ray`` and
            ``storage`` sections are used).
        overrides: Dotted ``key=value`` overrides.
        address: A Ray cluster to join; default ``ray.address``, ``$RAY_ADDRESS``, else a private
            local cluster.
        on_event: Called with one-line notices.
        on_progress: Called with (queries done, queries in all).

    Returns:
        A summary; queries that got no valid criteria are in ``failed`` and the failures file,
        never silently left out.

    Raises:
        DataError: the input has defects (the first named by file:line and field).
        ConfigError: the config is invalid or has no criteria engine.
    """
    started = time.time()
    say = on_event or (lambda _line: None)
    cfg = load_curation_config(config, overrides)
    if cfg.criteria.engine is None:
        raise ConfigError("criteria.engine is not set: writing criteria needs a model (see README)")
    storage = StorageOptions.of(cfg.storage).with_env_defaults()
    queries = load_new_queries(input_uri, cfg.criteria.defaults, storage)
    layout = CriteriaLayout(out)
    check_destination(layout.root, storage)
    defaulted = {k: sum(k in q.defaulted for q in queries) for k in ("index", "domain1", "domain2", "lang")}
    say(f"wbray criteria: {len(queries)} queries from {input_uri}, prompt {prompt_version()}")
    stated = _defaults_line(defaulted, cfg.criteria, len(queries))
    if stated:
        say(stated)

    from wbray.pipelines import configure_data, ray_session

    rows = [criteria_input_row(str(q.index), q.query, q.domain1, q.domain2, q.lang) for q in queries]
    with ray_session(cfg.ray, address, say=say):
        configure_data(cfg.ray)
        outcomes = run_criteria(rows, cfg.criteria, on_progress)

    good: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for q in queries:
        got = outcomes.get(str(q.index))
        if got is not None and got.status == "ok" and got.checklist is not None:
            good.append(benchmark_row(q, got.checklist))
            continue
        failures.append(
            {
                "index": q.index,
                "line": q.line,
                "domain1": q.domain1,
                "domain2": q.domain2,
                "lang": q.lang,
                "query": q.query,
                "error": got.error if got is not None else "no result came back from the criteria stage",
                "attempts": got.attempts if got is not None else 0,
                "raw": got.raw if got is not None else None,
            }
        )
    if good:
        write_bytes(layout.benchmark, _jsonl(good), storage)
    else:
        # No query got criteria: a benchmark of a previous call must not pass for this one's.
        delete(layout.benchmark, storage)
    write_bytes(layout.failures, _jsonl(failures), storage)
    summary = CriteriaSummary(
        out=layout.root,
        benchmark=layout.benchmark if good else None,
        failures_file=layout.failures,
        manifest_file=layout.manifest,
        queries=len(queries),
        ok=len(good),
        failed=[(int(f["index"]), str(f["error"])) for f in failures],
        defaulted=defaulted,
        prompt_version=prompt_version(),
    )
    summary.wall_s = time.time() - started
    manifest = {
        "kind": "wbray-criteria",
        "wbray_version": __version__,
        "input": input_uri,
        "prompt_version": summary.prompt_version,
        "schema": criteria_schema(cfg.criteria.name_max_chars, cfg.criteria.text_max_chars),
        "criteria": cfg.criteria.model_dump(mode="json"),
        "criteria_hash": content_hash(cfg.criteria.model_dump(mode="json", exclude={"resources"})),
        "counts": {"queries": summary.queries, "ok": summary.ok, "failed": len(failures)},
        "defaulted": defaulted,
        "tokens": {
            "prompt": sum(o.prompt_tokens for o in outcomes.values()),
            "completion": sum(o.completion_tokens for o in outcomes.values()),
        },
        "started_at": started,
        "wall_s": summary.wall_s,
    }
    write_bytes(layout.manifest, json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8"), storage)
    return summary


def _defaults_line(defaulted: Mapping[str, int], config: CriteriaConfig, total: int) -> str:
    """One line stating which defaults were applied, or "" when every row gave every field."""
    parts = []
    if defaulted.get("index"):
        parts.append("index numbered 1..N in file order")
    d = config.defaults
    for key, value in (("domain1", d.domain1), ("domain2", d.domain2)):
        if defaulted.get(key):
            parts.append(f"{key} {value!r} for {defaulted[key]} of {total}")
    if defaulted.get("lang"):
        how = "detected from the text" if d.lang == "auto" else repr(d.lang)
        parts.append(f"lang {how} for {defaulted['lang']} of {total}")
    return f"defaults: {'; '.join(parts)}" if parts else ""
