"""How far two servers' log-probabilities are apart, and whether that is within tolerance.

Where it sits: the arithmetic of `eval compare`, on what `logprobs.py` fetched;
no I/O. Three comparisons, each over every scored position:

  teacher_forced(a, b)    the same tokens prefilled by A and by B: |delta logprob|
                          of the forced token, top-1 agreement, and the KL of A's
                          next-token distribution from B's
  greedy(a, b)            where B's greedy continuation first leaves A's, and
                          whether A itself had a near tie there
  prefill_vs_decode(g, s) one server's decode-time log-probabilities against its
                          own prefill of the same text

The KL is computed over the tokens both top-K lists hold plus one bucket for the
rest of the mass: merging outcomes never raises a KL, so it is a lower bound of
the full-vocabulary KL (exact when the top-K covers the mass). A disagreement on
the top-1 token counts only where A's leader beats the runner-up by more than
the dtype's tie margin: a near tie may flip under any change of summation order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sglang_amd.eval.logprobs import Generated, Position, Scored

_TINY = 1e-12


@dataclass(frozen=True)
class Thresholds:
    """What a passing pair must meet, per dtype (documented in the README's Evaluation)."""

    dtype: str
    max_abs_dlogprob: float | None  # worst position (None: not gated, bf16 outliers)
    mean_abs_dlogprob: float
    mean_kl: float
    top1_agreement: float  # share of positions without a near tie whose top-1 must agree
    tie_margin: float  # a top-1 leading by less than this may flip
    greedy_identical: bool  # greedy output must match up to a near tie


# float32: the 1e-3 the project holds itself to against HF transformers.
FLOAT32 = Thresholds("float32", 1e-3, 1e-4, 1e-6, 1.0, 2e-3, True)
# bf16: SGLang's own bf16 noise on SmolLM2, measured by this tool (README, Evaluation):
# torch_native bf16 against torch_native fp32 gave mean |dlogprob| 0.029, mean KL 9.4e-4,
# top-1 agreement 0.9924; two bf16 paths may each be that far: twice the |dlogprob|,
# four times the KL (it grows with the square), twice the flips.
BFLOAT16 = Thresholds("bfloat16", None, 0.06, 4e-3, 0.985, 0.1, False)
THRESHOLDS = {"float32": FLOAT32, "bfloat16": BFLOAT16, "float16": BFLOAT16}


def thresholds_for(dtype: str) -> Thresholds:
    try:
        return THRESHOLDS[dtype]
    except KeyError:
        raise ValueError(
            f"no thresholds for dtype {dtype!r}; pass --dtype float32|bfloat16|float16"
        ) from None


def lead(p: Position) -> float:
    """How far A's top-1 leads its runner-up (inf with a top-1 list)."""
    return p.top[0][1] - p.top[1][1] if len(p.top) > 1 else math.inf


def bucketed_kl(a: Position, b: Position) -> float:
    """KL(A || B) over the tokens both top-K lists hold plus one bucket for the rest."""
    pa, pb = dict(a.top), dict(b.top)
    shared = pa.keys() & pb.keys()
    kl, mass_a, mass_b = 0.0, 0.0, 0.0
    for t in shared:
        p, q = math.exp(pa[t]), math.exp(pb[t])
        kl += p * (pa[t] - pb[t])
        mass_a += p
        mass_b += q
    rest_a, rest_b = max(1.0 - mass_a, 0.0), max(1.0 - mass_b, 0.0)
    if rest_a > _TINY:
        kl += rest_a * math.log(rest_a / max(rest_b, _TINY))
    return max(kl, 0.0)


@dataclass
class Agreement:
    """Aggregate over positions; `disagreements` counts top-1 flips that were not near ties."""

    positions: int = 0
    max_abs_dlogprob: float = 0.0
    sum_abs_dlogprob: float = 0.0
    top1_agree: int = 0
    contested: int = 0  # positions whose top-1 leads by less than the tie margin
    disagreements: int = 0
    sum_kl: float = 0.0
    max_kl: float = 0.0

    def add(self, a: Position, b: Position, tie_margin: float, kl: bool = True) -> None:
        d = abs(a.logprob - b.logprob)
        self.max_abs_dlogprob = max(self.max_abs_dlogprob, d)
        self.positions += 1
        self.sum_abs_dlogprob += d
        near_tie = lead(a) < tie_margin
        self.contested += near_tie
        if a.argmax == b.argmax:
            self.top1_agree += 1
        elif not near_tie:
            self.disagreements += 1
        if kl:
            k = bucketed_kl(a, b)
            self.sum_kl += k
            self.max_kl = max(self.max_kl, k)

    def merge(self, other: Agreement) -> Agreement:
        out = Agreement()
        for f in (
            "positions",
            "sum_abs_dlogprob",
            "top1_agree",
            "contested",
            "disagreements",
            "sum_kl",
        ):
            setattr(out, f, getattr(self, f) + getattr(other, f))
        out.max_abs_dlogprob = max(self.max_abs_dlogprob, other.max_abs_dlogprob)
        out.max_kl = max(self.max_kl, other.max_kl)
        return out

    @property
    def mean_abs_dlogprob(self) -> float:
        return self.sum_abs_dlogprob / self.positions if self.positions else 0.0

    @property
    def mean_kl(self) -> float:
        return self.sum_kl / self.positions if self.positions else 0.0

    @property
    def top1_agreement(self) -> float:
        """Agreement over the positions that are not near ties (where it is gated)."""
        decided = self.positions - self.contested
        return 1.0 - self.disagreements / decided if decided else 1.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(mean_abs_dlogprob=self.mean_abs_dlogprob, mean_kl=self.mean_kl,
                 top1_agreement=self.top1_agreement)  # fmt: skip
        return d

    def failures(self, t: Thresholds, what: str) -> list[str]:
        out = []
        if t.max_abs_dlogprob is not None and self.max_abs_dlogprob > t.max_abs_dlogprob:
            out.append(
                f"{what}: max |dlogprob| {self.max_abs_dlogprob:.2e} > {t.max_abs_dlogprob:.0e}"
            )
        if self.mean_abs_dlogprob > t.mean_abs_dlogprob:
            out.append(
                f"{what}: mean |dlogprob| {self.mean_abs_dlogprob:.2e} > {t.mean_abs_dlogprob:.0e}"
            )
        if self.sum_kl and self.mean_kl > t.mean_kl:
            out.append(f"{what}: mean KL {self.mean_kl:.2e} > {t.mean_kl:.0e}")
        if self.top1_agreement < t.top1_agreement:
            out.append(
                f"{what}: top-1 agreement {self.top1_agreement:.4f} < {t.top1_agreement} "
                f"({self.disagreements} flips that were not near ties)"
            )
        return out


def teacher_forced(a: Scored, b: Scored, tie_margin: float) -> Agreement:
    if a.ids != b.ids or a.start != b.start:
        raise ValueError(
            "teacher-forced comparison needs the same tokens scored from the same start"
        )
    agg = Agreement()
    for pa, pb in zip(a.positions, b.positions, strict=True):
        agg.add(pa, pb, tie_margin)
    return agg


def prefill_vs_decode(g: Generated, s: Scored, tie_margin: float) -> Agreement:
    """One server's decode log-probabilities against its prefill of prompt + output."""
    if s.ids != g.prompt + g.output or s.start != len(g.prompt):
        raise ValueError("the prefill must score exactly the generated tokens")
    agg = Agreement()
    for pd, pp in zip(g.positions, s.positions, strict=True):
        agg.add(pp, pd, tie_margin)
    return agg


@dataclass
class Divergence:
    """Where B's greedy output first leaves A's (None: identical) and A's lead there."""

    index: int | None
    a_token: int | None = None
    b_token: int | None = None
    a_lead: float | None = (
        None  # A's logprob of its token minus A's of B's (None: B's beyond A's top-K)
    )
    near_tie: bool = False


def greedy(a: Generated, b: Generated, tie_margin: float) -> Divergence:
    for i, (x, y) in enumerate(zip(a.output, b.output, strict=True)):
        if x != y:
            top = dict(a.positions[i].top)
            gap = top[x] - top[y] if x in top and y in top else None
            return Divergence(i, x, y, gap, gap is not None and gap < tie_margin)
    return Divergence(None)


def greedy_failures(divs: Sequence[Divergence], t: Thresholds, what: str) -> list[str]:
    if not t.greedy_identical:
        return []
    bad = [i for i, d in enumerate(divs) if d.index is not None and not d.near_tie]
    if not bad:
        return []
    first = divs[bad[0]]
    return [
        f"{what}: greedy output differs on {len(bad)} of {len(divs)} prompts without a near tie "
        f"(prompt {bad[0]}: token {first.index}, {first.a_token} -> {first.b_token})"
    ]
