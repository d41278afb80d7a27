"""Write a draft head into a checkpoint folder as SGLang's loaders expect it.

Where it sits: after a head is built (`nextn_head.py`), before SGLang serves
`--speculative-algorithm NEXTN` from the folder without `--speculative-draft-load-format
dummy`. The head's tensors go to one more safetensors shard, named in the weight
index (a single-file checkpoint becomes an indexed one), replacing any MTP layer
written here before.
Never imports sglang.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from sglang_amd.mtp.nextn_head import NextNHead

SHARD = "model-mtp.safetensors"
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
MAIN = "model-main.safetensors"  # a single-file checkpoint's weights, once indexed


def _weight_map(model_dir: Path) -> dict[str, str]:
    """The folder's weight map. A single-file checkpoint is renamed to a shard of an
    index first: transformers reads `model.safetensors` alone whenever it exists,
    index or not, and would never see the MTP shard."""
    index_path = model_dir / INDEX
    if index_path.is_file():
        return json.loads(index_path.read_text())["weight_map"]
    single = model_dir / SINGLE
    if not single.is_file():
        raise FileNotFoundError(f"{model_dir}: no {SINGLE} or {INDEX} to extend")
    from safetensors import safe_open

    with safe_open(single, "pt") as f:
        keys = list(f.keys())
    single.rename(model_dir / MAIN)
    return dict.fromkeys(keys, MAIN)


def write_into_checkpoint(head: NextNHead, model_dir: str | Path, dtype: torch.dtype) -> Path:
    """Add `head`'s weights (cast to `dtype`) to `model_dir`; returns the shard's path."""
    from safetensors.torch import save_file

    model_dir = Path(model_dir)
    tensors = {k: v.to(dtype) for k, v in head.checkpoint_tensors().items()}
    weight_map = _weight_map(model_dir)
    prefix = head.checkpoint_prefix
    stale = {weight_map[k] for k in weight_map if k.startswith(prefix)} - {SHARD}
    if stale:
        raise ValueError(f"{model_dir}: an MTP layer is already stored in {sorted(stale)}")
    weight_map = {k: v for k, v in weight_map.items() if not k.startswith(prefix)}
    save_file(tensors, model_dir / SHARD, metadata={"format": "pt"})
    weight_map.update(dict.fromkeys(tensors, SHARD))
    (model_dir / INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2))
    return model_dir / SHARD
