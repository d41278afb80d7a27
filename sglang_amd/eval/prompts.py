"""The prompts `eval compare` sends: the bundled set, a user's JSONL, and long contexts.

Where it sits: before any server is asked. Every prompt becomes token ids here,
with the model's own tokenizer (transformers, no special tokens added), so
both configurations see exactly the same ids and no chat template or BOS rule
of a server changes them. A JSONL line is `{"prompt": "text"}` (or `"text"`),
or `{"input_ids": [...]}`. A context of L tokens is the prompt set's text,
repeated until it is L tokens long, ending in the question of the first prompt.
Never imports sglang.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

BUNDLED = "compare_prompts.jsonl"


@dataclass
class PromptSet:
    source: str  # "bundled" or the user's path
    sha256: str  # of the file's bytes: recorded with every result
    labels: list[str]
    ids: list[list[int]]


def _records(path: str | Path | None) -> tuple[str, bytes]:
    if path is None:
        return "bundled", resources.files("sglang_amd.eval").joinpath("data", BUNDLED).read_bytes()
    return str(path), Path(path).read_bytes()


def bundled_texts() -> list[str]:
    """The bundled set's prompts as text (for callers that tokenize them their own
    way, e.g. through a chat template)."""
    _, raw = _records(None)
    return [json.loads(line)["prompt"] for line in raw.decode().splitlines() if line.strip()]


def load(path: str | Path | None, tokenizer) -> PromptSet:
    source, raw = _records(path)
    labels, ids = [], []
    for n, line in enumerate(raw.decode().splitlines(), start=1):
        if not line.strip():
            continue
        rec = json.loads(line)
        if "input_ids" in rec:
            seq = [int(t) for t in rec["input_ids"]]
            label = rec.get("label") or f"ids[{len(seq)}]"
        elif "prompt" in rec or "text" in rec:
            text = rec.get("prompt", rec.get("text"))
            seq = tokenizer(text, add_special_tokens=False)["input_ids"]
            label = rec.get("label") or text.splitlines()[0][:40]
        else:
            raise ValueError(f"{source}:{n}: a line needs 'prompt', 'text' or 'input_ids'")
        if len(seq) < 2:
            raise ValueError(f"{source}:{n}: a prompt needs at least 2 tokens to be scored")
        labels.append(label)
        ids.append(seq)
    if not ids:
        raise ValueError(f"{source}: no prompts")
    return PromptSet(source, hashlib.sha256(raw).hexdigest(), labels, ids)


def parse_lengths(text: str | None) -> list[int]:
    """'1k,8k,32k' -> [1024, 8192, 32768]; plain numbers are tokens."""
    out = []
    for part in (text or "").split(","):
        part = part.strip().lower()
        if not part:
            continue
        mult = 1024 if part.endswith("k") else 1
        try:
            n = int(float(part.rstrip("k")) * mult)
        except ValueError:
            raise ValueError(
                f"--contexts {text!r}: {part!r} is not a length (e.g. 1k,8k,32k)"
            ) from None
        if n < 16:
            raise ValueError(f"--contexts {text!r}: {part!r} is shorter than 16 tokens")
        out.append(n)
    return out


def long_context(prompts: PromptSet, length: int) -> list[int]:
    """`length` token ids: the prompt set's text repeated, then the first prompt."""
    body = [t for seq in prompts.ids for t in seq]
    tail = prompts.ids[0]
    fill = length - len(tail)
    if fill < 0:
        return tail[-length:]
    reps = fill // len(body) + 1
    return (body * reps)[:fill] + tail
