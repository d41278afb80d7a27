"""Speculative acceptance, read from what SGLang returns with each request.

Where it sits: after generation, in `sglang-amd bench mtp`, the evaluation tools
and the e2e tests. SGLang puts per request in `meta_info`: `spec_verify_ct`
(verify passes), `completion_tokens`, `spec_num_correct_drafts` and
`spec_num_proposed_drafts`; its accept length is completion tokens per verify
pass (the bonus token included) and its accept rate correct drafts over
proposed ones. The aggregate here is the same ratio over the sums (tokens
weighted, as SGLang's own scheduler log reports it), never a mean of
per-request ratios. Never imports sglang.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class NoSpeculationError(ValueError):
    """The responses carry no speculative figures: speculation was off."""


@dataclass
class Acceptance:
    requests: int = 0
    completion_tokens: int = 0
    verify_passes: int = 0
    correct_drafts: int = 0
    proposed_drafts: int = 0
    per_request: list[float] = field(default_factory=list)  # SGLang's accept length each

    @property
    def accept_length(self) -> float:
        """Tokens committed per verify pass, over all requests."""
        return self.completion_tokens / self.verify_passes if self.verify_passes else 0.0

    @property
    def accept_rate(self) -> float:
        """Drafted tokens accepted over drafted tokens proposed."""
        return self.correct_drafts / self.proposed_drafts if self.proposed_drafts else 0.0

    def line(self) -> str:
        lo, hi = (min(self.per_request), max(self.per_request)) if self.per_request else (0, 0)
        return (
            f"accept length {self.accept_length:.2f} (per request {lo:.2f}-{hi:.2f}), "
            f"accept rate {self.accept_rate:.2f}: {self.completion_tokens} tokens in "
            f"{self.verify_passes} verify passes over {self.requests} requests"
        )

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "completion_tokens": self.completion_tokens,
            "verify_passes": self.verify_passes,
            "correct_drafts": self.correct_drafts,
            "proposed_drafts": self.proposed_drafts,
            "accept_length": self.accept_length,
            "accept_rate": self.accept_rate,
            "per_request": self.per_request,
        }


def from_meta(meta_infos: Iterable[Mapping]) -> Acceptance:
    """Sum SGLang's per-request figures. A request that finished without any verify
    pass (one token, or stopped at prefill) carries none and is counted as such;
    if no request carries any, speculation was off and that is an error."""
    acc = Acceptance()
    seen = 0
    for meta in meta_infos:
        acc.requests += 1
        verify = int(meta.get("spec_verify_ct", 0) or 0)
        if verify == 0:
            continue
        seen += 1
        tokens = int(meta["completion_tokens"])
        acc.completion_tokens += tokens
        acc.verify_passes += verify
        acc.correct_drafts += int(meta.get("spec_num_correct_drafts", 0))
        acc.proposed_drafts += int(meta.get("spec_num_proposed_drafts", 0))
        acc.per_request.append(tokens / verify)
    if acc.requests and not seen:
        raise NoSpeculationError(
            "no response carries spec_verify_ct: the server ran without "
            "--speculative-algorithm (or every request ended before a verify pass)"
        )
    return acc
