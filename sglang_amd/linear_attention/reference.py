"""Gated DeltaNet math on one sequence, in torch: the oracle tier of linear attention.

Written from the published definition (Yang, Kautz, Hatamizadeh, "Gated Delta
Networks", 2024; Qwen3-Next's linear-attention layers). Per value head, with
the state S a [V, K] matrix (the layout SGLang's state pool stores):

    q_t, k_t <- q_t / |q_t|, k_t / |k_t|          (L2 norm, eps 1e-6 under the root)
    alpha_t  = exp(g_t),  g_t = -exp(A_log) * softplus(a_t + dt_bias)  (<= 0)
    beta_t   = sigmoid(b_t)
    S_t      = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T
    o_t      = S_t (q_t * K^-1/2)

`delta_rule_recurrent` steps that token by token (decode, verify); `delta_rule_chunked`
computes the same in chunks of C tokens (prefill): inside a chunk the delta-rule
corrections u_i solve a unit lower-triangular system (the WY / UT form), across
chunks the state carries. Both take a starting state and return the final one
and, for the chunked form, the state at each chunk start (what SGLang's radix
cache snapshots). Everything computes in float32 whatever the input dtype.

Value heads share key heads in groups (HV = r * H): value head j reads key head
j // r. Never imports sglang.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

L2_EPS = 1e-6
# SGLang's softplus in the gates: softplus(x) = x above this (its kernels' threshold).
SOFTPLUS_THRESHOLD = 20.0


def l2_normalize(x: torch.Tensor, eps: float = L2_EPS) -> torch.Tensor:
    """x / sqrt(sum(x^2) + eps) over the last dim, in float32."""
    x = x.float()
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)


def gates(
    A_log: torch.Tensor, a: torch.Tensor, b: torch.Tensor, dt_bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(g, beta) of [..., HV] float32 from a, b [..., HV] and per-head A_log, dt_bias [HV].

    beta is rounded through b's dtype first, as SGLang's gating kernel stores it."""
    x = a.float() + dt_bias.float()
    softplus = torch.where(x <= SOFTPLUS_THRESHOLD, torch.log1p(torch.exp(x)), x)
    g = -torch.exp(A_log.float()) * softplus
    beta = torch.sigmoid(b.float()).to(b.dtype).float()
    return g, beta


def _expand_heads(x: torch.Tensor, num_v_heads: int) -> torch.Tensor:
    """[T, H, K] key-head tensor -> [T, HV, K]: value head j reads key head j // r."""
    ratio = num_v_heads // x.shape[-2]
    return x.repeat_interleave(ratio, dim=-2) if ratio > 1 else x


def _prepare(q, k, v, scale):
    hv = v.shape[-2]
    q = _expand_heads(l2_normalize(q), hv) * scale
    k = _expand_heads(l2_normalize(k), hv)
    return q, k, v.float()


def delta_rule_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    state: torch.Tensor,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-by-token gated delta rule over one sequence, or a batch of equal-length ones.

    q, k [(B,) T, H, K]; v [(B,) T, HV, V]; g, beta [(B,) T, HV]; state [(B,) HV, V, K]
    (not modified). Returns (o [(B,) T, HV, V] float32, states [(B,) T, HV, V, K]
    float32: the state after each token; the last is the final state).
    """
    if q.dim() == 3:
        o, states = delta_rule_recurrent(
            q[None], k[None], v[None], g[None], beta[None], state[None], scale
        )
        return o[0], states[0]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    q, k, v = _prepare(q, k, v, scale)
    s = state.float()
    outs, states = [], []
    for t in range(q.shape[1]):
        s = s * torch.exp(g[:, t].float())[..., None, None]
        # the delta rule: write beta * (v - S k) along k
        u = beta[:, t].float()[..., None] * (v[:, t] - torch.einsum("bhvk,bhk->bhv", s, k[:, t]))
        s = s + u[..., :, None] * k[:, t][..., None, :]
        outs.append(torch.einsum("bhvk,bhk->bhv", s, q[:, t]))
        states.append(s)
    if not outs:
        return v.new_zeros(v.shape), s.new_zeros(s.shape[0], 0, *s.shape[1:])
    return torch.stack(outs, 1), torch.stack(states, 1)


def delta_rule_chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    state: torch.Tensor,
    chunk_size: int = 64,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gated delta rule over one sequence in chunks of `chunk_size` tokens.

    Same arguments as `delta_rule_recurrent`. Returns (o [T, HV, V] float32,
    final state [HV, V, K] float32, chunk_states [ceil(T/C), HV, V, K] float32:
    the state at the start of each chunk, the first being `state`).

    Within a chunk (positions i, j; G_i the cumulative log decay from the chunk
    start, D_ij = exp(G_i - G_j)), the corrections u_i = beta_i (v_i - alpha_i
    S_{i-1} k_i) satisfy

        u_i + sum_{j<i} beta_i D_ij (k_i . k_j) u_j = beta_i v_i - beta_i exp(G_i) S_0 k_i

    so U = T (beta v) - T (beta exp(G) k) S_0^T with T = (I + A)^-1, A strictly lower.
    Then o_i = exp(G_i) S_0 q_i + sum_{j<=i} D_ij (q_i . k_j) u_j and the state
    leaving the chunk is exp(G_C) S_0 + sum_j exp(G_C - G_j) u_j k_j^T.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    q, k, v = _prepare(q, k, v, scale)
    seq_len, hv, vd = v.shape
    c = chunk_size
    n_chunks = -(-seq_len // c)
    pad = n_chunks * c - seq_len

    # [HV, N, C, ...]: heads first, chunks, positions; zero padding changes nothing
    # (a padded token has beta 0 and decay 1, and its output is dropped).
    def chunks(x, *tail):
        x = F.pad(x.float(), (0, 0) * len(tail) + (0, 0, 0, pad))
        return x.reshape(n_chunks, c, hv, *tail).movedim(2, 0)

    qc, kc, vc = chunks(q, q.shape[-1]), chunks(k, k.shape[-1]), chunks(v, vd)
    gc = F.pad(g.float(), (0, 0, 0, pad)).reshape(n_chunks, c, hv).movedim(2, 0)
    bc = F.pad(beta.float(), (0, 0, 0, pad)).reshape(n_chunks, c, hv).movedim(2, 0)

    cum = gc.cumsum(-1)  # [HV, N, C]: G_i
    lower = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    strictly_lower = lower.tril(-1)
    diff = cum[..., :, None] - cum[..., None, :]  # G_i - G_j
    # mask before exp: above the diagonal G_i - G_j > 0 may overflow
    decay = torch.exp(diff.masked_fill(~lower, float("-inf")))  # D_ij, 0 above
    kk = kc @ kc.transpose(-1, -2)
    a_mat = (bc[..., :, None] * decay * kk).masked_fill(~strictly_lower, 0.0)
    eye = torch.eye(c, dtype=a_mat.dtype, device=a_mat.device)
    # (I + A) X = B, solved once for both right-hand sides
    rhs = torch.cat([bc[..., None] * vc, (bc * torch.exp(cum))[..., None] * kc], dim=-1)
    sol = torch.linalg.solve_triangular(eye + a_mat, rhs, upper=False, unitriangular=True)
    w_v, w_k = sol[..., :vd], sol[..., vd:]  # [HV, N, C, V], [HV, N, C, K]
    attn = (qc @ kc.transpose(-1, -2)) * decay  # D_ij (q_i . k_j), j <= i
    q_decayed = qc * torch.exp(cum)[..., None]
    # exp(G_C - G_j) k_j: what a chunk's corrections write into the leaving state
    k_leave = kc * torch.exp(cum[..., -1:] - cum)[..., None]
    chunk_decay = torch.exp(cum[..., -1])  # [HV, N]

    s = state.float()
    out = torch.empty(hv, n_chunks, c, vd, dtype=torch.float32, device=q.device)
    starts = []
    for n in range(n_chunks):
        starts.append(s)
        u = w_v[:, n] - w_k[:, n] @ s.transpose(-1, -2)  # [HV, C, V]
        out[:, n] = q_decayed[:, n] @ s.transpose(-1, -2) + attn[:, n] @ u
        s = chunk_decay[:, n, None, None] * s + u.transpose(-1, -2) @ k_leave[:, n]
    o = out.movedim(0, 2).reshape(n_chunks * c, hv, vd)[:seq_len]
    chunk_states = torch.stack(starts) if starts else s.new_zeros(0, *s.shape)
    return o, s, chunk_states


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    window: torch.Tensor,
    activation: str | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise causal conv over one sequence that continues a window.

    x [dim, T]; weight [dim, W]; bias [dim] or None; window [dim, S] (S >= W-1:
    the inputs before x, oldest first; zeros for a fresh sequence). Returns
    (out [dim, T] float32, the new window [dim, S]: the last S inputs).
    out[:, t] = act(bias + sum_w weight[:, w] * xs[:, t + w]) over xs = the last
    W-1 window columns then x.
    """
    width = weight.shape[-1]
    full = torch.cat([window.float(), x.float()], dim=-1)
    xs = full[:, window.shape[-1] - (width - 1) :]
    out = F.conv1d(xs[None], weight.float()[:, None, :], groups=xs.shape[0])[0]
    if bias is not None:
        out = out + bias.float()[:, None]
    return activate(out, activation), full[:, full.shape[-1] - window.shape[-1] :]


def activate(x: torch.Tensor, activation: str | None) -> torch.Tensor:
    """SGLang's activation names: silu / swish (the same), sigmoid, None."""
    if activation in ("silu", "swish", True):
        return F.silu(x)
    if activation == "sigmoid":
        return torch.sigmoid(x)
    if activation in (None, False, "identity"):
        return x
    raise ValueError(f"unsupported activation {activation!r}")


def gated_rmsnorm(
    x: torch.Tensor,
    gate: torch.Tensor,
    weight: torch.Tensor | None,
    eps: float,
    activation: str = "silu",
) -> torch.Tensor:
    """RMSNorm over the last dim, times weight, times act(gate): the output norm of
    each Gated DeltaNet head (norm before gate). Float32 math, x's dtype out."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.float()
    return (y * activate(gate.float(), activation)).to(x.dtype)


def split_qkvzba(
    mixed_qkvz: torch.Tensor,
    mixed_ba: torch.Tensor,
    num_k_heads: int,
    num_v_heads: int,
    head_k: int,
    head_v: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Qwen3-Next's fused input projections, regrouped.

    mixed_qkvz [T, H*(2K + 2rV)] holds per key-head group [q (K), k (K), v (rV), z (rV)]
    (r = HV / H); mixed_ba [T, H*2r] per group [b (r), a (r)]. Returns
    (mixed_qkv [T, H*K + H*K + HV*V] = all q, all k, all v; z [T, HV, V]; b, a [T, HV]),
    in the inputs' dtypes.
    """
    t = mixed_qkvz.shape[0]
    r = num_v_heads // num_k_heads
    groups = mixed_qkvz.reshape(t, num_k_heads, 2 * head_k + 2 * r * head_v)
    q, k, v, z = groups.split([head_k, head_k, r * head_v, r * head_v], dim=-1)
    b, a = mixed_ba.reshape(t, num_k_heads, 2 * r).split([r, r], dim=-1)
    mixed_qkv = torch.cat([q.reshape(t, -1), k.reshape(t, -1), v.reshape(t, -1)], dim=-1)
    return (
        mixed_qkv,
        z.reshape(t, num_v_heads, head_v),
        b.reshape(t, num_v_heads),
        a.reshape(t, num_v_heads),
    )
