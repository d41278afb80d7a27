"""Make SGLang's EAGLE/MTP speculative path run on a CPU platform.

SGLang 0.5.23's speculative worker has a few CUDA-only calls on a path that is
otherwise device-agnostic. Each hook below is an AROUND hook through SGLang's
HookRegistry that changes behaviour only when the tensors involved live on the
CPU; on a GPU every call runs SGLang's code untouched.

- `DeepseekV2ForCausalLM.set_embed_and_head` (the MTP draft shares the target's
  embedding and lm_head) ends with `torch.cuda.empty_cache(); torch.cuda.synchronize()`,
  which raise without an NVIDIA driver.
- `build_tree_kernel_efficient_func` / `verify_tree_greedy_func` (EAGLE tree
  construction and greedy verification) reach sgl-kernel CUDA/CPU builds or refuse
  out-of-tree platforms; SGLang ships Triton versions of both (its XPU path), which
  run on CPU tensors in Triton's interpreter. That interpreter must be on for the
  whole scheduler process (TRITON_INTERPRET=1, read when kernels are defined), as
  SGLang's other speculative helpers are Triton kernels too; `attention/support.py`
  refuses CPU speculative decoding without it, naming the variable.
"""

from __future__ import annotations

SET_EMBED_AND_HEAD = "sglang.srt.models.deepseek_v2.DeepseekV2ForCausalLM.set_embed_and_head"
_SPEC_TREE = "sglang.kernels.ops.speculative.spec_tree"
BUILD_TREE = f"{_SPEC_TREE}.build_tree_kernel_efficient_func"
VERIFY_GREEDY = f"{_SPEC_TREE}.verify_tree_greedy_func"
TARGETS = {
    SET_EMBED_AND_HEAD: ("self", "embed", "head"),
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


def register() -> None:
    """Register the hooks with SGLang's HookRegistry (idempotent)."""
    from sglang_amd.patches import register_around_hooks

    register_around_hooks(
        __name__,
        {
            SET_EMBED_AND_HEAD: _set_embed_and_head,
            BUILD_TREE: _build_tree,
            VERIFY_GREEDY: _verify_greedy,
        },
    )
