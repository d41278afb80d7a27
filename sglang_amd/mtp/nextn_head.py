"""An MTP (NextN) module in torch, as SGLang's NEXTN/EAGLE draft runs it.

Where it sits: the head `teacher.py` measures and `checkpoint.py` writes, for a
target whose checkpoint carries (or will carry) MTP layers: DeepSeek-V3/R1 and
GLM-4.5 MoE (SGLang's `DeepseekModelNextN` / `Glm4MoeModelNextN`) and MiMo
(`MiMoMultiTokenPredictorLayer`). Per position t:

    u_t   = proj([enorm(embed(x_{t+1})) ; hnorm(h_t)])   ([h ; e] for MiMo)  [T, H]
    h'_t  = out_norm(decoder_layer(u_t, position t))                         [T, H]
    logit = lm_head(h'_t)                                     (the target's head)

`h_t` is the target's last hidden state *after* its final norm (SGLang's logits
processor stores that for the draft), the draft's positions are the target's
(token x_{t+1} sits at position t), embedding and head are the target's (SGLang
shares them), and MiMo zeroes the embedding at position 0. The decoder layer is
the target family's own transformers class, at index `num_hidden_layers` (a MoE
family gets a MoE layer, as SGLang builds one). Later draft steps feed h'_t back
as h. The names each family's checkpoint uses are in `MtpLayout`. Never imports
sglang.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class MtpLayout:
    """Where a family keeps its MTP layer in a checkpoint, and its input order."""

    prefix: str  # "{n}": num_hidden_layers
    enorm: str
    hnorm: str
    proj: str
    out_norm: str
    hidden_first: bool  # proj input [h ; e] instead of [e ; h]
    zero_first_embedding: bool  # the embedding at position 0 is zeroed


DEEPSEEK = MtpLayout("model.layers.{n}.", "enorm", "hnorm", "eh_proj", "shared_head.norm",
                     hidden_first=False, zero_first_embedding=False)  # fmt: skip
MIMO = MtpLayout("model.mtp_layers.0.", "token_layernorm", "hidden_layernorm", "input_proj",
                 "final_layernorm", hidden_first=True, zero_first_embedding=True)  # fmt: skip
LAYOUTS = {"MiMoForCausalLM": MIMO}  # every other family: DeepSeek's names


def nextn_layers(config) -> int:  # noqa: ANN001  (a transformers config)
    return int(getattr(config, "num_nextn_predict_layers", 0) or 0)


def layout_of(config) -> MtpLayout:  # noqa: ANN001
    return LAYOUTS.get((getattr(config, "architectures", None) or [""])[0], DEEPSEEK)


class NextNHead(nn.Module):
    """One MTP module over a transformers causal LM `target` (not owned: its embed,
    head and rotary embedding are read, never trained)."""

    def __init__(self, target: nn.Module):
        super().__init__()
        cfg = target.config
        if nextn_layers(cfg) < 1:
            raise ValueError(
                f"{cfg.architectures}: the config declares no MTP layer "
                "(num_nextn_predict_layers); train an EAGLE3 head for it instead"
            )
        self.layout = layout_of(cfg)
        self.layer_index = cfg.num_hidden_layers
        norm_cls = type(target.model.norm)
        h = cfg.hidden_size
        self.enorm = norm_cls(h, eps=cfg.rms_norm_eps)
        self.hnorm = norm_cls(h, eps=cfg.rms_norm_eps)
        self.eh_proj = nn.Linear(2 * h, h, bias=False)
        # past the last layer: a layer_types list (Qwen2's) has no entry there, so the
        # last one's type is used (MoE or dense still follows first_k_dense_replace)
        types = getattr(cfg, "layer_types", None)
        index = min(self.layer_index, len(types) - 1) if types else self.layer_index
        self.decoder = type(target.model.layers[-1])(cfg, index)
        self.shared_head_norm = norm_cls(h, eps=cfg.rms_norm_eps)
        self._target = [target]  # a list: not a submodule, so not in state_dict / parameters
        self.reset_to_identity()

    @property
    def target(self) -> nn.Module:
        return self._target[0]

    def _embedding_columns(self) -> slice:
        h = self.eh_proj.out_features
        return slice(h, 2 * h) if self.layout.hidden_first else slice(0, h)

    @torch.no_grad()
    def reset_to_identity(self, std: float = 0.02) -> None:
        """Start as "the target read at the next token": the projection passes the
        normed embedding through, the layer's output projections are zero (the layer
        adds nothing), the rest small and random (transformers leaves some experts'
        tensors uninitialized until its own init runs, which this replaces)."""
        for name, p in self.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                p.fill_(1.0)
            elif name.endswith(("o_proj.weight", "down_proj", "down_proj.weight")):
                p.zero_()
            else:
                p.normal_(0.0, std)
        for name, b in self.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.zero_()
        self.eh_proj.weight.zero_()
        self.eh_proj.weight[:, self._embedding_columns()] = torch.eye(self.eh_proj.out_features)

    @torch.no_grad()
    def copy_target_layer(self) -> None:
        """Make the head "the target's last layer, read one token later": the layer's
        weights copied, the projection the identity on the embedding (zero on h), the
        output norm the target's final norm. Exact where the target is that one
        layer over unit-RMS embeddings (then the head misses only the first token);
        a warm start otherwise. Raises where the layers differ (a dense last layer
        against SGLang's always-MoE DeepSeek/GLM MTP layer)."""
        src = self.target.model.layers[-1].state_dict()
        dst = self.decoder.state_dict()
        if src.keys() != dst.keys() or any(src[k].shape != dst[k].shape for k in src):
            raise ValueError(
                "the target's last layer and its MTP layer differ in structure "
                "(SGLang's DeepSeek/GLM MTP layer is always MoE); a copy cannot seed this head"
            )
        self.reset_to_identity()
        self.decoder.load_state_dict(src)
        self.shared_head_norm.weight.copy_(self.target.model.norm.weight)

    def forward(
        self, hidden: torch.Tensor, next_ids: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """hidden [B, T, H] (h_t), next_ids [B, T] int64 (x_{t+1}), positions [B, T]
        -> h'_t [B, T, H]; causal over T."""
        embed = self.target.model.embed_tokens(next_ids)
        if self.layout.zero_first_embedding:
            embed = embed.masked_fill((positions == 0)[..., None], 0.0)
        parts = [self.enorm(embed), self.hnorm(hidden)]
        u = self.eh_proj(torch.cat(parts[::-1] if self.layout.hidden_first else parts, dim=-1))
        t = u.shape[1]
        mask = torch.full((t, t), float("-inf"), dtype=u.dtype, device=u.device).triu(1)
        rope = self.target.model.rotary_emb(u, positions)
        out = self.decoder(
            u, attention_mask=mask[None, None], position_ids=positions, position_embeddings=rope
        )
        return self.shared_head_norm(out[0] if isinstance(out, tuple) else out)

    def logits(self, draft_hidden: torch.Tensor) -> torch.Tensor:
        return self.target.lm_head(draft_hidden)

    def step(self, hidden: torch.Tensor, next_ids: torch.Tensor, positions: torch.Tensor,
             cache: list | None = None):  # noqa: ANN201  # fmt: skip
        """`teacher.unrolled`'s protocol: (state for the logits, state for the next
        step); a NextN head feeds its normed output back. Its later steps attend
        over their own keys (`cache` unused): it is seeded and measured, not trained."""
        out = self(hidden, next_ids, positions)
        return out, out

    def target_ids(self, drafted: torch.Tensor) -> torch.Tensor:
        return drafted  # the target's own vocabulary

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """The module's weights under the names SGLang's loaders read (`MtpLayout`;
        experts one by one as in the original checkpoints); embed and head stay the
        target's."""
        lay, p = self.layout, self.checkpoint_prefix
        out = {
            f"{p}{lay.enorm}.weight": self.enorm.weight,
            f"{p}{lay.hnorm}.weight": self.hnorm.weight,
            f"{p}{lay.proj}.weight": self.eh_proj.weight,
            f"{p}{lay.out_norm}.weight": self.shared_head_norm.weight,
        }
        for name, t in self.decoder.state_dict().items():
            out.update(_per_expert(p + name, t))
        return {k: v.detach().contiguous() for k, v in out.items()}

    @property
    def checkpoint_prefix(self) -> str:
        return self.layout.prefix.format(n=self.layer_index)


def _per_expert(name: str, t: torch.Tensor) -> dict[str, torch.Tensor]:
    """transformers keeps experts fused in memory ([E, 2I, H] gate then up; [E, H, I]
    down); checkpoints (and SGLang's loaders) name them one expert at a time."""
    if name.endswith("mlp.experts.gate_up_proj"):
        base, half = name[: -len("gate_up_proj")], t.shape[1] // 2
        return {
            f"{base}{e}.{proj}.weight": part
            for e in range(t.shape[0])
            for proj, part in (("gate_proj", t[e, :half]), ("up_proj", t[e, half:]))
        }
    if name.endswith("mlp.experts.down_proj"):
        base = name[: -len("down_proj")]
        return {f"{base}{e}.down_proj.weight": t[e] for e in range(t.shape[0])}
    return {name: t}
