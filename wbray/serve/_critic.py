"""The critic: WritingBench scoring as a service (``POST /v1/score``).

A request names a query (free text, or a benchmark index), a response and the criteria to judge.
The critic renders the judge prompt, sends it to a served chat model through a DeploymentHandle,
and parses every reply strictly — reusing :func:`wbray.steps.scoring.score_batch`, so re-asks and
failure rows behave exactly as in ``wbray run``. A reply that never parses is reported as a
failure with the reason; a score is never guessed.

Nothing here imports Ray; the builder wraps :class:`CriticServer` with ``serve.deployment``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from wbray.config import SamplingParams
from wbray.dataset import Benchmark, load_benchmark
from wbray.engines import ChatRequest, Completion
from wbray.errors import WbrayError
from wbray.prompts import JudgeTemplate, load_judge_template
from wbray.records import Query
from wbray.serve._chat import completion_from_dict
from wbray.serve._config import CriticConfig
from wbray.steps import score_batch

logger = logging.getLogger(__name__)

#: Keys a caller-written checklist item must have (the judge prompt shows the whole item).
_REQUIRED_ITEM_KEYS = ("name", "criteria_description")


class ScoreItem(BaseModel):
    """One response to judge against one query's criteria."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="Caller's label, echoed in the result.")
    query: str | None = Field(None, min_length=1, description="The query text (or give index).")
    index: int | None = Field(None, description="A benchmark query index (or give query).")
    data_version: str | None = Field(
        None, description="Expected benchmark data version; a mismatch is refused (409)."
    )
    response: str = Field(description="The response to judge.")
    criteria: Literal["all"] | list[str | dict[str, str]] = Field(
        "all",
        description="'all' (the indexed query's checklist), criterion names of the indexed query, or "
        "checklist items ({name, criteria_description, 1-2, ...}).",
    )

    @field_validator("criteria")
    @classmethod
    def _items_complete(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("give at least one criterion, or 'all'")
            for j, c in enumerate(value):
                if isinstance(c, dict):
                    missing = [k for k in _REQUIRED_ITEM_KEYS if k not in c]
                    if missing:
                        raise ValueError(f"criteria[{j}] lacks {', '.join(missing)}")
        return value

    @model_validator(mode="after")
    def _one_query(self) -> ScoreItem:
        if (self.query is None) == (self.index is None):
            raise ValueError("give exactly one of 'query' (text) or 'index' (benchmark query index)")
        return self


class ScoreRequest(BaseModel):
    """The body of ``POST /v1/score``: ``{"items": [...]}``, or one item's fields at the top level."""

    model_config = ConfigDict(extra="forbid")

    items: list[ScoreItem] = Field(min_length=1, description="The responses to judge.")

    @model_validator(mode="before")
    @classmethod
    def _single_item(cls, data: Any) -> Any:
        if isinstance(data, dict) and "items" not in data:
            return {"items": [data]}
        return data


class ScoreRefused(WbrayError):
    """A score request that is well-formed but cannot be served (4xx naming ``field``)."""

    def __init__(self, message: str, field: str, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


def resolve_rows(
    request: ScoreRequest,
    bench: Benchmark | None,
    judge_name: str,
    max_criteria: int,
) -> list[dict[str, Any]]:
    """The scoring rows (``wbray.steps.scoring`` row contract) of a request, in request order.

    Args:
        request: The validated request.
        bench: The loaded benchmark, or None when the critic has no data directory.
        judge_name: The critic's name (goes into each row).
        max_criteria: Most rows one request may produce.

    Returns:
        One row per (item, criterion); ``row_id`` is ``"<item>:<criterion position>"``.

    Raises:
        ScoreRefused: Unknown index or criterion, data version mismatch, names without an index,
            or too many criteria.
    """
    rows: list[dict[str, Any]] = []
    for i, item in enumerate(request.items):
        where = f"items[{i}]"
        query: Query | None = None
        if item.index is not None:
            if bench is None:
                raise ScoreRefused(
                    f"{where}.index: this critic has no benchmark (critic.data_dir is unset); send the "
                    "query text instead",
                    field=f"{where}.index",
                )
            if item.data_version is not None and item.data_version != bench.data_version:
                raise ScoreRefused(
                    f"{where}.data_version: expected {item.data_version!r} but the critic serves "
                    f"{bench.data_version!r}",
                    field=f"{where}.data_version",
                    status=409,
                )
            try:
                query = bench.get(item.index)
            except WbrayError as exc:
                raise ScoreRefused(f"{where}.index: {exc}", field=f"{where}.index") from None
        for j, crit in enumerate(_criteria(item, query, where)):
            rows.append(
                {
                    "row_id": f"{i}:{j}",
                    "gen_row_id": item.id or str(i),
                    "model": "",
                    "judge": judge_name,
                    "index": query.index if query is not None else -1,
                    "criterion": crit["name"],
                    "repeat": 0,
                    "query": query.query if query is not None else item.query,
                    # JSON keeps the item's key order, so the prompt shows the same repr as upstream.
                    "criterion_json": json.dumps(crit, ensure_ascii=False),
                    "response": item.response,
                    "gen_status": "ok",
                    "gen_error": None,
                }
            )
    if len(rows) > max_criteria:
        raise ScoreRefused(
            f"this request asks for {len(rows)} judge calls; at most {max_criteria} per request "
            "(split it into several requests)",
            field="items",
            status=413,
        )
    return rows


def _criteria(item: ScoreItem, query: Query | None, where: str) -> list[dict[str, str]]:
    if item.criteria == "all":
        if query is None:
            raise ScoreRefused(
                f"{where}.criteria: 'all' needs a benchmark 'index'; with a free-text query send the "
                "checklist items themselves",
                field=f"{where}.criteria",
            )
        return [dict(c.item) for c in query.checklist]
    out: list[dict[str, str]] = []
    for j, c in enumerate(item.criteria):
        if isinstance(c, dict):
            out.append(c)
            continue
        if query is None:
            raise ScoreRefused(
                f"{where}.criteria[{j}]: the criterion name {c!r} needs a benchmark 'index'; with a "
                "free-text query send checklist items ({name, criteria_description, ...})",
                field=f"{where}.criteria[{j}]",
            )
        try:
            out.append(dict(query.criterion(c).item))
        except KeyError as exc:
            raise ScoreRefused(
                f"{where}.criteria[{j}]: {exc.args[0]}", field=f"{where}.criteria[{j}]"
            ) from None
    return out


def result_body(
    request: ScoreRequest,
    rows: Sequence[dict[str, Any]],
    scored: Sequence[dict[str, Any]],
    template: JudgeTemplate,
    judge_name: str,
    judge_model: str,
    data_version: str | None,
) -> dict[str, Any]:
    """The ``/v1/score`` response: per item, per criterion score or failure."""
    per_item: list[list[dict[str, Any]]] = [[] for _ in request.items]
    for row, res in zip(rows, scored, strict=True):
        item = int(str(row["row_id"]).split(":", 1)[0])
        ok = res["status"] == "ok"
        per_item[item].append(
            {
                "criterion": row["criterion"],
                "score": int(res["score"]) if ok else None,
                "reason": res["reason"] if ok else None,
                "status": res["status"],
                "error": res["error"],
                "attempts": res["attempts"],
                "raw": None if ok else res["raw"],
                "prompt_version": template.version,
                "judge_model": judge_model,
                "latency_s": round(float(res["latency_s"]), 4),
                "tokens": {"prompt": res["prompt_tokens"], "completion": res["completion_tokens"]},
            }
        )
    return {
        "object": "score.result",
        "judge": judge_name,
        "judge_model": judge_model,
        "prompt_version": template.version,
        "prompt_source": template.source,
        "data_version": data_version,
        "items": [
            {"id": item.id, "index": item.index, "results": results}
            for item, results in zip(request.items, per_item, strict=True)
        ],
    }


class HandleEngine:
    """An :class:`~wbray.engines.Engine` that forwards to a chat deployment's ``complete`` method.

    Every request is its own handle call, so Serve balances them over the chat replicas (which
    batch them again). At most ``max_in_flight`` calls are outstanding: the chat deployment
    refuses calls beyond its queue, so an unbounded burst from one big request would turn most
    of its criteria into overload failures. A failed call (replica died, queue full) becomes a
    failed completion, as the engine contract asks: scoring records it instead of crashing the
    request.

    Args:
        handle: A DeploymentHandle (or anything with ``complete.remote(dict)`` returning an
            awaitable of a completion dict).
        model_id: The served model's name.
        max_in_flight: Most calls outstanding at once (across all callers of this engine).
    """

    def __init__(self, handle: Any, model_id: str, max_in_flight: int = 16) -> None:
        self._handle = handle
        self.model_id = model_id
        self._max_in_flight = max_in_flight
        # Created on first use: a semaphore belongs to the event loop that first waits on it.
        self._slots: asyncio.Semaphore | None = None

    async def generate(self, requests: Sequence[ChatRequest], sampling: SamplingParams) -> list[Completion]:
        """Send every request to the chat deployment; one completion per request, in order."""
        fields = sampling.model_dump(exclude_none=True)
        return list(await asyncio.gather(*(self._one(r, fields) for r in requests)))

    async def _one(self, request: ChatRequest, sampling: dict[str, Any]) -> Completion:
        payload = {
            "messages": [dict(m) for m in request.messages],
            "json_schema": dict(request.json_schema) if request.json_schema is not None else None,
            "sampling": sampling,
            "request_id": request.request_id,
        }
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_in_flight)
        try:
            async with self._slots:
                data = await self._handle.complete.remote(payload)
        except Exception as exc:
            logger.warning("critic: chat call %r failed: %s", request.request_id, type(exc).__name__)
            return Completion.failed(f"chat deployment {self.model_id}: {type(exc).__name__}: {exc}"[:500])
        return completion_from_dict(data)

    async def close(self) -> None:
        """Nothing to release: the handle belongs to Serve."""


class CriticServer:
    """The critic replica (wrapped by ``serve.deployment`` in the builder).

    Args:
        config: The critic settings.
        chat: A handle to the chat deployment that judges.
        judge_model: The served model's name (reported with each score).
    """

    def __init__(self, config: CriticConfig, chat: Any, judge_model: str) -> None:
        self._config = config
        self._bench = load_benchmark(config.data_dir) if config.data_dir is not None else None
        root: Path | None = self._bench.root if self._bench is not None else None
        self._template = load_judge_template(root, config.template)
        self._judge = config.judge_config()
        self._engine = HandleEngine(chat, judge_model, config.max_in_flight)
        self._judge_model = judge_model
        logger.info(
            "critic %s: %s judge prompt %s, judge model %s, benchmark %s",
            config.name,
            self._template.source,
            self._template.version,
            judge_model,
            self._bench.data_version if self._bench is not None else "none",
        )

    async def score(self, body: dict[str, Any]) -> dict[str, Any]:
        """Score a request body (already valid as :class:`ScoreRequest`).

        Returns:
            The result body, or ``{"error": {"status", "message", "param"}}`` for a refused
            request (so the status survives the handle call as data).
        """
        request = ScoreRequest.model_validate(body)
        if len(request.items) > self._config.max_items:
            return _refusal(
                ScoreRefused(
                    f"items: {len(request.items)} items; at most {self._config.max_items} per request",
                    field="items",
                    status=413,
                )
            )
        try:
            rows = resolve_rows(request, self._bench, self._config.name, self._config.max_criteria)
        except ScoreRefused as exc:
            return _refusal(exc)
        scored = await score_batch(self._engine, rows, self._template, self._judge)
        return result_body(
            request,
            rows,
            scored,
            self._template,
            self._config.name,
            self._judge_model,
            self._bench.data_version if self._bench is not None else None,
        )

    def info(self) -> dict[str, Any]:
        """What this critic serves (judge, prompt version, benchmark version)."""
        return {
            "judge": self._config.name,
            "judge_model": self._judge_model,
            "prompt_version": self._template.version,
            "prompt_source": self._template.source,
            "data_version": self._bench.data_version if self._bench is not None else None,
        }


def _refusal(exc: ScoreRefused) -> dict[str, Any]:
    return {"error": {"status": exc.status, "message": str(exc), "param": exc.field}}
