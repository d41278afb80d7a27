"""Let SGLang's gpt-oss start under `--attention-backend amd`.

SGLang 0.5.23's per-model resolution step (`handle_model_specific_adjustments`)
asserts that a `GptOssForCausalLM` runs on one of a closed list of attention
backends (triton, trtllm_mha, fa3, fa4, ascend, intel_amx, intel_xpu, aiter):
the ones that compute attention sinks and sliding windows. Ours computes both
(`attention/reference.py`, the Triton decode and extend kernels), and SGLang
offers no way to join that list. While that step runs, and only for the
architectures in `ARCHS` with `amd` selected, `amd_listed` makes the step's
`attention_backends_of` report `amd` as `triton` (the list's portable member);
nothing else in the step reads it for these models, and the real backend is
untouched. Not a HookRegistry patch: the read sits in the middle of SGLang's
function. `TARGET` must still hold `NEEDLE` (`tests/test_gpt_oss_start.py`):
should SGLang open the list, this patch must go.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

from sglang_amd.flags import ATTENTION_BACKEND

ARCHS = ("GptOssForCausalLM",)
TARGET = "sglang.srt.arg_groups.model_hook"
FUNCTION = "handle_model_specific_adjustments"
NEEDLE = "GptOssForCausalLM requires one of"
# The closed list's member that stands for ours in the assertion.
STAND_IN = "triton"


def applies(model_config: Any | None) -> bool:
    hf_config = getattr(model_config, "hf_config", None)
    return any(a in ARCHS for a in (getattr(hf_config, "architectures", None) or ()))


@contextlib.contextmanager
def amd_listed() -> Iterator[None]:
    """Within the block, SGLang's per-model step sees `amd` as `STAND_IN`."""
    module = importlib.import_module(TARGET)
    original = module.attention_backends_of

    def backends_of(view: Any) -> tuple:
        return tuple(STAND_IN if b == ATTENTION_BACKEND else b for b in original(view))

    module.attention_backends_of = backends_of
    try:
        yield
    finally:
        module.attention_backends_of = original
