"""`sglang-amd mtp train`: an EAGLE3 head for a model without MTP layers, by self-distillation.

Where it sits: before serving `--speculative-algorithm EAGLE3` with a draft that
did not exist. The target (transformers, float32, any device) answers local
prompts greedily; its own text is the training data (what it will be asked to
draft at serve time). Per position t the teacher gives the aux states after
layers `aux_layer_ids`, the next token and the label: the target's greedy
choice after it (what SGLang's verify accepts). The head learns the labels at
draft step 1 and, feeding its own output back as SGLang's multi-step draft
does, at steps 2.. (EAGLE3's training-time test), with the target frozen. The
draft vocabulary is the labels' most frequent tokens topped up with the lowest
token ids; its lm_head starts as those rows of the target's head. Output: a
folder SGLang loads as `LlamaForCausalLMEagle3` (config.json, model.safetensors,
the tokenizer), and `train.json` with the figures. Never imports sglang.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from sglang_amd.mtp.eagle3_head import Eagle3Head, aux_layer_ids
from sglang_amd.mtp.teacher import (
    IGNORE,
    Traces,
    agreement,
    greedy_continuations,
    teacher_traces,
    unrolled,
)


class UnsupportedTargetError(ValueError):
    """A target this head cannot be trained for (not a decoder with RoPE layers)."""


def check_target(target) -> None:  # noqa: ANN001  (a transformers causal LM)
    model = getattr(target, "model", None)
    for part in ("embed_tokens", "layers", "rotary_emb", "norm"):
        if not hasattr(model, part):
            raise UnsupportedTargetError(
                f"{type(target).__name__}: not a Llama-style decoder (no model.{part}); "
                "EAGLE3 heads here are for Llama, Qwen2/3 and models built like them"
            )
    if target.config.num_hidden_layers < 5:
        raise UnsupportedTargetError(
            f"{target.config.num_hidden_layers} layers: EAGLE3 reads layers 1, L/2-1 and "
            "L-4, so the target needs at least 5"
        )


def prompt_ids(tokenizer, text: str, chat: bool) -> list[int]:
    """One prompt's token ids as a server sees them: through the tokenizer's chat
    template (what /v1/chat/completions applies) or as raw text, no special tokens."""
    if chat:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True,
            return_dict=False,
        )  # fmt: skip
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def read_prompts(
    path: str | Path, tokenizer, chat: bool, max_prompt_tokens: int = 256
) -> list[list[int]]:
    """JSONL lines with "question" (GSM8K), "prompt" or "text" -> token ids."""
    out = []
    for n, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        rec = json.loads(line)
        text = rec.get("question") or rec.get("prompt") or rec.get("text")
        if not isinstance(text, str):
            raise ValueError(f"{path}:{n}: a line needs 'question', 'prompt' or 'text'")
        ids = list(prompt_ids(tokenizer, text, chat))[-max_prompt_tokens:]
        if len(ids) >= 2:
            out.append(ids)
    if not out:
        raise ValueError(f"{path}: no prompts")
    return out


def hot_token_ids(labels: torch.Tensor, vocab: int, size: int) -> torch.Tensor:
    """The draft vocabulary: the labels' tokens by frequency, then the lowest ids
    (BPE's earliest merges, the commonest pieces), `size` in all, sorted."""
    seen = labels[labels != IGNORE]
    counts = torch.bincount(seen, minlength=vocab)
    order = torch.argsort(counts, descending=True, stable=True)
    chosen = order[counts[order] > 0][:size].tolist()
    rest = torch.ones(vocab, dtype=torch.bool)
    rest[chosen] = False
    chosen += torch.nonzero(rest).flatten()[: size - len(chosen)].tolist()
    return torch.tensor(sorted(chosen))


def _draft_labels(head: Eagle3Head, labels: torch.Tensor) -> torch.Tensor:
    index = torch.full((head.target.config.vocab_size,), IGNORE, dtype=torch.long,
                       device=labels.device)  # fmt: skip
    index[head.hot_ids] = torch.arange(len(head.hot_ids), device=labels.device)
    return torch.where(labels == IGNORE, labels, index[labels.clamp(min=0)])


def train(head: Eagle3Head, tr: Traces, *, steps: int = 300, batch: int = 8,
          lr: float = 1e-3, ttt_steps: int = 3, seed: int = 0, progress: bool = True) -> dict:  # fmt: skip
    """AdamW on the head (the lm_head rows stay the target's); loss weights 0.8^k
    over the unrolled draft steps, as EAGLE3 trains."""
    from tqdm import tqdm

    head.lm_head.weight.requires_grad_(False)
    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warm) * 0.5 * (1 + math.cos(math.pi * i / steps))
    )
    gen = torch.Generator().manual_seed(seed)
    head.train()
    t0, losses = time.monotonic(), []
    bar = tqdm(range(steps), desc="mtp train (EAGLE3)", unit="step", disable=not progress)
    for _ in bar:
        rows = tr.rows(torch.randint(0, tr.ids.shape[0], (batch,), generator=gen).to(tr.ids.device))
        labels_d = _draft_labels(head, rows.labels)
        loss = torch.zeros((), device=labels_d.device)
        for k, logits, _ in unrolled(head, rows, ttt_steps):
            lab = labels_d[:, k:]
            if (lab != IGNORE).any():
                ce = F.cross_entropy(logits.flatten(0, 1), lab.flatten(), ignore_index=IGNORE)
                loss = loss + 0.8**k * ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.5)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    head.eval()
    return {"steps": steps, "batch": batch, "lr": lr, "ttt_steps": ttt_steps,
            "seconds": time.monotonic() - t0, "first_loss": losses[0], "last_loss": losses[-1]}  # fmt: skip


def save(head: Eagle3Head, out: str | Path, target_dir: str | Path, aux_ids: list[int],
         figures: dict) -> Path:  # fmt: skip
    """config.json, model.safetensors (bf16 weights, int64 d2t, bool t2d), the
    target's tokenizer files and train.json in `out`."""
    import shutil

    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v)
               for k, v in head.checkpoint_tensors().items()}  # fmt: skip
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(head.draft_config(aux_ids), indent=2))
    for f in Path(target_dir).iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")) and f.is_file():
            shutil.copy(f, out / f.name)
    (out / "train.json").write_text(json.dumps(figures, indent=2))
    return out


def run(model_dir: str | Path, out: str | Path, data: str | Path, *, new_tokens: int = 96,
        steps: int = 200, draft_vocab: int = 16384, held_out: int = 8, seed: int = 0,
        device: str | None = None, chat: bool | None = None, progress: bool = True) -> dict:  # fmt: skip
    """The whole recipe; returns the figures written to train.json."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    t0 = time.monotonic()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    target = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    target.requires_grad_(False)
    check_target(target)
    tok = AutoTokenizer.from_pretrained(model_dir)
    chat = bool(tok.chat_template) if chat is None else chat
    prompts = read_prompts(data, tok, chat)
    if len(prompts) <= held_out:
        raise ValueError(f"{data}: {len(prompts)} prompts; need more than the {held_out} held out")
    aux_ids = aux_layer_ids(target.config.num_hidden_layers)
    seqs = greedy_continuations(target, prompts, new_tokens)
    traces = teacher_traces(target, seqs, aux_ids)
    fit, check = traces.rows(slice(held_out, None)), traces.rows(slice(0, held_out))
    vocab = target.config.vocab_size
    hot = hot_token_ids(fit.labels.cpu(), vocab, min(draft_vocab, vocab))
    head = Eagle3Head(target, hot.to(device)).to(device)
    data_s = time.monotonic() - t0
    figures = train(head, fit, steps=steps, seed=seed, progress=progress)
    figures |= {"data_seconds": data_s, "prompts": len(prompts), "held_out": held_out, "chat": chat,
                "positions": int((fit.labels != IGNORE).sum()), "aux_layer_ids": aux_ids,
                "draft_vocab": len(head.hot_ids),
                "agreement_fit": agreement(head, fit, 3),
                "agreement_held_out": agreement(head, check, 3)}  # fmt: skip
    save(head, out, model_dir, aux_ids, figures)
    return figures
