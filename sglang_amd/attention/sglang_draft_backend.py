"""Draft-model attention for EAGLE / MTP (`--speculative-draft-attention-backend amd`).

Where it sits: SGLang's speculative worker asks `DraftBackendFactory` for two
backends for the draft model; `patches/draft_backends.py` makes the factory
answer "amd" with these. Draft extend uses `AmdAttnBackend` itself (its
DRAFT_EXTEND_V2 path). Multi-step draft decode uses `AmdMultiStepDraftBackend`,
a container of one `AmdDraftStepBackend` per step: the worker calls the
container's `init_forward_metadata` once per iteration and runs step i through
`attn_backends[i]`. Step i of branch t reads the committed prefix plus the i + 1
tokens of its draft chain (layout in `spec_layout.py`).

Under SGLang's draft-decode CUDA graph (EAGLEDraftCudaGraphRunner) each step
keeps its token map and lengths in static buffers sized for the captured batch,
refilled in place by device ops before every replay; the decode kernels size
their split grid from the map's width. Imports sglang.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from sglang_amd import trace
from sglang_amd.attention.attend import ForwardMetadata
from sglang_amd.attention.sglang_backend import AmdAttnBackend, refill_width
from sglang_amd.attention.spec_layout import draft_decode_token_map

if TYPE_CHECKING:
    from sglang.srt.model_executor.forward_batch_info import ForwardBatch
    from sglang.srt.model_executor.model_runner import ModelRunner


class AmdDraftStepBackend(AmdAttnBackend):
    """One draft-decode step: decode over prefix + the branch's first `step + 1` drafts."""

    def __init__(self, model_runner: ModelRunner, *, step: int, topk: int, num_steps: int):
        super().__init__(model_runner)
        self.step, self.topk, self.num_steps = step, topk, num_steps
        # The runner's resolved page size (ServerArgs keeps only what was typed).
        self.page_size = getattr(model_runner, "page_size", None) or 1
        self._graph_map: torch.Tensor | None = None  # [max_bs * topk, width] int32
        self._graph_kv: torch.Tensor | None = None  # [max_bs * topk] int32
        self._graph_rows: torch.Tensor | None = None  # arange

    def init_forward_metadata(self, forward_batch: ForwardBatch) -> None:
        seq_lens_cpu = forward_batch.seq_lens_cpu
        if seq_lens_cpu is None:
            seq_lens_cpu = forward_batch.seq_lens.cpu()
        seq_lens = seq_lens_cpu.tolist()
        token_map, kv_lens = draft_decode_token_map(
            self.req_to_token_pool.req_to_token,
            forward_batch.req_pool_indices,
            seq_lens,
            topk=self.topk,
            num_steps=self.num_steps,
            step=self.step,
            page_size=self.page_size,
        )
        device = forward_batch.seq_lens.device
        self.forward_metadata = ForwardMetadata(
            mode="decode",
            req_pool_indices=torch.arange(len(kv_lens), device=device),
            kv_lens=torch.tensor(kv_lens, device=device, dtype=torch.int32),
            qo_lens=torch.ones(len(kv_lens), device=device, dtype=torch.int32),
            kv_lens_cpu=kv_lens,
            qo_lens_cpu=[1] * len(kv_lens),
            token_map=token_map,
        )
        trace.record("spec_forward", mode="draft_decode", step=self.step)

    def init_cuda_graph_state(self, max_bs: int, max_num_tokens: int) -> None:
        super().init_cuda_graph_state(max_bs, max_num_tokens)
        rows = max_bs * self.topk
        width = self._graph_max_kv_len + self.num_steps
        device = self.req_to_token_pool.req_to_token.device
        self._graph_map = torch.zeros(rows, width, dtype=torch.int32, device=device)
        self._graph_kv = torch.ones(rows, dtype=torch.int32, device=device)
        self._graph_rows = torch.arange(rows, device=device)

    def init_forward_metadata_out_graph(
        self, forward_batch: ForwardBatch, in_capture: bool = False
    ) -> None:
        if not forward_batch.forward_mode.is_decode_or_idle():
            raise NotImplementedError(
                f"--speculative-draft-attention-backend amd: no draft graph for "
                f"{forward_batch.forward_mode.name}; start with --disable-cuda-graph"
            )
        bs = forward_batch.req_pool_indices.shape[0]
        rows = bs * self.topk
        width = refill_width(
            forward_batch.seq_lens_cpu, bs, self._graph_map.shape[1], self.step + 1
        )
        draft_decode_token_map(
            self.req_to_token_pool.req_to_token,
            forward_batch.req_pool_indices,
            forward_batch.seq_lens[:bs],
            topk=self.topk,
            num_steps=self.num_steps,
            step=self.step,
            page_size=self.page_size,
            out=self._graph_map[:, :width],
            kv_lens_out=self._graph_kv,
        )
        if not in_capture:
            return
        self.forward_metadata = ForwardMetadata(
            mode="decode",
            req_pool_indices=self._graph_rows[:rows],
            kv_lens=self._graph_kv[:rows],
            qo_lens=torch.ones(rows, device=self._graph_kv.device, dtype=torch.int32),
            kv_lens_cpu=[self.step + 2] * rows,
            qo_lens_cpu=[1] * rows,
            token_map=self._graph_map[:rows],
            graph_max_kv_len=self._graph_map.shape[1],
        )


class AmdMultiStepDraftBackend:
    """Per-step container SGLang's EAGLE workers expect (`.attn_backends`)."""

    def __init__(self, model_runner: ModelRunner, topk: int, speculative_num_steps: int):
        self.topk = topk
        self.speculative_num_steps = speculative_num_steps
        # The last step only samples; it runs no attention.
        self.attn_backends = [
            AmdDraftStepBackend(model_runner, step=i, topk=topk, num_steps=speculative_num_steps)
            for i in range(speculative_num_steps - 1)
        ]

    def init_forward_metadata(self, forward_batch: ForwardBatch) -> None:
        for backend in self.attn_backends:
            backend.init_forward_metadata(forward_batch)

    # SGLang's EAGLEDraftCudaGraphRunner drives these on the container.
    def init_cuda_graph_state(self, max_bs: int, max_num_tokens: int) -> None:
        for backend in self.attn_backends:
            backend.init_cuda_graph_state(max_bs, max_num_tokens)

    def init_forward_metadata_out_graph(
        self, forward_batch: ForwardBatch, in_capture: bool = False
    ) -> None:
        for backend in self.attn_backends:
            backend.init_forward_metadata_out_graph(forward_batch, in_capture)

    def init_forward_metadata_in_graph(self, forward_batch: ForwardBatch) -> None:
        """Nothing to record: each step's buffers are refilled out of the graph."""
