"""Server configurations as `eval compare` takes them, and the changes from one to another.

Where it sits: between the command line and the servers `eval compare` starts.
A configuration is the string a user would type after `sglang-amd serve`
(`"--attention-backend amd --dtype bfloat16"`), optionally led by environment
assignments (`"SGLANG_AMD_ATTENTION_TIER=torch --attention-backend amd"`). The
difference between A and B is a list of `Change`s in a fixed order, our flags
first (attention, MoE runner, quantization, all-to-all, speculative decoding as
one change, then each `SGLANG_AMD_*` tier variable), then anything else; `--bisect`
applies them to A one prefix at a time. Never imports sglang.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

# Flags ours serve through, in the order `--bisect` applies them; a family's
# flags travel together.
FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "attention",
        ("--attention-backend", "--prefill-attention-backend", "--decode-attention-backend"),
    ),
    ("moe runner", ("--moe-runner-backend",)),
    ("quantization", ("--quantization",)),
    ("all-to-all", ("--moe-a2a-backend", "--deepep-mode")),
)
SPECULATIVE_PREFIX = "--speculative-"
TIER_PREFIX = "SGLANG_AMD_"
# Flags `eval compare` sets itself (each server gets its own port).
OWNED = ("--host", "--port", "--model-path", "--model")


@dataclass
class Config:
    """One server configuration: flags (each with its values, in the order given) and environment."""

    flags: dict[str, list[str]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Config:
        cfg = cls()
        current: str | None = None
        for tok in shlex.split(text or ""):
            if tok.startswith("--"):
                name, eq, value = tok.partition("=")
                if name in OWNED:
                    raise ValueError(
                        f"{name} is set by eval compare (--model, one port per server); drop it"
                    )
                cfg.flags[name] = [value] if eq else []
                current = None if eq else name
            elif current is None and "=" in tok and tok.split("=", 1)[0].isidentifier():
                key, value = tok.split("=", 1)
                cfg.env[key] = value
            elif current is not None:
                cfg.flags[current].append(tok)
            else:
                raise ValueError(f"{tok!r} in {text!r}: expected --flag [value] or NAME=value")
        return cfg

    def argv(self) -> list[str]:
        out: list[str] = []
        for name, values in self.flags.items():
            out += [name, *values]
        return out

    def text(self) -> str:
        env = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
        return " ".join(env + [shlex.quote(a) for a in self.argv()])

    def flag(self, name: str) -> str | None:
        values = self.flags.get(name)
        return values[0] if values else None


@dataclass(frozen=True)
class Change:
    """Part of the way from A to B: these flags / variables take B's values (None: removed)."""

    name: str  # what the report calls it ("attention", "SGLANG_AMD_TIER", "--dtype")
    flags: tuple[tuple[str, tuple[str, ...] | None], ...] = ()
    env: tuple[tuple[str, str | None], ...] = ()

    def apply(self, cfg: Config) -> Config:
        out = Config(dict(cfg.flags), dict(cfg.env))
        for name, values in self.flags:
            if values is None:
                out.flags.pop(name, None)
            else:
                out.flags[name] = list(values)
        for key, value in self.env:
            if value is None:
                out.env.pop(key, None)
            else:
                out.env[key] = value
        return out

    def describe(self) -> str:
        parts = [
            f"{n} {' '.join(v)}".strip() if v is not None else f"no {n}" for n, v in self.flags
        ]
        parts += [f"{k}={v}" if v is not None else f"{k} unset" for k, v in self.env]
        if not self.flags and len(self.env) == 1:
            return parts[0]  # an environment change is named by its own assignment
        return f"{self.name}: " + ", ".join(parts)


def _flag_change(name: str, names: list[str], a: Config, b: Config) -> Change | None:
    diffs = tuple(
        (n, tuple(b.flags[n]) if n in b.flags else None)
        for n in names
        if a.flags.get(n) != b.flags.get(n)
    )
    return Change(name, flags=diffs) if diffs else None


def changes(a: Config, b: Config) -> list[Change]:
    """The steps from A to B, ours first; applying all of them to A gives B."""
    out: list[Change] = []
    names = list(dict.fromkeys([*a.flags, *b.flags]))
    claimed: set[str] = set()
    for family, members in FAMILIES:
        present = [n for n in members if n in names]
        claimed.update(present)
        change = _flag_change(family, present, a, b)
        if change:
            out.append(change)
    spec = [n for n in names if n.startswith(SPECULATIVE_PREFIX)]
    claimed.update(spec)
    change = _flag_change("speculative decoding", spec, a, b)
    if change:
        out.append(change)
    keys = list(dict.fromkeys([*a.env, *b.env]))
    ours = [k for k in keys if k.startswith(TIER_PREFIX)]
    for key in ours + [k for k in keys if not k.startswith(TIER_PREFIX)]:
        if a.env.get(key) != b.env.get(key):
            out.append(Change(key, env=((key, b.env.get(key)),)))
    for n in names:
        if n not in claimed:
            change = _flag_change(n, [n], a, b)
            if change:
                out.append(change)
    return out


def apply(a: Config, steps: list[Change]) -> Config:
    for step in steps:
        a = step.apply(a)
    return a
