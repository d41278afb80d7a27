"""`sglang-amd mtp train`: the command line of `eagle3_train.py`.

Where it sits: called by `sglang_amd/cli.py` for `sglang-amd mtp ...`. `--model
smollm2` is the reference model (converted once); anything else a transformers
checkpoint folder of a Llama-family model. Never imports sglang.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="sglang-amd mtp",
        description="train an EAGLE3 draft head for a model without MTP layers",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="self-distil an EAGLE3 head on the target's own outputs")
    t.add_argument("--model", required=True, help="checkpoint folder, or smollm2")
    t.add_argument("--out", required=True, help="folder for the head (SGLang's draft path)")
    t.add_argument("--data", required=True,
                   help="JSONL of prompts: 'question' (GSM8K), 'prompt' or 'text' per line")  # fmt: skip
    t.add_argument("--steps", type=int, default=200, help="optimizer steps")
    t.add_argument("--new-tokens", type=int, default=96, help="target tokens generated a prompt")
    t.add_argument("--draft-vocab", type=int, default=16384, help="draft vocabulary size")
    t.add_argument("--held-out", type=int, default=8, help="prompts kept out of training")
    t.add_argument("--device", default=None, help="cuda, cpu (default: cuda when present)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    ns = p.parse_args(argv)
    if ns.steps < 1 or ns.new_tokens < 2 or ns.draft_vocab < 2 or ns.held_out < 1:
        p.error("--steps >= 1, --new-tokens >= 2, --draft-vocab >= 2 and --held-out >= 1")
    if not Path(ns.data).is_file():
        p.error(f"--data {ns.data}: no such file")
    return ns


def main(argv: Sequence[str]) -> int:
    ns = parse_args(argv)
    from sglang_amd.mtp import eagle3_train

    model = ns.model
    if model == "smollm2":
        from sglang_amd.reference_model import smollm2_path

        model = str(smollm2_path(progress=not ns.quiet))
    if not (Path(model) / "config.json").is_file():
        print(f"sglang-amd mtp train: --model {model}: no config.json there", file=sys.stderr)
        return 2
    try:
        figures = eagle3_train.run(model, ns.out, ns.data, new_tokens=ns.new_tokens,
                                   steps=ns.steps, draft_vocab=ns.draft_vocab,
                                   held_out=ns.held_out, device=ns.device,
                                   progress=not ns.quiet)  # fmt: skip
    except (ValueError, eagle3_train.UnsupportedTargetError) as exc:
        print(f"sglang-amd mtp train: {exc}", file=sys.stderr)
        return 2
    agree = ", ".join(f"{a:.2f}" for a in figures["agreement_held_out"])
    print(json.dumps({k: v for k, v in figures.items() if not isinstance(v, list)}, indent=1))
    print(f"held-out agreement per draft step: {agree}")
    print(f"wrote {ns.out}: serve with --speculative-algorithm EAGLE3 "
          f"--speculative-draft-model-path {ns.out}")  # fmt: skip
    return 0
