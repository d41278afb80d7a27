"""`sglang-amd eval compare`'s command line: arguments in, table and JSON out, exit code.

Where it sits: `cli.py` hands the `eval compare` subcommand here. Exit 0 when
every comparison passes, 1 when one fails (after `--bisect`, when asked), 2
when the arguments cannot be used. Never imports sglang.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
A configuration is what you would pass to `sglang-amd serve`, optionally led by
environment assignments, e.g.
  --a "--attention-backend torch_native --dtype float32"
  --b "SGLANG_AMD_ATTENTION_TIER=triton --attention-backend amd --dtype float32"
Thresholds (float32: max |dlogprob| 1e-3 as against HF transformers; bf16 and fp16:
SGLang's own measured bf16 noise) are in the README's Evaluation section.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="two configurations token by token (teacher forcing, KL, greedy, prefill vs decode)",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--model", default=None, help="model path (default: what --a-url serves; "
                   "without URLs: the SmolLM2 reference model on CPU)")  # fmt: skip
    for side in ("a", "b"):
        g = p.add_mutually_exclusive_group(required=True)
        g.add_argument(
            f"--{side}", default=None, metavar="ARGS", help=f"serve arguments of {side.upper()}"
        )
        g.add_argument(
            f"--{side}-url", default=None, metavar="URL", help=f"{side.upper()} already serving"
        )
    p.add_argument("--prompts", default=None, help="JSONL: {\"prompt\": ...} or {\"input_ids\": [...]} "
                   "per line (default: the bundled set)")  # fmt: skip
    p.add_argument("--contexts", default=None, help="long-context sweep, e.g. 1k,8k,32k")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--top-k", type=int, default=20, help="top log-probabilities per position (KL)")
    spec = p.add_mutually_exclusive_group()
    spec.add_argument("--speculative", default=None, metavar="ARGS",
                      help="also run B with these flags added (speculative on vs off)")  # fmt: skip
    spec.add_argument(
        "--speculative-url", default=None, metavar="URL", help="B with speculation, serving"
    )
    p.add_argument(
        "--bisect", action="store_true", help="on a failing pair, name the change at fault"
    )
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="thresholds to apply (default: the servers' dtype)")  # fmt: skip
    p.add_argument(
        "--out", default="eval-compare", help="directory for compare.json, compare.md, logs"
    )


def _model(ns: argparse.Namespace) -> str:
    if ns.model:
        return ns.model
    if ns.a_url:
        import requests

        return requests.get(f"{ns.a_url.rstrip('/')}/v1/models", timeout=60).json()["data"][0][
            "root"
        ]
    from sglang_amd.reference_model import smollm2_path

    return str(smollm2_path())


def main(ns: argparse.Namespace) -> int:
    from sglang_amd.eval import compare, compare_report, prompts
    from sglang_amd.eval.configs import Config

    try:
        targets = {}
        for side in ("a", "b"):
            url, args = getattr(ns, f"{side}_url"), getattr(ns, side)
            cfg = None if url else Config.parse(args)
            targets[side] = compare.Target(side.upper(), config=cfg, url=url)
        spec = None
        if ns.speculative_url:
            spec = compare.Target("B + speculative", url=ns.speculative_url)
        elif ns.speculative:
            if targets["b"].config is None:
                raise ValueError(
                    "--speculative adds flags to B's: give --b as serve arguments (or --speculative-url)"
                )
            extra = Config.parse(ns.speculative)
            spec = compare.Target("B + speculative", config=Config({**targets["b"].config.flags, **extra.flags},
                                                                 {**targets["b"].config.env, **extra.env}))  # fmt: skip
        if ns.bisect and (ns.a_url or ns.b_url):
            raise ValueError(
                "--bisect starts servers: give --a and --b as serve arguments, not URLs"
            )
        model = _model(ns)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
        work = compare.Workload(prompts.load(ns.prompts, tokenizer), prompts.parse_lengths(ns.contexts),
                                ns.max_new_tokens, ns.top_k)  # fmt: skip
    except (ValueError, OSError) as exc:
        print(f"sglang-amd eval compare: {exc}", file=sys.stderr)
        return 2
    from sglang_amd.eval.logprobs import ServerAnswerError
    from sglang_amd.serving.server_process import ServerError

    out = Path(ns.out)
    try:
        result = compare.run(
            model, targets["a"], targets["b"], work, out, spec, ns.bisect, ns.dtype
        )
    except (ServerError, ServerAnswerError, ValueError) as exc:
        print(f"sglang-amd eval compare: {exc}", file=sys.stderr)
        return 2
    text = compare_report.table(result)
    print(text)
    (out / "compare.md").write_text("```\n" + text + "\n```\n")
    print(f"wrote {out / 'compare.json'} and {out / 'compare.md'}")
    return 0 if result["passed"] else 1
