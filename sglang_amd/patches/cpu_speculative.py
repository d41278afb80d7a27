"""Make SGLang's EAGLE/MTP speculative path run on a CPU platform.

SGLang 0.5.23's speculative worker has a few CUDA-only calls on a path that is
otherwise device-agnostic. Each hook below is an AROUND hook through SGLang's
HookRegistry that changes behaviour only when the tensors involved live on the
CPU; on a GPU every call runs SGLang's code untouched.

- `set_embed_and_head` of the MTP families' draft classes (DeepseekV2ForCausalLM,
  Glm4MoeForCausalLM, MiMoForCausalLM: the draft shares the target's embedding and
  lm_head) ends with `torch.cuda.empty_cache(); torch.cuda.synchronize()`, which
  raise without an NVIDIA driver.
- `build_tree_kernel_efficient_func` / `verify_tree_greedy_func` (EAGLE tree
  construction and greedy verification) reach sgl-kernel CUDA/CPU builds or refuse
  out-of-tree platforms; SGLang ships Triton versions of both (its XPU path), which
  run on CPU tensors in Triton's interpreter. That interpreter must be on for the
  whole scheduler process (TRITON_INTERPRET=1, read when kernels are defined), as
  SGLang's other speculative helpers are Triton kernels too; `attention/support.py`
  refuses CPU speculative decoding without it, naming the variable.
- `eagle_utils._verify_uses_greedy` sends a batch holding a sampled request
  (temperature > 0) down the sampling-verify path, whose kernel
  (`tree_speculative_sampling_target_only`) is None on every platform but CUDA
  and MUSA: calling it killed the scheduler (found by the fault suite). SGLang's
  own CPU engine and HIP verify such batches greedily instead; where the kernel
  is missing, so does this hook (logged once), rather than crash. Sampled
  requests under speculative decoding on the CPU platform therefore commit the
  target's argmax, as on SGLang's CPU engine.
"""

from __future__ import annotations

SET_EMBED_AND_HEAD = "sglang.srt.models.deepseek_v2.DeepseekV2ForCausalLM.set_embed_and_head"
# The same method, same body, in the other MTP families' classes
SET_EMBED_AND_HEAD_ALSO = (
    "sglang.srt.models.glm4_moe.Glm4MoeForCausalLM.set_embed_and_head",
    "sglang.srt.models.mimo.MiMoForCausalLM.set_embed_and_head",
)
_SPEC_TREE = "sglang.kernels.ops.speculative.spec_tree"
BUILD_TREE = f"{_SPEC_TREE}.build_tree_kernel_efficient_func"
VERIFY_GREEDY = f"{_SPEC_TREE}.verify_tree_greedy_func"
USES_GREEDY = "sglang.srt.speculative.eagle_utils._verify_uses_greedy"
TARGETS = {
    USES_GREEDY: ("is_all_greedy", "is_cpu", "is_hip", "is_xpu", "use_rejection_sampling"),
    SET_EMBED_AND_HEAD: ("self", "embed", "head"),
    **dict.fromkeys(SET_EMBED_AND_HEAD_ALSO, ("self", "embed", "head")),
    BUILD_TREE: (
        "parent_list",
        "top_scores_index",
        "seq_lens",
        "tree_mask",
        "positions",
        "retrieve_index",
        "retrieve_next_token",
        "retrieve_next_sibling",
        "topk",
        "spec_steps",
        "num_verify_tokens",
        "tree_mask_mode",
    ),
    VERIFY_GREEDY: (
        "predicts",
        "accept_index",
        "accept_token_num",
        "candidates",
        "retrieve_index",
        "retrieve_next_token",
        "retrieve_next_sibling",
        "target_predict",
        "topk",
    ),
}


def _set_embed_and_head(original, self, embed, head):
    if embed.device.type != "cpu":
        return original(self, embed, head)
    del self.model.embed_tokens.weight
    del self.lm_head.weight
    self.model.embed_tokens.weight = embed
    self.lm_head.weight = head


def _build_tree(original, *args, **kwargs):
    params = TARGETS[BUILD_TREE]
    bound = dict(zip(params, args, strict=False)) | kwargs
    if bound["seq_lens"].device.type != "cpu":
        return original(*args, **kwargs)
    from sglang.kernels.ops.speculative.spec_tree import sgl_build_tree_kernel_triton

    bound["verified_seq_len"] = bound.pop("seq_lens")
    bound["selected_index"] = bound.pop("top_scores_index")
    bound["depth"] = bound.pop("spec_steps")
    bound["draft_token_num"] = bound.pop("num_verify_tokens")
    return sgl_build_tree_kernel_triton(**bound)


def _verify_greedy(original, *args, **kwargs):
    params = TARGETS[VERIFY_GREEDY]
    bound = dict(zip(params, args, strict=False)) | kwargs
    if bound["candidates"].device.type != "cpu":
        return original(*args, **kwargs)
    from sglang.kernels.ops.speculative.spec_tree import verify_tree_greedy_triton

    bound.pop("topk", None)
    verify_tree_greedy_triton(**bound)
    return bound["predicts"], bound["accept_index"], bound["accept_token_num"]


_warned_greedy = False


def _verify_uses_greedy(original, **kwargs):
    if original(**kwargs):
        return True
    from sglang.srt.speculative import eagle_utils

    if kwargs["use_rejection_sampling"] or eagle_utils.tree_speculative_sampling_target_only:
        return False
    global _warned_greedy
    if not _warned_greedy:
        _warned_greedy = True
        import logging

        logging.getLogger(__name__).warning(
            "sglang-amd: speculative verify of sampled requests is greedy here: SGLang has no "
            "tree sampling kernel on this platform (as on its own CPU engine and HIP)"
        )
    return True


def register() -> None:
    """Register the hooks with SGLang's HookRegistry (idempotent)."""
    from sglang_amd.patches import register_around_hooks

    register_around_hooks(
        __name__,
        {
            SET_EMBED_AND_HEAD: _set_embed_and_head,
            **dict.fromkeys(SET_EMBED_AND_HEAD_ALSO, _set_embed_and_head),
            BUILD_TREE: _build_tree,
            VERIFY_GREEDY: _verify_greedy,
            USES_GREEDY: _verify_uses_greedy,
        },
    )
