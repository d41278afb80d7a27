"""Which model architectures our backends serve, and which they refuse at start.

One row per architecture on the AMD roadmap and the frontier SGLang 0.5.23
serves. A served row names the backends that serve it and the e2e test that
holds it to HF transformers' float32 forward; a refused row says what is
missing, and `refusal` turns it into the start-time error any of our flags
raises for that architecture (`models/capability.py`), so a model is never
served by a path nobody checked. The README's coverage table is rendered from
these rows (`markdown_table`; `tests/test_coverage.py` keeps them equal). Never
imports sglang.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelRow:
    """One architecture family.

    name:           as users know it
    architectures:  the `architectures` entries of its config.json
    served_by:      our flags that serve it and what they compute (None: refused)
    evidence:       the tests that check it ("file::test" or file), for served rows
    missing:        for refused rows, what would have to exist to serve it
    """

    name: str
    architectures: tuple[str, ...]
    served_by: str | None = None
    evidence: tuple[str, ...] = ()
    missing: str | None = None

    @property
    def served(self) -> bool:
        return self.served_by is not None


ROWS: tuple[ModelRow, ...] = (
    ModelRow(
        "Qwen3 (dense)",
        ("Qwen3ForCausalLM",),
        served_by="attention amd (GQA, q/k norm in the model)",
        evidence=("tests/test_e2e_day0.py::test_qwen3_dense_matches_hf",),
    ),
    ModelRow(
        "Qwen3-MoE (235B-A22B)",
        ("Qwen3MoeForCausalLM",),
        served_by="attention amd, moe amd, amd_mxfp4 (at load and Quark exports), EP customized",
        evidence=("tests/test_e2e_moe.py", "tests/test_e2e_ep.py"),
    ),
    ModelRow(
        "DeepSeek-V3 / R1",
        ("DeepseekV3ForCausalLM",),
        served_by="attention amd (MLA), moe amd, amd_mxfp4, EP customized, NEXTN MTP",
        evidence=("tests/test_e2e_mla.py", "tests/test_e2e_mtp.py"),
    ),
    ModelRow(
        "DeepSeek-V3.2",
        ("DeepseekV32ForCausalLM",),
        served_by="attention amd (DSA: indexer + top-k sparse MLA) on the CPU platform; "
        "refused at start on a GPU (SGLang's indexer has no GPU forward of ours yet)",
        evidence=("tests/test_e2e_dsa.py", "tests/test_start_errors.py"),
    ),
    ModelRow(
        "Kimi-K2",
        ("DeepseekV3ForCausalLM",),
        served_by="attention amd (MLA), moe amd (384 experts scaled down, one group, top-8)",
        evidence=("tests/test_e2e_day0.py::test_kimi_k2_matches_hf",),
    ),
    ModelRow(
        "Qwen3-Next / Qwen3-Coder-Next",
        ("Qwen3NextForCausalLM",),
        served_by="attention amd (gated full-attention layers) inside SGLang's hybrid "
        "linear-attention backend; on the CPU platform its Gated DeltaNet on our torch tier",
        evidence=("tests/test_e2e_qwen3_next.py",),
    ),
    ModelRow(
        "gpt-oss",
        ("GptOssForCausalLM",),
        served_by="attention amd (sinks, alternating sliding window, one full KV pool), "
        "moe amd (biases, clamped SwiGLU), amd_mxfp4 (its own mxfp4 checkpoints)",
        evidence=("tests/test_e2e_gpt_oss.py",),
    ),
    ModelRow(
        "GLM-4.5 / 4.6",
        ("Glm4MoeForCausalLM",),
        served_by="attention amd (GQA, partial RoPE), moe amd, NEXTN MTP",
        evidence=("tests/test_e2e_mtp.py",),
    ),
    ModelRow(
        "Qwen3.5",
        (
            "Qwen3_5ForConditionalGeneration",
            "Qwen3_5MoeForConditionalGeneration",
            "Qwen3_5ForCausalLM",
            "Qwen3_5MoeForCausalLM",
        ),
        missing="an e2e check of its hybrid Gated DeltaNet + gated attention text model "
        "(the Qwen3-Next path) and of its vision tower's attention through our backend",
    ),
    ModelRow(
        "Kimi-K2.5 (text)",
        ("KimiK25ForConditionalGeneration",),
        missing="an e2e check of the multimodal wrapper (its DeepSeek-V3 text model is "
        "served as Kimi-K2) and of the MoonViT vision tower's attention through our backend",
    ),
    ModelRow(
        "DeepSeek-V4",
        ("DeepseekV4ForCausalLM",),
        missing="its compressed and sliding-window hybrid attention (SGLang runs it on its "
        "own DeepSeek-V4 backends and pools; our kernels compute neither) and its hyper-"
        "connections' MoE path",
    ),
    ModelRow(
        "GLM-5",
        ("GlmMoeDsaForCausalLM",),
        missing="its shared-indexer layers (a layer that reuses the previous layer's top-k, "
        "SGLang's index_topk_share) in our DSA forward, and an e2e check against HF "
        "transformers' GlmMoeDsa (DeepSeek-V3.2's DSA, which it extends, is served on the "
        "CPU platform)",
    ),
)


def row_for(architectures: list[str] | tuple[str, ...]) -> ModelRow | None:
    """The refused row for these architectures, else the first served one, else None."""
    rows = [r for r in ROWS if set(r.architectures) & set(architectures)]
    refused = [r for r in rows if not r.served]
    return (refused or rows or [None])[0]


def refusal(architectures: list[str] | tuple[str, ...], flags: list[str]) -> str | None:
    """The start-time error for a refused architecture under our `flags`, or None."""
    row = row_for(architectures)
    if row is None or row.served or not flags:
        return None
    return (
        f"{', '.join(flags)}: {row.name} ({'/'.join(row.architectures)}) is not served yet, "
        f"missing {row.missing}. Serve it without these flags"
    )


def markdown_table() -> str:
    """The README's coverage table."""
    lines = ["| model | architectures | our backends | checked by |", "| --- | --- | --- | --- |"]
    for row in ROWS:
        archs = ", ".join(f"`{a}`" for a in row.architectures)
        if row.served:
            evidence = ", ".join(f"`{e}`" for e in row.evidence)
            lines.append(f"| {row.name} | {archs} | {row.served_by} | {evidence} |")
        else:
            lines.append(
                f"| {row.name} | {archs} | refused at start: missing {row.missing} "
                "| `tests/test_coverage.py` |"
            )
    return "\n".join(lines)
