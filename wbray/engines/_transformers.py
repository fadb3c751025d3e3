"""The ``transformers`` backend: a Hugging Face causal LM in this process, on CPU or one GPU (extra: cpu).

Requests are rendered with the model's chat template, left-padded into chunks of
``config.batch_size`` and decoded with ``model.generate`` in a worker thread, so the caller's event
loop stays responsive. Requests with a ``json_schema`` are decoded under a grammar (xgrammar) in
chunks of their own: a constrained and a free row never share a ``generate`` call.

Why xgrammar for constrained decoding (measured, see the project's constrained-decoding notes): it
was the only library tried that enforces the schema exactly as written, ``minimum``/``maximum``
included (24/24 valid judge replies at T=1.0 and T=2.0), with 0.01–0.04 s overhead per call and no
first-call cost; it is Apache-2.0. lm-format-enforcer does not import under transformers 5 and
ignores min/max; outlines' default backend ignores min/max too.

A request decoded alone (a chunk of one row, e.g. a judge with ``batch_size: 1``) goes through the
:class:`PrefixCache`: the prompt blocks it shares with earlier prompts (the judge instructions; the
criterion and query that every candidate's answer is judged under) are not computed again.

torch, transformers and xgrammar are imported inside the factory and the methods, never at module
import, so that ``import wbray.engines`` stays cheap.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import logging
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wbray.config import SamplingParams, TransformersEngineConfig
from wbray.engines._base import ChatRequest, Completion, Engine
from wbray.engines._registry import missing_extra, register_engine
from wbray.engines._smollm2 import resolve_model_path
from wbray.errors import WbrayError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

#: max_new_tokens when the sampling settings leave it unset (generate() needs a bound).
DEFAULT_MAX_NEW_TOKENS = 512
#: Tokens of a compact JSON object's fixed part, e.g. ``{"score": 10, "reason": ""}`` plus EOS (12 + 1
#: for SmolLM2), rounded up.
_JSON_FIXED_TOKENS = 16
#: A byte-level BPE may spend up to 4 tokens on one non-ASCII character.
_TOKENS_PER_CHAR = 4
#: Tokens per prefix-cache block. Measured with SmolLM2 on one CPU thread: prefilling 1,024 tokens
#: in blocks of 128 costs the same as in one call (64: +10%), and a prompt loses at most 127 tokens
#: of a shared prefix to block alignment.
PREFIX_BLOCK_TOKENS = 128


@dataclass(frozen=True)
class _Prepared:
    """A request rendered and tokenized, waiting for its chunk."""

    index: int
    input_ids: list[int]
    schema_key: str | None


def _string_length_budget(schema: Any) -> int:
    """Sum of every ``maxLength`` in a schema (the most characters its strings can hold)."""
    if isinstance(schema, Mapping):
        own = schema.get("maxLength")
        total = own if isinstance(own, int) else 0
        return total + sum(_string_length_budget(value) for value in schema.values())
    if isinstance(schema, list):
        return sum(_string_length_budget(value) for value in schema)
    return 0


def generation_kwargs(sampling: SamplingParams, max_new_tokens: int, pad_token_id: int) -> dict[str, Any]:
    """The ``model.generate`` keyword arguments for wbray sampling settings.

    ``temperature`` None or 0 means greedy (no sampling parameters passed). When sampling, unset
    ``top_p``/``top_k`` mean "off" (1.0 and 0; ``top_k=-1`` too); ``repetition_penalty`` unset is 1.0.
    Values are always explicit because transformers fills unset ones from the model's
    ``generation_config`` and then from its own defaults (``top_k=50``), which would make the same
    wbray config sample differently on different models.

    Args:
        sampling: The merged sampling settings.
        max_new_tokens: The new-token bound of this call.
        pad_token_id: The tokenizer's pad id.

    Returns:
        Keyword arguments for ``generate``.
    """
    do_sample = sampling.temperature not in (None, 0)
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "pad_token_id": pad_token_id,
        "repetition_penalty": 1.0 if sampling.repetition_penalty is None else sampling.repetition_penalty,
    }
    if do_sample:
        kwargs["temperature"] = sampling.temperature
        kwargs["top_p"] = 1.0 if sampling.top_p is None else sampling.top_p
        kwargs["top_k"] = 0 if sampling.top_k is None or sampling.top_k == -1 else sampling.top_k
    return kwargs


def split_generated(tokens: Sequence[int], stop_ids: frozenset[int]) -> tuple[list[int], str, int]:
    """Cut one row of ``generate`` output at its end of sequence.

    After a row's EOS, ``generate`` fills it with pad tokens (often the EOS id itself), so the first
    stop id is the real end. The count includes that EOS token, as vLLM's usage does.

    Args:
        tokens: The row's new tokens (prompt removed).
        stop_ids: The model's EOS ids.

    Returns:
        ``(text tokens, finish_reason, completion_tokens)``; finish_reason is "stop" at an EOS,
        "length" when the row ran out of new tokens.
    """
    for position, token in enumerate(tokens):
        if token in stop_ids:
            return list(tokens[:position]), "stop", position + 1
    return list(tokens), "length", len(tokens)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or AMX), per torch's own CPU probes."""
    import torch

    # Private probes, hence the defensive getattr: a torch without them means "assume not".
    probes = [
        getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    try:
        return any(bool(probe()) for probe in probes if probe is not None)
    except RuntimeError:
        return False


def _request_fault(error: str, code: str) -> Completion:
    """A failure the request itself causes: ``extra`` names the field, so a server can answer 4xx."""
    return Completion(text=None, status="failed", error=error, extra={"param": "messages", "code": code})


def _chunks(rows: Sequence[_Prepared], size: int) -> list[Sequence[_Prepared]]:
    return [rows[start : start + size] for start in range(0, len(rows), size)]


class PrefixCache:
    """Key/value states of prompt prefixes, kept across requests of one engine.

    A prompt is cut into blocks of ``block`` tokens; block k is stored under the bytes of every token
    up to its end (an exact key: the whole prefix, as vLLM's automatic prefix caching keys its
    blocks). A new prompt reuses the longest run of stored blocks from its start and computes the
    rest block by block, so every block is computed from the same inputs, in the same shapes, whether
    the blocks before it came from the store or not: a reply never depends on what the store held.

    Why it pays: every judge prompt starts with the same instructions, the five criteria of a
    response share them, and the candidates answering one query share everything before their
    response (criterion and query come first in the official template) — so one judge pool
    scoring many candidates reuses most of each prompt.

    Least recently used blocks go first once ``budget_bytes`` is reached; a prompt's blocks are
    touched deepest first, so a shared start outlives the tails hanging from it.
    """

    def __init__(self, budget_bytes: int, block: int = PREFIX_BLOCK_TOKENS) -> None:
        self.budget_bytes = budget_bytes
        self.block = block
        self.bytes = 0
        self.reused_tokens = 0
        self.computed_tokens = 0
        self._blocks: OrderedDict[bytes, tuple[tuple[Any, Any], ...]] = OrderedDict()

    def keys(self, ids: Sequence[int]) -> list[bytes]:
        """Keys of the prompt's full blocks, leaving at least one token for ``generate`` itself."""
        whole = array("q", ids).tobytes()
        width = array("q").itemsize
        full = (len(ids) - 1) // self.block
        return [whole[: (k + 1) * self.block * width] for k in range(full)]

    def reusable(self, keys: Sequence[bytes]) -> list[tuple[tuple[Any, Any], ...]]:
        """The stored states of the longest run of ``keys`` from the first one."""
        found = []
        for key in keys:
            states = self._blocks.get(key)
            if states is None:
                break
            found.append(states)
        return found

    def put(self, key: bytes, states: tuple[tuple[Any, Any], ...]) -> None:
        size = sum(k.nbytes + v.nbytes for k, v in states)
        if size > self.budget_bytes or key in self._blocks:
            return
        while self._blocks and self.bytes + size > self.budget_bytes:
            _, old = self._blocks.popitem(last=False)
            self.bytes -= sum(k.nbytes + v.nbytes for k, v in old)
        self._blocks[key] = states
        self.bytes += size

    def touch(self, keys: Sequence[bytes]) -> None:
        for key in reversed(keys):
            if key in self._blocks:
                self._blocks.move_to_end(key)

    def clear(self) -> None:
        self._blocks.clear()
        self.bytes = 0


class TransformersEngine:
    """A Hugging Face causal LM behind the :class:`~wbray.engines.Engine` protocol.

    Loading happens in the constructor (about 2 s for the embedded SmolLM2 folder on CPU). One
    engine runs one ``generate`` chunk at a time (a lock serialises concurrent callers, since they
    would only fight over the same cores and the global torch seed).

    Sampling settings map to ``generate`` as :func:`generation_kwargs` documents (unset means
    "off", never the model's own defaults). ``seed`` calls ``torch.manual_seed`` before each chunk:
    the same requests, in the same order and with the same ``batch_size``, give the same outputs on
    the same machine; a different batch composition draws different random numbers per row.
    """

    def __init__(self, config: TransformersEngineConfig) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_id = config.model
        self._config = config
        # Ray sets OMP_NUM_THREADS to the CPUs an actor reserves, and torch follows it; only an
        # explicit setting overrides that (oversubscribed cores collapse decode speed).
        if config.torch_threads is not None:
            torch.set_num_threads(config.torch_threads)
        if config.device == "cuda" and not torch.cuda.is_available():
            raise WbrayError("transformers engine: device 'cuda' requested but torch sees no CUDA device")
        self._device = torch.device(
            "cuda"
            if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
            else "cpu"
        )
        dtype = self._pick_dtype(config.dtype, self._device.type)

        folder, gguf_file = resolve_model_path(config.model)
        extra: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
        started = time.perf_counter()
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, **extra)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **extra)
        except (OSError, ValueError) as exc:
            raise WbrayError(
                f"transformers engine: cannot load model {config.model!r} from {folder}: {exc}"
            ) from None
        if not getattr(tokenizer, "chat_template", None):
            raise WbrayError(
                f"transformers engine: model {config.model!r} has no chat template; wbray sends chat "
                "messages, so use an instruct/chat model"
            )
        # nn.Module's to()/eval() are untyped in torch's stubs as wrapped by transformers.
        module: Any = model
        module.to(self._device)
        module.eval()
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._tokenizer: PreTrainedTokenizerBase = tokenizer
        self._model: PreTrainedModel | None = model
        self._pad_id = int(tokenizer.pad_token_id)
        self._eos_ids = self._stop_ids(model, tokenizer)
        context = getattr(model.config, "max_position_embeddings", None)
        self._context: int | None = int(context) if isinstance(context, int) else None
        # One lock around every use of the model and the tokenizer: concurrent callers would only
        # fight over the same cores and the global torch seed, and a fast tokenizer used from two
        # threads at once can fail ("Already borrowed").
        self._lock = threading.Lock()
        self._compiler: Any = None
        self._grammars: dict[str, Any] = {}
        self._budget_warned: set[str] = set()
        self._prefix = self._prefix_cache(model, config.prefix_cache_mb)
        # transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name warns until 6.0).
        decoder_forward = inspect.signature(type(model.base_model).forward).parameters
        self._cache_kw = "cache" if "cache" in decoder_forward else "past_key_values"
        logger.info(
            "transformers engine: loaded %s (%s, %s, context %s) in %.1f s",
            config.model,
            self._device,
            model.dtype,
            self._context,
            time.perf_counter() - started,
        )

    @staticmethod
    def _pick_dtype(name: str, device_type: str) -> torch.dtype | str:
        import torch

        native_bf16 = cpu_has_native_bf16()
        if name == "auto":
            if device_type == "cuda":
                return "auto"  # the checkpoint's own dtype
            # Measured: bf16 decodes ~1.3x faster than fp32 on a CPU with avx512_bf16, but a matmul
            # is ~20x slower than fp32 on an AVX2-only CPU (no bf16 instructions, emulated).
            return torch.bfloat16 if native_bf16 else torch.float32
        if device_type == "cpu" and name in ("bfloat16", "float16") and not native_bf16:
            logger.warning(
                "transformers engine: dtype %s on a CPU without avx512_bf16/AMX runs about 20x slower "
                "than float32 (measured); set dtype: auto or float32",
                name,
            )
        dtype: torch.dtype = getattr(torch, name)
        return dtype

    @property
    def prefix_stats(self) -> tuple[int, int]:
        """Prompt tokens taken from the prefix cache and computed, since the engine was made."""
        if self._prefix is None:
            return (0, 0)
        return (self._prefix.reused_tokens, self._prefix.computed_tokens)

    @staticmethod
    def _prefix_cache(model: PreTrainedModel, budget_mb: int) -> PrefixCache | None:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        if budget_mb <= 0:
            return None
        # Only plain full-attention layers: a sliding-window layer drops old states as it grows, so
        # blocks stored from it would not be the states a longer prompt needs.
        try:
            layers = DynamicCache(config=model.config).layers
        except Exception:  # a config transformers cannot lay a cache out for: no reuse, no harm
            layers = []
        if not layers or any(type(layer) is not DynamicLayer for layer in layers):
            logger.info("transformers engine: prefix cache off (the model's cache is not full attention)")
            return None
        return PrefixCache(budget_mb * 2**20)

    @staticmethod
    def _stop_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
        ids: set[int] = set()
        configured = getattr(model.generation_config, "eos_token_id", None)
        if isinstance(configured, int):
            ids.add(configured)
        elif isinstance(configured, list):
            ids.update(int(i) for i in configured)
        if isinstance(tokenizer.eos_token_id, int):
            ids.add(tokenizer.eos_token_id)
        return frozenset(ids)

    async def generate(self, requests: Sequence[ChatRequest], sampling: SamplingParams) -> list[Completion]:
        """Return one completion per request, in order.

        Per-request problems (a prompt longer than the context, a chat template error, an invalid
        schema, an exception inside ``generate`` such as out-of-memory) come back as failed
        completions; a failing chunk fails only its own requests.

        Raises:
            WbrayError: The engine is closed, or a request has a ``json_schema`` and xgrammar is not
                installed (a setup problem, the same for every request).
        """
        if self._model is None:
            raise WbrayError("transformers engine: generate() called after close()")
        results: list[Completion | None] = [None] * len(requests)
        prepared = await asyncio.to_thread(self._prepare, requests, results)

        # Group by schema, keeping first-appearance order; None is the unconstrained group.
        groups: dict[str | None, list[_Prepared]] = {}
        for row in prepared:
            groups.setdefault(row.schema_key, []).append(row)
        for key, rows in groups.items():
            compiled: Any = None
            if key is not None:
                try:
                    compiled = await asyncio.to_thread(self._compiled_grammar, key)
                except WbrayError:
                    raise
                except Exception as exc:
                    for row in rows:
                        results[row.index] = Completion.failed(
                            f"json_schema: cannot compile a grammar ({type(exc).__name__}: {exc})"
                        )
                    continue
                self._warn_budget(key, self._max_new_tokens(sampling))
            for chunk in _chunks(rows, self._config.batch_size):
                completions = await asyncio.to_thread(self._run_chunk, chunk, sampling, compiled)
                for row, completion in zip(chunk, completions, strict=True):
                    results[row.index] = completion
        return [
            c if c is not None else Completion.failed("internal: request was not processed") for c in results
        ]

    def _prepare(self, requests: Sequence[ChatRequest], results: list[Completion | None]) -> list[_Prepared]:
        """Render and tokenize each request; fail the ones that cannot run (recorded in ``results``)."""
        with self._lock:
            return self._prepare_locked(requests, results)

    def _prepare_locked(
        self, requests: Sequence[ChatRequest], results: list[Completion | None]
    ) -> list[_Prepared]:
        prepared: list[_Prepared] = []
        for index, request in enumerate(requests):
            try:
                text = self._tokenizer.apply_chat_template(
                    [dict(message) for message in request.messages],
                    tokenize=False,
                    add_generation_prompt=True,
                )
                # The template already holds every special token the model expects (BOS included).
                ids = list(self._tokenizer(str(text), add_special_tokens=False)["input_ids"])
            except Exception as exc:
                results[index] = _request_fault(
                    f"chat template: {type(exc).__name__}: {exc}", "invalid_prompt"
                )
                continue
            if not ids:
                results[index] = _request_fault("prompt renders to no tokens", "invalid_prompt")
                continue
            if self._context is not None and len(ids) >= self._context:
                results[index] = _request_fault(
                    f"prompt has {len(ids)} tokens, model context is {self._context}",
                    "context_length_exceeded",
                )
                continue
            key = None
            if request.json_schema is not None:
                # Not sort_keys: xgrammar emits properties in the schema's order, so two schemas that
                # differ only in key order are different grammars (sorted, "reason" would come first).
                try:
                    key = json.dumps(request.json_schema, ensure_ascii=False)
                except (TypeError, ValueError) as exc:
                    results[index] = Completion.failed(f"json_schema: not JSON-serialisable ({exc})")
                    continue
            prepared.append(_Prepared(index, [int(i) for i in ids], key))
        return prepared

    def _compiled_grammar(self, key: str) -> Any:
        """The xgrammar grammar of a schema, compiled once per distinct schema."""
        try:
            import xgrammar as xgr
        except ImportError:
            # Installed --no-deps on purpose: its triton dependency (1 GB) only serves CUDA kernels.
            raise WbrayError(
                "constrained decoding needs xgrammar: pip install --no-deps xgrammar==0.2.9 "
                "apache-tvm-ffi==0.1.15.post2 (`make install` does this)"
            ) from None
        with self._lock:
            compiled = self._grammars.get(key)
            if compiled is None:
                if self._compiler is None:
                    vocab_size = self._model.config.vocab_size if self._model is not None else None
                    info = xgr.TokenizerInfo.from_huggingface(self._tokenizer, vocab_size=vocab_size)
                    self._compiler = xgr.GrammarCompiler(info)
                # any_whitespace=False: compact JSON, so the token budget goes to the content.
                compiled = self._compiler.compile_json_schema(key, any_whitespace=False)
                self._grammars[key] = compiled
            return compiled

    def _warn_budget(self, key: str, max_new_tokens: int) -> None:
        # No grammar can close the JSON once max_new_tokens runs out inside a string, so a reply is
        # guaranteed to parse only when the budget covers the longest allowed strings. The user's
        # value is kept (a tight budget is usually fine in practice); the risk is logged once.
        floor = _JSON_FIXED_TOKENS + _TOKENS_PER_CHAR * _string_length_budget(json.loads(key))
        if max_new_tokens < floor and key not in self._budget_warned:
            self._budget_warned.add(key)
            logger.warning(
                "max_tokens %d is below %d, the budget that guarantees a complete reply for this schema's "
                "string maxLength; long replies may be cut off (finish_reason 'length') and fail to parse",
                max_new_tokens,
                floor,
            )

    @staticmethod
    def _max_new_tokens(sampling: SamplingParams) -> int:
        return sampling.max_tokens if sampling.max_tokens is not None else DEFAULT_MAX_NEW_TOKENS

    def _run_chunk(
        self, chunk: Sequence[_Prepared], sampling: SamplingParams, compiled: Any
    ) -> list[Completion]:
        """One blocking ``generate`` call; any exception fails exactly this chunk's requests."""
        import torch

        with self._lock:
            started = time.perf_counter()
            try:
                model: Any = self._model  # generate() is untyped behind torch's decorators
                if model is None:
                    raise WbrayError("engine closed")
                longest = max(len(row.input_ids) for row in chunk)
                max_new = self._max_new_tokens(sampling)
                if self._context is not None:
                    # Never run past the position embeddings; a row capped here reports "length".
                    max_new = min(max_new, self._context - longest)
                input_ids, attention_mask = self._left_pad(chunk, longest)
                kwargs = generation_kwargs(sampling, max_new, self._pad_id)
                if self._prefix is not None and len(chunk) == 1:
                    # One row, no padding: its prompt's blocks can come from (and go to) the store.
                    kwargs[self._cache_kw] = self._prefill(model, chunk[0].input_ids, input_ids)
                if compiled is not None:
                    import xgrammar as xgr
                    from transformers import LogitsProcessorList

                    # The processor keeps per-row matcher state: a new one for every generate call.
                    kwargs["logits_processor"] = LogitsProcessorList(
                        [xgr.contrib.hf.LogitsProcessor(compiled)]
                    )
                if sampling.seed is not None:
                    torch.manual_seed(sampling.seed)
                with torch.inference_mode():
                    output = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
                sequences = output if isinstance(output, torch.Tensor) else output.sequences
                new_tokens: list[list[int]] = sequences[:, longest:].tolist()
            except Exception as exc:
                latency = time.perf_counter() - started
                logger.warning(
                    "transformers engine: a chunk of %d failed: %s: %s", len(chunk), type(exc).__name__, exc
                )
                if self._device.type == "cuda":
                    torch.cuda.empty_cache()
                return [Completion.failed(f"{type(exc).__name__}: {exc}", latency_s=latency) for _ in chunk]
            latency = time.perf_counter() - started
            return [
                self._completion(row, tokens, latency) for row, tokens in zip(chunk, new_tokens, strict=True)
            ]

    def _prefill(self, model: Any, ids: Sequence[int], input_ids: torch.Tensor) -> Any:
        """A cache holding the prompt's full blocks: stored ones reused, the others computed and stored.

        ``generate`` then computes only the prompt's last, partial block and decodes.
        """
        import torch
        from transformers import DynamicCache

        store = self._prefix
        assert store is not None
        keys = store.keys(ids)
        reused = store.reusable(keys)
        if reused:
            layers = zip(*reused, strict=True)  # per layer: that layer's states of each block
            cache = DynamicCache(
                ddp_cache_data=[
                    (torch.cat([k for k, _ in blocks], dim=-2), torch.cat([v for _, v in blocks], dim=-2))
                    for blocks in layers
                ],
                config=model.config,
            )
        else:
            cache = DynamicCache(config=model.config)
        decoder = model.base_model  # the layers without the LM head: only the states are wanted
        layers_now: Any = cache.layers  # DynamicLayer each (checked when the store was made)
        block = store.block
        for k in range(len(reused), len(keys)):
            start, end = k * block, (k + 1) * block
            with torch.inference_mode():
                decoder(input_ids=input_ids[:, start:end], use_cache=True, **{self._cache_kw: cache})
            store.put(
                keys[k],
                tuple(
                    (layer.keys[..., start:end, :].clone(), layer.values[..., start:end, :].clone())
                    for layer in layers_now
                ),
            )
        store.touch(keys)
        store.reused_tokens += len(reused) * block
        store.computed_tokens += len(ids) - len(reused) * block
        return cache

    def _left_pad(self, chunk: Sequence[_Prepared], width: int) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        input_ids = torch.full((len(chunk), width), self._pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, row in enumerate(chunk):
            n = len(row.input_ids)
            input_ids[i, width - n :] = torch.tensor(row.input_ids, dtype=torch.long)
            attention_mask[i, width - n :] = 1
        return input_ids.to(self._device), attention_mask.to(self._device)

    def _completion(self, row: _Prepared, tokens: list[int], latency: float) -> Completion:
        generated, finish, count = split_generated(tokens, self._eos_ids)
        text = self._tokenizer.decode(generated, skip_special_tokens=True)
        return Completion(
            text=str(text),
            finish_reason=finish,
            prompt_tokens=len(row.input_ids),
            completion_tokens=count,
            latency_s=latency,
        )

    async def stream(
        self, request: ChatRequest, sampling: SamplingParams
    ) -> AsyncGenerator[Completion, None]:
        """Generate one request token by token (serving, where time to the first token matters).

        A separate path from :meth:`generate`, which it leaves unchanged: one request per
        ``model.generate`` call, under the same lock, in a worker thread that hands each new token
        to a streamer.

        Yields:
            Completions whose ``text`` is the text added since the previous one (never empty; a
            token that ends inside a multi-byte character waits for the rest). The last one carries
            ``finish_reason``, the token counts and the latency (its ``text`` is the rest of the
            answer, possibly empty), or is a failed completion saying why. The texts joined equal
            the text :meth:`generate` returns for the same request alone.

        Closing the iterator early stops the generation at the next token.

        Raises:
            WbrayError: As :meth:`generate` (engine closed, xgrammar missing).
        """
        if self._model is None:
            raise WbrayError("transformers engine: stream() called after close()")
        results: list[Completion | None] = [None]
        prepared = await asyncio.to_thread(self._prepare, [request], results)
        if not prepared:
            yield results[0] or Completion.failed("internal: request was not processed")
            return
        row = prepared[0]
        compiled: Any = None
        if row.schema_key is not None:
            try:
                compiled = await asyncio.to_thread(self._compiled_grammar, row.schema_key)
            except WbrayError:
                raise
            except Exception as exc:
                reason = f"json_schema: cannot compile a grammar ({type(exc).__name__}: {exc})"
                yield Completion.failed(reason)
                return
            self._warn_budget(row.schema_key, self._max_new_tokens(sampling))
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue[str | None] = asyncio.Queue()
        stop = threading.Event()

        def emit(text: str | None) -> None:
            loop.call_soon_threadsafe(deltas.put_nowait, text)

        worker = asyncio.ensure_future(
            asyncio.to_thread(self._run_stream, row, sampling, compiled, emit, stop)
        )
        try:
            while (text := await deltas.get()) is not None:
                yield Completion(text=text)
            yield await worker
        finally:
            # The consumer left early (or is done): the worker stops at its next token and ends on
            # its own; nothing waits for it here, so a cancelled caller is not held up.
            stop.set()

    def _run_stream(
        self,
        row: _Prepared,
        sampling: SamplingParams,
        compiled: Any,
        emit: Callable[[str | None], None],
        stop: threading.Event,
    ) -> Completion:
        """One blocking streamed ``generate`` call; always emits None last and never raises."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        eos_ids = self._eos_ids
        tokenizer = self._tokenizer

        class _Deltas(BaseStreamer):
            """Turns new token ids into new text; runs in this thread, under the engine lock."""

            def __init__(self) -> None:
                self.prompt_seen = False
                self.ended = False
                self.tokens: list[int] = []
                self.sent = ""

            def put(self, value: Any) -> None:
                if not self.prompt_seen:  # generate() hands over the prompt first
                    self.prompt_seen = True
                    return
                for token in value.reshape(-1).tolist():
                    if self.ended or int(token) in eos_ids:
                        self.ended = True
                        return
                    self.tokens.append(int(token))
                # Decoding the whole answer each time (not token by token) keeps merged characters
                # and spacing exactly as the final decode has them; answers are short, so it is cheap.
                text = str(tokenizer.decode(self.tokens, skip_special_tokens=True))
                if text.endswith("\ufffd") or not text.startswith(self.sent) or len(text) == len(self.sent):
                    return
                emit(text[len(self.sent) :])
                self.sent = text

            def end(self) -> None:
                pass

        class _StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                rows = input_ids.shape[0]
                return torch.full((rows,), stop.is_set(), dtype=torch.bool, device=input_ids.device)

        streamer = _Deltas()
        try:
            with self._lock:
                started = time.perf_counter()
                try:
                    model: Any = self._model
                    if model is None:
                        raise WbrayError("engine closed")
                    max_new = self._max_new_tokens(sampling)
                    if self._context is not None:
                        max_new = min(max_new, self._context - len(row.input_ids))
                    input_ids, attention_mask = self._left_pad([row], len(row.input_ids))
                    kwargs = generation_kwargs(sampling, max_new, self._pad_id)
                    if compiled is not None:
                        import xgrammar as xgr
                        from transformers import LogitsProcessorList

                        kwargs["logits_processor"] = LogitsProcessorList(
                            [xgr.contrib.hf.LogitsProcessor(compiled)]
                        )
                    if sampling.seed is not None:
                        torch.manual_seed(sampling.seed)
                    with torch.inference_mode():
                        output = model.generate(
                            input_ids=input_ids,
                            attention_mask=attention_mask,
                            streamer=streamer,
                            stopping_criteria=StoppingCriteriaList([_StopWhenAsked()]),
                            **kwargs,
                        )
                    sequences = output if isinstance(output, torch.Tensor) else output.sequences
                    new_tokens: list[int] = sequences[0, len(row.input_ids) :].tolist()
                except Exception as exc:
                    logger.warning("transformers engine: a stream failed: %s: %s", type(exc).__name__, exc)
                    return Completion.failed(
                        f"{type(exc).__name__}: {exc}", latency_s=time.perf_counter() - started
                    )
                final = self._completion(row, new_tokens, time.perf_counter() - started)
            text = final.text or ""
            if not text.startswith(streamer.sent):
                # Never seen with byte-level BPE; if a tokenizer rewrites earlier text at the end,
                # the stream cannot take back what it sent, so say so instead of hiding it.
                logger.warning("transformers engine: streamed text differs from the final decode")
            return Completion(
                text=text[len(streamer.sent) :] if text.startswith(streamer.sent) else "",
                finish_reason=final.finish_reason,
                prompt_tokens=final.prompt_tokens,
                completion_tokens=final.completion_tokens,
                latency_s=final.latency_s,
            )
        finally:
            emit(None)

    async def close(self) -> None:
        """Drop the model and free its memory (waits for a running chunk to finish)."""
        await asyncio.to_thread(self._release)

    def _release(self) -> None:
        with self._lock:
            if self._prefix is not None and self._prefix.reused_tokens:
                total = self._prefix.reused_tokens + self._prefix.computed_tokens
                logger.info(
                    "transformers engine: prefix cache reused %d of %d prompt tokens",
                    self._prefix.reused_tokens,
                    total,
                )
                self._prefix.clear()
            self._model = None
            self._grammars.clear()
            self._compiler = None
        gc.collect()
        if self._device.type == "cuda":
            import torch

            torch.cuda.empty_cache()


@register_engine("transformers")
def _factory(config: TransformersEngineConfig) -> Engine:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise missing_extra("torch", "cpu") from None
    return TransformersEngine(config)
