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
