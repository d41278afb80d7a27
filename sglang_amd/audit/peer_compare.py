"""Our compiled launches beside a peer's, per target and (model, op): the ratios.

Where it sits: `audit.compile_audit.run` compiles our matrix and, with
`--peers`, SGLang's (`audit.sglang_peer_launches`) and, given a checkout,
aiter's (`audit.aiter_peer_launches`) under the same (model, op, size) labels;
this pairs each peer's rows with ours by target, model, op and kernel role (a
split-KV decode's split and reduce kernels against SGLang's stage 1 and 2,
SGLang's lean decode also against our split, extend against extend, the MoE
GEMM against `fused_moe_kernel` and aiter's MoE GEMMs, the DSA indexer's
scores against aiter's `fp8_mqa_logits`) and reports
ours / peer for registers, LDS and occupancy, both spill counts, and both
matrix-instruction families. Reported, never gated. Never imports sglang.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from sglang_amd.audit.isa import KernelReport

# Which part of an op a kernel is; kernels of one role are compared with each other.
ROLE = {
    "_decode_split_kernel": "split",
    "_fwd_kernel_stage1": "split",
    "_fwd_grouped_kernel_stage1": "split",
    "_lean_attention_decode_kernel": "lean",
    "_decode_reduce_kernel": "reduce",
    "_fwd_kernel_stage2": "reduce",
    "_extend_kernel": "attention",
    "_fwd_kernel": "attention",
    "_grouped_gemm_kernel": "gemm",
    "_grouped_gemm_a4w4_kernel": "gemm",
    "fused_moe_kernel": "gemm",
    "fused_moe_kernel_gptq_awq": "gemm",
    "_sparse_mla_split_k_kernel": "split",
    "_sparse_mla_reduce_kernel": "reduce",
    "_sparse_mla_fused_kernel": "fused",
    # aiter (audit.aiter_peer_launches): vLLM-style paged decode, one pass (V1)
    # or partitions then a reduce (V2); its Triton MLA decode, segments then reduce.
    "_paged_attn_decode_v1_w_dot_kernel": "fused",
    "_paged_attn_decode_v1_wo_dot_kernel": "fused",
    "_paged_attn_decode_v2_w_dot_kernel": "split",
    "_paged_attn_decode_v2_wo_dot_kernel": "split",
    "_paged_attn_decode_v2_w_dot_reduce_kernel": "reduce",
    "_paged_attn_decode_v2_wo_dot_reduce_kernel": "reduce",
    "_mla_decode_fwd_kernel": "split",
    "_mla_decode_fwd_reduce_kernel": "reduce",
    # DSA's indexer scores: ours over the paged FP8 cache, aiter's over gathered keys.
    "_indexer_logits_kernel": "logits",
    "_fp8_mqa_logits_kernel": "logits",
    "_gluon_fp8_mqa_logits_kernel": "logits",
    "_fused_moe_kernel": "gemm",
    "_fused_moe_kernel_gptq_awq": "gemm",
    "_fused_moe_kernel_mxfp4": "gemm",
    "_moe_gemm_a16w4": "gemm",
    # Tokens grouped by expert: our align (sort) against aiter's routing (its
    # top-k, histogram and sort); our top-k combine against its grouped reduce.
    "_align_kernel": "route",
    "_topk": "route",
    "_sum_bitmatrix_rows": "route",
    "_combined_routing": "route",
    "_combined_routing_fused": "route",
    "_combine_kernel": "combine",
    "_reduce_grouped": "combine",
}
# A peer role with no kernel of ours of its own: SGLang's lean decode is one
# persistent kernel (split and merge in one), set beside our split kernel.
# SGLang's one-split sparse MLA decode (split and merge in one kernel) likewise,
# and aiter's one-pass (V1) paged decode.
OURS_FOR = {"lean": "split", "fused": "split"}


class _Row(Protocol):  # compile_audit.AuditRow, without the import cycle
    report: KernelReport
    used_by: list[str]
    owner: str


@dataclass
class Side:
    """One owner's launches for a (target, model, op, role): the worst of each."""

    kernels: list[str]
    launches: int
    compiled: int
    registers: int | None
    spill_bytes: int | None
    shared_bytes: int | None
    occupancy: int | None
    mma: str


@dataclass
class Pair:
    arch: str
    model: str
    op: str
    role: str
    peer: str
    ours: Side
    theirs: Side

    def ratio(self, field: str) -> float | None:
        a, b = getattr(self.ours, field), getattr(self.theirs, field)
        return None if a is None or not b else round(a / b, 2)

    @property
    def spill_differs(self) -> bool:
        return bool(self.ours.spill_bytes) != bool(self.theirs.spill_bytes)

    def as_dict(self) -> dict:
        ratios = {f: self.ratio(f) for f in ("registers", "shared_bytes", "occupancy")}
        return {
            **asdict(self),
            "ratios_ours_over_peer": ratios,
            "spill_differs": self.spill_differs,
        }


def _label(text: str) -> tuple[str, str]:
    """(model, op) from a `used_by` label "model: op, size" (a size may hold ", ")."""
    model, rest = text.split(": ", 1)
    return model, rest.split(", ", 1)[0]


def _side(reports: list[KernelReport]) -> Side:
    ok = [r for r in reports if r.ok]

    def pick(values: list[int | None], f=max) -> int | None:
        values = [v for v in values if v is not None]
        return f(values) if values else None

    return Side(
        kernels=sorted({r.kernel for r in reports}),
        launches=len(reports),
        compiled=len(ok),
        registers=pick([r.registers for r in ok]),
        spill_bytes=pick([r.spill_bytes for r in ok]),
        shared_bytes=pick([r.shared_bytes for r in ok]),
        occupancy=pick([r.occupancy for r in ok], min),
        mma=", ".join(sorted({r.mma.split(" (")[0] for r in ok})) or "-",
    )


def pairs(rows: Sequence[_Row]) -> list[Pair]:
    """Every (target, model, op, role) where ours and a peer both launched."""
    groups: dict[tuple[str, str, str, str, str], list[KernelReport]] = {}
    for row in rows:
        role = ROLE.get(row.report.kernel, "other")
        for model, op in {_label(u) for u in row.used_by}:
            key = (row.report.arch, model, op, role, row.owner)
            groups.setdefault(key, []).append(row.report)
    out = []
    for (arch, model, op, role, owner), reports in groups.items():
        if owner == "ours":
            continue
        ours = groups.get((arch, model, op, OURS_FOR.get(role, role), "ours"))
        if ours:
            out.append(Pair(arch, model, op, role, owner, _side(ours), _side(reports)))
    order = {"gfx942": 0, "gfx950": 1, "sm_90": 2, "sm_100": 3}
    return sorted(out, key=lambda p: (order.get(p.arch, 9), p.op, p.model, p.role, p.peer))


def _n(v: object) -> str:
    return "-" if v is None else str(v)


def _cells(p: Pair) -> list[str]:
    o, t = p.ours, p.theirs
    spill = f"{_n(o.spill_bytes)} / {_n(t.spill_bytes)}" + (" (!)" if p.spill_differs else "")
    return [
        f"{_n(o.registers)} / {_n(t.registers)} ({_n(p.ratio('registers'))})",
        spill,
        f"{_n(o.shared_bytes)} / {_n(t.shared_bytes)} ({_n(p.ratio('shared_bytes'))})",
        f"{_n(o.occupancy)} / {_n(t.occupancy)} ({_n(p.ratio('occupancy'))})",
        f"{o.mma} / {t.mma}",
        f"{o.compiled}/{o.launches} / {t.compiled}/{t.launches}",
    ]


_HEAD = ["regs", "spill B", "LDS/smem B", "occupancy", "MMA", "compiled"]


def table(found: Sequence[Pair], notes: Sequence[str] = ()) -> str:
    """Ours / peer (ratio ours/peer) per target, model, op and role, for stdout."""
    lines = ["peers: ours / peer (ratio ours/peer); (!) where only one side spills"]
    lines += [f"  {n}" for n in notes]
    head = f"{'arch':<7} {'model':<32} {'op':<17} {'role':<9} {'peer':<7} " + " | ".join(_HEAD)
    lines += [head, "-" * len(head)]
    for p in found:
        lines.append(
            f"{p.arch:<7} {p.model[:32]:<32} {p.op[:17]:<17} {p.role:<9} {p.peer:<7} "
            + " | ".join(_cells(p))
        )
    return "\n".join(lines)


def markdown(found: Sequence[Pair], notes: Sequence[str] = ()) -> str:
    """The same pairs as a markdown table (audit.md, BENCHMARKS.md)."""
    lines = ["Peers: each cell is ours / peer (ratio ours/peer); (!) where only one side spills."]
    lines += [f"- {n}" for n in notes]
    lines += [
        "",
        "| target | model | op | role | peer | peer kernels | " + " | ".join(_HEAD) + " |",
        "| --- " * (6 + len(_HEAD)) + "|",
    ]
    for p in found:
        kernels = ", ".join(f"`{k}`" for k in p.theirs.kernels)
        lines.append(
            f"| {p.arch} | {p.model} | {p.op} | {p.role} | {p.peer} | {kernels} | "
            + " | ".join(_cells(p))
            + " |"
        )
    return "\n".join(lines)
