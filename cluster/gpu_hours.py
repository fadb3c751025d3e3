"""GPU-hours per 1,000-query WritingBench evaluation, by model size: the table in cluster/README.md.

ESTIMATES, NOT MEASUREMENTS. Nothing here ran on a GPU; every number comes from the model below, and
its inputs are printed with the table. Regenerate (and the README's table with it) with

    python cluster/gpu_hours.py [--data DIR] [--markdown]

The model:

- Prompt tokens come from the benchmark file itself, without a tokenizer: CJK characters count 0.7
  tokens each (Qwen's and Llama 3's tokenizers put ~1.4 Chinese characters in a token) and any other
  text 1 token per 4 characters (the usual English rate). The generation prompt is the query alone
  (plus ~20 tokens of chat template); the judge prompt is the official template (measured the same
  way from the data directory's prompts/, or the builtin wording) with the criterion twice, the
  query and the answer.
- Output tokens are assumed, not measured: 1,500 per answer for instruct models (long-form writing),
  4,000 for DeepSeek-R1 (its thoughts and then an answer of the same ~1,500), and the paper's
  16,000-token budget as the worst case; a judge reply (score and reason as JSON) is 300.
- Decode is bound by memory bandwidth: each step reads the weights once and every running
  sequence's KV cache (at its mean length, prompt + half the output). The batch is what the KV cache
  holds (GPU memory x 0.9 - weights - 2 GB per GPU), capped at vLLM's 256 sequences and the requests
  there are. Prefill is bound by compute: 2 FLOPs per active parameter and prompt token.
- Achieved fractions of peak: 50% of memory bandwidth in decode (85% of that under tensor
  parallelism, for the all-reduces), 40% of dense BF16 (FP8 for DeepSeek-R1) FLOPs in prefill.
  Check against a published figure: the same model predicts CALIBRATION's workload (Llama-3.1-8B on
  one H100, ShareGPT-like 250-token prompts and answers) at ~15,000 output tokens/s, where a
  third-party compilation of vLLM benchmarks (morphllm.com/vllm-benchmarks) reports ~12,500: on such
  short sequences the model is ~20% optimistic. The printed check row keeps that visible.
- Peak figures are NVIDIA's datasheets: L40S 48 GB, 864 GB/s, 362 TFLOPS BF16 dense; H100 SXM 80 GB,
  3.35 TB/s, 989 TFLOPS BF16 dense; H200 141 GB, 4.8 TB/s, 1,979 TFLOPS FP8 dense.

A real run also has a tail (the last long answers finish in a small batch), model loading (minutes,
more for 70B+), and re-asks of unparseable judge replies; none of that is in the table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, median

REPO = Path(__file__).resolve().parents[1]
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")
GB = 1e9

#: Answer lengths assumed (tokens): instruct models, DeepSeek-R1 (thoughts + answer), the paper's budget.
TYPICAL_OUT, R1_TYPICAL_OUT, BUDGET_OUT = 1_500, 4_000, 16_000
#: A judge reply: a score and a reason as JSON.
JUDGE_OUT = 300
#: Criteria per query (the benchmark's checklists) and queries per evaluation.
CRITERIA, QUERIES = 5, 1_000
CHAT_TEMPLATE_TOKENS = 20
BANDWIDTH_EFFICIENCY, TP_EFFICIENCY, FLOPS_EFFICIENCY = 0.5, 0.85, 0.4
MAX_NUM_SEQS, ACTIVATION_GB_PER_GPU = 256, 2.0


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gb: float
    bandwidth_gbs: float
    tflops_bf16: float
    tflops_fp8: float


@dataclass(frozen=True)
class Model:
    name: str
    params_b: float  # all parameters (weights read per step: a large batch touches every expert)
    active_b: float  # parameters per token (prefill FLOPs)
    bytes_per_param: float
    kv_bytes_per_token: int


@dataclass(frozen=True)
class Deployment:
    label: str
    model: Model
    gpu: Gpu
    gpus: int
    out_tokens: int


L40S = Gpu("L40S", 48, 864, 362, 733)
H100 = Gpu("H100", 80, 3350, 989, 1979)
H200 = Gpu("H200", 141, 4800, 989, 1979)

# KV bytes per token = layers x KV heads x head dim x 2 (K and V) x 2 bytes (BF16), from each
# model's config.json; DeepSeek-R1's MLA caches one 576-wide latent per layer.
QWEN_7B = Model("Qwen2.5-7B", 7.6, 7.6, 2, 28 * 4 * 128 * 2 * 2)
LLAMA_8B = Model("Llama-3.1-8B", 8.0, 8.0, 2, 32 * 8 * 128 * 2 * 2)
QWEN_72B = Model("Qwen2.5-72B", 72.7, 72.7, 2, 80 * 8 * 128 * 2 * 2)
LLAMA_70B = Model("Llama-3.3-70B", 70.6, 70.6, 2, 80 * 8 * 128 * 2 * 2)
MISTRAL_123B = Model("Mistral-Large-2411 (123B)", 122.6, 122.6, 2, 88 * 8 * 128 * 2 * 2)
DEEPSEEK_R1 = Model("DeepSeek-R1 (671B MoE, FP8)", 671, 37, 1, 61 * 576 * 2)
CRITIC = Model("WritingBench critic (Qwen2.5-7B)", 7.6, 7.6, 2, 28 * 4 * 128 * 2 * 2)

DEPLOYMENTS = (
    Deployment("7-8B (Qwen2.5-7B)", QWEN_7B, L40S, 1, TYPICAL_OUT),
    Deployment("7-8B (Llama-3.1-8B)", LLAMA_8B, L40S, 1, TYPICAL_OUT),
    Deployment("7-8B (Llama-3.1-8B)", LLAMA_8B, H100, 1, TYPICAL_OUT),
    Deployment("70-72B (Qwen2.5-72B)", QWEN_72B, H100, 4, TYPICAL_OUT),
    Deployment("70-72B (Llama-3.3-70B)", LLAMA_70B, H100, 4, TYPICAL_OUT),
    Deployment("70-72B (Llama-3.3-70B)", LLAMA_70B, L40S, 8, TYPICAL_OUT),
    Deployment("123B (Mistral-Large)", MISTRAL_123B, H100, 8, TYPICAL_OUT),
    Deployment("671B MoE (DeepSeek-R1)", DEEPSEEK_R1, H200, 8, R1_TYPICAL_OUT),
)
JUDGES = (
    Deployment("critic, 5,000 calls", CRITIC, L40S, 1, JUDGE_OUT),
    Deployment("critic, 5,000 calls", CRITIC, H100, 1, JUDGE_OUT),
)
#: The published check: Llama-3.1-8B, 1 x H100, ShareGPT-like 250-token prompts and answers.
CALIBRATION = Deployment("Llama-3.1-8B on 1 x H100 (ShareGPT-like)", LLAMA_8B, H100, 1, 250)
CALIBRATION_PUBLISHED_TOKS = 12_500


def estimate_tokens(text: str) -> float:
    """Tokens of a text without a tokenizer: 0.7 per CJK character, 1 per 4 other characters."""
    cjk = len(_CJK.findall(text))
    return cjk * 0.7 + (len(text) - cjk) / 4


@dataclass(frozen=True)
class Prompts:
    """What the benchmark's prompts weigh, in estimated tokens."""

    mean: float
    median: float
    longest: float
    criterion_mean: float
    judge_template: float


def measure(data_dir: Path) -> Prompts:
    """Prompt sizes of the benchmark at ``data_dir`` (official layout)."""
    rows = [
        json.loads(line)
        for line in (data_dir / "benchmark_query" / "benchmark_all.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
        if line.strip()
    ]
    queries = [estimate_tokens(r["query"]) for r in rows]
    criteria = [estimate_tokens(repr(c)) for r in rows for c in r["checklist"]]
    prompts = data_dir / "prompts"
    template = sum(
        estimate_tokens(p.read_text(encoding="utf-8")) for p in sorted(prompts.glob("judge_*.txt"))
    )
    return Prompts(mean(queries), median(queries), max(queries), mean(criteria), template)


def _decode_tokens_per_s(d: Deployment, context: float, requests: int) -> float:
    weights = d.model.params_b * d.model.bytes_per_param * GB
    kv_room = d.gpus * (d.gpu.memory_gb * 0.9 - ACTIVATION_GB_PER_GPU) * GB - weights
    batch = min(MAX_NUM_SEQS, int(kv_room // (context * d.model.kv_bytes_per_token)), requests)
    if batch < 1:
        raise ValueError(f"{d.model.name} does not fit {d.gpus} x {d.gpu.name}")
    step_s = (weights + batch * context * d.model.kv_bytes_per_token) / (d.gpus * d.gpu.bandwidth_gbs * GB)
    efficiency = BANDWIDTH_EFFICIENCY * (TP_EFFICIENCY if d.gpus > 1 else 1.0)
    return batch / step_s * efficiency


def gpu_hours(d: Deployment, prompt_tokens: float, requests: int, out_tokens: int | None = None) -> float:
    """GPU-hours for ``requests`` requests of ``prompt_tokens`` in and ``out_tokens`` out each."""
    out = d.out_tokens if out_tokens is None else out_tokens
    tflops = d.gpu.tflops_fp8 if d.model.bytes_per_param == 1 else d.gpu.tflops_bf16
    prefill_s = (
        2 * d.model.active_b * 1e9 * prompt_tokens * requests / (d.gpus * tflops * 1e12 * FLOPS_EFFICIENCY)
    )
    decode_s = out * requests / _decode_tokens_per_s(d, prompt_tokens + out / 2, requests)
    return d.gpus * (prefill_s + decode_s) / 3600


def judge_prompt(p: Prompts, answer_tokens: float) -> float:
    """Tokens of one judge prompt: template, the criterion twice, the query and the answer."""
    return p.judge_template + 2 * p.criterion_mean + p.mean + answer_tokens


def table(p: Prompts) -> str:
    """The Markdown table of cluster/README.md."""
    generation_prompt = p.mean + CHAT_TEMPLATE_TOKENS
    lines = [
        "| model size (example) | GPUs per engine | GPU-hours, typical answers "
        "| GPU-hours, whole 16k budget |",
        "|---|---|---:|---:|",
    ]
    for d in DEPLOYMENTS:
        typical = gpu_hours(d, generation_prompt, QUERIES)
        worst = gpu_hours(d, generation_prompt, QUERIES, BUDGET_OUT)
        lines.append(f"| {d.label} | {d.gpus} x {d.gpu.name} | {typical:.1f} | {worst:.0f} |")
    for d in JUDGES:
        # The judge sees the answer without thoughts: ~1,500 tokens for every model.
        typical = gpu_hours(d, judge_prompt(p, TYPICAL_OUT), QUERIES * CRITERIA)
        worst = gpu_hours(d, judge_prompt(p, BUDGET_OUT), QUERIES * CRITERIA)
        lines.append(f"| {d.label} | {d.gpus} x {d.gpu.name} | {typical:.1f} | {worst:.0f} |")
    return "\n".join(lines)


def calibration_tokens_per_s() -> float:
    """The model's prediction for the published check (output tokens/s)."""
    return _decode_tokens_per_s(CALIBRATION, 250 + 250 / 2, 1_000)


def inputs(p: Prompts) -> str:
    """The measured and assumed inputs, printed under the table."""
    return (
        f"Inputs: benchmark prompts (estimated tokens) mean {p.mean:,.0f}, median {p.median:,.0f}, "
        f"longest {p.longest:,.0f}; judge template {p.judge_template:,.0f}, "
        f"criterion {p.criterion_mean:,.0f}; "
        f"judge prompt with a typical answer {judge_prompt(p, TYPICAL_OUT):,.0f}. Assumed answers: "
        f"{TYPICAL_OUT:,} tokens ({R1_TYPICAL_OUT:,} for DeepSeek-R1 with its thoughts), judge replies "
        f"{JUDGE_OUT}. An API judge reads {QUERIES * CRITERIA * judge_prompt(p, TYPICAL_OUT) / 1e6:.1f}M "
        f"and writes {QUERIES * CRITERIA * JUDGE_OUT / 1e6:.1f}M tokens per model "
        f"({QUERIES * CRITERIA:,} calls). Check: {calibration_tokens_per_s():,.0f} output tokens/s "
        f"predicted for {CALIBRATION.label} vs ~{CALIBRATION_PUBLISHED_TOKS:,} published."
    )


def _default_data_dir() -> Path:
    explicit = os.environ.get("WBRAY_DATA_DIR") or os.environ.get("WBRAY_TEST_OFFICIAL_DIR")
    return Path(explicit) if explicit else REPO.parent / "shared" / "writingbench"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--data", type=Path, default=None, help="WritingBench data directory (official layout)."
    )
    args = parser.parse_args(argv)
    data = args.data or _default_data_dir()
    if not (data / "benchmark_query" / "benchmark_all.jsonl").is_file():
        print(f"no benchmark at {data}; run `wbray data download` and pass --data", file=sys.stderr)
        return 1
    p = measure(data)
    print(table(p))
    print()
    print(inputs(p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
