"""`sglang-amd mtp train` (EAGLE3 heads) without SGLang: the recipe on a tiny Llama,
the checkpoint SGLang's `LlamaForCausalLMEagle3` reads, the command's errors."""

from __future__ import annotations

import json

import pytest
import torch

from sglang_amd.mtp import cli as mtp_cli
from sglang_amd.mtp import eagle3_train
from sglang_amd.mtp.eagle3_head import Eagle3Head, aux_layer_ids

GSM8K_TRAIN = "tests/data/gsm8k/train_first64.jsonl"


@pytest.fixture(scope="module")
def tiny_llama(smollm2_path, tmp_path_factory):
    """Six layers of hidden 64 (SmolLM2's tokenizer and chat template), random."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                      bos_token_id=1, eos_token_id=2, rope_theta=10000.0)  # fmt: skip
    out = tmp_path_factory.mktemp("llama") / "m"
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.08)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(smollm2_path).save_pretrained(out)
    return out


def test_hot_tokens_are_the_labels_by_frequency_then_the_lowest_ids():
    labels = torch.tensor([[7, 7, 7, 3, -100], [3, 9, 7, -100, -100]])
    assert eagle3_train.hot_token_ids(labels, vocab=12, size=5).tolist() == [0, 1, 3, 7, 9]
    assert eagle3_train.hot_token_ids(labels, vocab=12, size=2).tolist() == [3, 7]


def test_training_fits_the_targets_text_and_writes_what_sglang_reads(tiny_llama, tmp_path):
    figures = eagle3_train.run(tiny_llama, tmp_path / "head", GSM8K_TRAIN, new_tokens=12,
                               steps=150, draft_vocab=512, held_out=8, progress=False)  # fmt: skip
    print({k: figures[k] for k in ("seconds", "first_loss", "last_loss", "agreement_fit")})
    assert figures["chat"] and figures["aux_layer_ids"] == aux_layer_ids(6) == [1, 2, 2]
    # a random target's text is hard to learn; the head still fits much of it
    assert figures["last_loss"] < 0.8 * figures["first_loss"]
    assert figures["agreement_fit"][0] > 0.25  # an untrained head: ~1/512
    head_dir = tmp_path / "head"
    cfg = json.loads((head_dir / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLMEagle3"] and cfg["num_hidden_layers"] == 1
    assert cfg["draft_vocab_size"] == 512 and not cfg["tie_word_embeddings"]
    assert cfg["eagle_config"] == {"eagle_aux_hidden_state_layer_ids": [1, 2, 2]}
    from safetensors.torch import load_file

    w = load_file(head_dir / "model.safetensors")
    layer = {f"layers.0.{n}.weight" for n in (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm", "hidden_norm",
        "post_attention_layernorm")}  # fmt: skip
    assert set(w) == layer | {"fc.weight", "norm.weight", "lm_head.weight", "d2t", "t2d"}
    assert w["fc.weight"].shape == (64, 192) and w["layers.0.self_attn.q_proj.weight"].shape == (
        64,
        128,
    )
    # d2t holds target id - draft id (SGLang adds arange back); t2d marks the same ids
    hot = w["d2t"] + torch.arange(512)
    assert hot.tolist() == sorted(set(hot.tolist())) and w["t2d"].sum() == 512
    assert torch.equal(torch.nonzero(w["t2d"]).flatten(), hot)
    assert (head_dir / "tokenizer.json").is_file() and (head_dir / "train.json").is_file()


def test_head_steps_chain_their_own_output(tiny_llama):
    """Step 1 reads the target's aux states through fc; later steps take the previous
    `out` ([B, T, H]) without fc, as SGLang's draft decode feeds it back."""
    from transformers import AutoModelForCausalLM

    target = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    head = Eagle3Head(target, torch.arange(100))
    ids = torch.randint(0, 49152, (2, 7))
    pos = torch.arange(7).expand(2, 7)
    normed, out = head(torch.randn(2, 7, 192), ids, pos)
    assert normed.shape == out.shape == (2, 7, 64)
    normed2, _ = head(out, ids, pos)
    assert normed2.shape == (2, 7, 64) and not torch.allclose(normed2, normed)
    # causal: a later position never changes an earlier one's output
    aux = torch.randn(1, 7, 192)
    a, _ = head(aux, ids[:1], pos[:1])
    aux[:, -1] += 1.0
    b, _ = head(aux, ids[:1], pos[:1])
    torch.testing.assert_close(a[:, :-1], b[:, :-1])
    assert not torch.allclose(a[:, -1], b[:, -1])


def test_ttt_mask_is_what_each_step_sees_when_served():
    from sglang_amd.mtp.eagle3_head import ttt_mask

    assert torch.equal(ttt_mask(4, 0), torch.ones(4, 4).tril().bool())
    m = ttt_mask(5, 2).int()
    # p = 4: step-1 keys at 0..2, step 2's at 3, step 3's (its own) at 4
    assert m[4].tolist() == [1, 1, 1, 0, 0] + [0, 0, 0, 1, 0] + [0, 0, 0, 0, 1]
    assert m[2].tolist() == [1, 0, 0, 0, 0] + [0, 1, 0, 0, 0] + [0, 0, 1, 0, 0]


def _served_step(head, hidden, token, position, keys, values):
    """One draft token as SGLang's draft decode runs it: q/k/v of this token only,
    attending to the given keys (prefix from the draft extend, then the chain's)
    and its own. hidden [1, 1, H or 3H], token [1, 1] -> (normed, out, k, v)."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    if hidden.shape[-1] != head.fc.out_features:
        hidden = head.fc(hidden)
    embed = head.target.model.embed_tokens(token)
    x = torch.cat([head.input_layernorm(embed), head.hidden_norm(hidden)], dim=-1)
    shape = (1, 1, -1, head.head_dim)
    q = head.q_proj(x).view(shape).transpose(1, 2)
    k = head.k_proj(x).view(shape).transpose(1, 2)
    v = head.v_proj(x).view(shape).transpose(1, 2)
    cos, sin = head.target.model.rotary_emb(x, torch.tensor([[position]]))
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    g = head.heads // head.kv_heads
    k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    attn = torch.nn.functional.scaled_dot_product_attention(
        q, torch.cat([keys, k], 2), torch.cat([values, v], 2)
    )
    r = hidden + head.o_proj(attn.transpose(1, 2).reshape(1, 1, -1))
    mid = head.post_attention_layernorm(r)
    out = r + head.down_proj(torch.nn.functional.silu(head.gate_proj(mid)) * head.up_proj(mid))
    return head.norm(out), out, k, v


@torch.no_grad()
def test_unrolled_steps_attend_as_the_served_draft_chain(tiny_llama):
    """Training's unrolled step k at position p computes what SGLang's draft computes
    for the chain that starts after verified position t = p - k: the draft extend's
    keys of positions <= t, then one draft token at a time (positions t+1..t+k),
    each attending to those and the chain's earlier tokens."""
    from transformers import AutoModelForCausalLM

    from sglang_amd.mtp.teacher import Traces, unrolled

    target = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    torch.manual_seed(1)
    head = Eagle3Head(target, torch.arange(300))
    for prm in head.parameters():
        prm.normal_(0.0, 0.1)
    length, steps = 9, 3
    ids = torch.randint(0, 300, (1, length))
    tr = Traces(ids, torch.randn(1, length, 192), torch.zeros(1, length - 1, dtype=torch.long))
    got = {k: logits for k, logits, _ in unrolled(head, tr, steps)}  # step k: positions k..
    nxt, aux = ids[:, 1:], tr.hidden[:, :-1]
    cache: list = []
    head(aux, nxt, torch.arange(length - 1)[None], cache)  # the draft extend's keys
    k0, v0 = cache[0]
    for t in range(length - 1 - steps):
        hidden = None
        keys, values = k0[:, :, : t + 1], v0[:, :, : t + 1]
        for k in range(steps):
            p = t + k
            if k == 0:  # the draft extend's own output at t
                normed, out, _, _ = _served_step(head, aux[:, t : t + 1], nxt[:, t : t + 1], t,
                                                 keys[:, :, :t], values[:, :, :t])  # fmt: skip
            else:
                normed, out, kk, vv = _served_step(head, hidden, nxt[:, p : p + 1], p,
                                                   keys, values)  # fmt: skip
                keys, values = torch.cat([keys, kk], 2), torch.cat([values, vv], 2)
            torch.testing.assert_close(head.logits(normed)[0, 0], got[k][0, p - k],
                                       rtol=1e-4, atol=1e-4)  # fmt: skip
            hidden = out


def test_mtp_train_refuses_what_it_cannot_train(tmp_path, capsys, smollm2_path):
    with pytest.raises(SystemExit):
        mtp_cli.parse_args(
            ["train", "--model", "m", "--out", "o", "--data", str(tmp_path / "none")]
        )
    assert "--data" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mtp_cli.parse_args(
            ["train", "--model", "m", "--out", "o", "--data", GSM8K_TRAIN, "--steps", "0"]
        )
    assert (
        mtp_cli.main(["train", "--model", str(tmp_path), "--out", "o", "--data", GSM8K_TRAIN]) == 2
    )
    assert "no config.json" in capsys.readouterr().err
    few = tmp_path / "few.jsonl"
    few.write_text('{"question": "What is 2 + 2?"}\n')
    argv = [
        "train",
        "--model",
        smollm2_path,
        "--out",
        str(tmp_path / "o"),
        "--data",
        str(few),
        "--quiet",
    ]
    assert mtp_cli.main(argv) == 2
    assert "need more than the 8 held out" in capsys.readouterr().err
