"""vLLM through ray.data.llm on a GPU (skipped without CUDA or without the gpu extra)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.skipif(not _cuda(), reason="needs CUDA")
def test_vllm_pipeline_on_gpu(tmp_path: Path) -> None:
    pytest.importorskip("vllm", reason="needs wbray's gpu extra (vllm)")
    model = os.environ.get("WBRAY_GPU_TEST_MODEL")
    if not model:
        pytest.skip("set WBRAY_GPU_TEST_MODEL to a local HF model folder (no hub access in tests)")
    import wbray
    from wbray.config import load_config
    from wbray.storage import RunLayout, read_scores

    engine = f"{{backend: vllm, model: '{model}', max_model_len: 8192, gpu_memory_utilization: 0.5}}"
    config = load_config(
        None,
        [
            f"candidates=[{{name: gpu-model, engine: {engine}, sampling: {{max_tokens: 64}}}}]",
            f"judge.engine={engine}",
            "judge.constrained=true",
            "judge.sampling.max_tokens=256",
            "data.data_dir=example",
            "data.limit=2",
        ],
    )
    wbray.evaluate(config, out=str(tmp_path / "run"))
    scores = read_scores(RunLayout.at(str(tmp_path / "run")), "judge").to_pandas()
    assert len(scores) == 10 and set(scores["status"]) == {"ok"}
    assert scores["score"].between(1, 10).all()
