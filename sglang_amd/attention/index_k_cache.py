"""DSA's FP8 index-K cache in SGLang's layout: what DeepSeek-V3.2's indexer scores against.

Where it sits: the indexer's FP8 mode (DeepSeek's, which SGLang serves) writes each
token's index key here once and `indexer.indexer_logits_fp8` reads it for every
later query token. The float mode (`indexer.indexer_logits`, HF transformers'
math) reads plain rows instead.

The math, as DeepSeek-V3.2-Exp's `inference/model.py` and SGLang 0.5.23 do it:
query heads and keys (RoPE applied) are rotated by the normalised Walsh-Hadamard
transform (`hadamard`: orthonormal, so q.k is unchanged before rounding), then
each block of 128 values (one key, one query head) is rounded to float8 e4m3 with
one float32 scale (`quantize_fp8`: amax / 448, amax floored at 1e-4; with
`round_scale`, the `ue8m0` scale format, the next power of two). The score is
sum_h w[h] * relu(q8[h] . k8) * k_scale with the query's scale, the softmax
scale and n_heads^-0.5 folded into w (`fp8_indexer_inputs`).

SGLang's pool (`mem_cache/index_key_cache.py`, `kernels/ops/kvcache/
dsa_index_k_cache.py`): one uint8 row of `page_size * (128 + 4)` bytes per
64-token page: the page's 64 keys of 128 float8 bytes, token-major, then their
64 float32 scales; a token slot `loc` is page loc // 64, entry loc % 64. This is
the CUDA layout (float8 e4m3fn), kept on every target: gfx942's matrix cores
take e4m3fnuz only, so its scoring kernel reads these bytes as e4m3fnuz (each
worth exactly half, -0 read as 0) and scales the dot by 4, the same scores
(`indexer_details/_logits.py`). SGLang's own ROCm path stores e4m3fnuz in
aiter's preshuffled tiles instead; the pool's bytes are only ever written and
read by our forward. Never imports sglang.
"""

from __future__ import annotations

import functools

import torch

from sglang_amd.fp8_blocks import AMAX_FLOOR, FP8_MAX, QUANT_BLOCK, quantize_fp8

__all__ = [
    "AMAX_FLOOR",
    "FP8_MAX",
    "INDEX_HEAD_DIM",
    "QUANT_BLOCK",
    "fp8_indexer_inputs",
    "hadamard",
    "index_k_cache_bytes_per_page",
    "load_index_k",
    "quantize_fp8",
    "store_index_k",
]

INDEX_HEAD_DIM = 128  # SGLang's pool asserts it
_SCALE_BYTES = 4


def index_k_cache_bytes_per_page(page_size: int, dim: int = INDEX_HEAD_DIM) -> int:
    """Bytes of one page row: the page's float8 keys, then one float32 scale each."""
    return page_size * (dim + dim // QUANT_BLOCK * _SCALE_BYTES)


@functools.lru_cache(maxsize=8)
def _sylvester(dim: int, device: str) -> torch.Tensor:
    h = torch.ones(1, 1)
    while h.shape[0] < dim:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return (h * dim**-0.5).to(device)


def hadamard(x: torch.Tensor) -> torch.Tensor:
    """x [..., D] times the normalised Walsh-Hadamard matrix (D a power of two),
    computed in float32 and returned in x's dtype (as SGLang's transform returns it)."""
    dim = x.shape[-1]
    if dim & (dim - 1):
        raise ValueError(f"hadamard: last dim {dim} is not a power of two")
    return (x.float() @ _sylvester(dim, str(x.device))).to(x.dtype)


def fp8_indexer_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    weights: torch.Tensor,
    *,
    round_scale: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """From the indexer's float q [T, H, D] and k [N, D] (RoPE applied) and its
    weights_proj output [T, H]: (q8 [T, H, D], w [T, H] float32 with the query scale,
    D^-0.5 and H^-0.5 folded in, k8 [N, D], k_scale [N] float32)."""
    heads, dim = q.shape[1], q.shape[2]
    q8, q_scale = quantize_fp8(hadamard(q), round_scale)
    k8, k_scale = quantize_fp8(hadamard(k), round_scale)
    w = weights.float() * heads**-0.5 * q_scale[..., 0] * dim**-0.5
    return q8, w, k8, k_scale[..., 0]


def _check(cache: torch.Tensor, page_size: int) -> None:
    if cache.dtype != torch.uint8 or cache.dim() != 2:
        raise ValueError(
            f"index-K cache: want uint8 [pages, bytes], got {cache.dtype} {tuple(cache.shape)}"
        )
    if cache.shape[1] != index_k_cache_bytes_per_page(page_size):
        raise ValueError(
            f"index-K cache: {cache.shape[1]} bytes a page, want "
            f"{index_k_cache_bytes_per_page(page_size)} for page size {page_size}"
        )


def store_index_k(
    cache: torch.Tensor, loc: torch.Tensor, k8: torch.Tensor, k_scale: torch.Tensor, page_size: int
) -> None:
    """Write keys k8 [N, 128] float8 e4m3fn and scales [N] float32 at token slots
    loc [N] of `cache` [pages, page_size * 132] uint8 (SGLang's layout), in place."""
    _check(cache, page_size)
    if k8.dtype != torch.float8_e4m3fn:
        raise ValueError(
            f"store_index_k: keys must be float8_e4m3fn (CUDA's layout), got {k8.dtype}"
        )
    dim = k8.shape[1]
    loc = loc.long()
    page, entry = loc // page_size, loc % page_size
    cols = torch.arange(dim, device=cache.device)
    cache[page[:, None], entry[:, None] * dim + cols] = k8.view(torch.uint8)
    scale_cols = page_size * dim + torch.arange(_SCALE_BYTES, device=cache.device)
    scale_bytes = k_scale.float().contiguous().view(torch.uint8).view(-1, _SCALE_BYTES)
    cache[page[:, None], scale_cols + entry[:, None] * _SCALE_BYTES] = scale_bytes


def load_index_k(
    cache: torch.Tensor, loc: torch.Tensor, page_size: int, dim: int = INDEX_HEAD_DIM
) -> tuple[torch.Tensor, torch.Tensor]:
    """The keys [N, dim] float8 e4m3fn and scales [N] float32 at token slots loc [N]."""
    _check(cache, page_size)
    loc = loc.long()
    page, entry = loc // page_size, loc % page_size
    k = cache[page[:, None], entry[:, None] * dim + torch.arange(dim, device=cache.device)]
    scale_cols = page_size * dim + torch.arange(_SCALE_BYTES, device=cache.device)
    s = cache[page[:, None], scale_cols + entry[:, None] * _SCALE_BYTES]
    return k.contiguous().view(torch.float8_e4m3fn), s.contiguous().view(torch.float32)[:, 0]
