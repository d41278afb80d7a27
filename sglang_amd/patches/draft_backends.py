"""Let SGLang's speculative workers build `amd` draft attention backends.

SGLang 0.5.23 picks the draft model's backends (`speculative/draft_utils.py`,
`DraftBackendFactory.create_decode_backend` / `create_draft_extend_backend`)
from closed dicts keyed by backend name; there is no registry to join. One
AROUND hook on `DraftBackendFactory._create_backend` adds "amd" to the dict it
is handed: the multi-step container for draft decode (the call that stamps
children), our backend itself for draft extend. Any other backend name runs
SGLang's code untouched.
"""

from __future__ import annotations

from sglang_amd.flags import ATTENTION_BACKEND

TARGET = "sglang.srt.speculative.draft_utils.DraftBackendFactory._create_backend"
TARGETS = {TARGET: ("self", "backend_name", "backend_map", "error_template", "stamps_children")}


def _create_backend(
    original, self, backend_name, backend_map, error_template, stamps_children=False
):
    backend_map = dict(backend_map)
    runner, topk, steps = self.draft_model_runner, self.topk, self.speculative_num_steps
    if stamps_children:

        def factory():
            from sglang_amd.attention.sglang_draft_backend import AmdMultiStepDraftBackend

            return ATTENTION_BACKEND, AmdMultiStepDraftBackend(runner, topk, steps)
    else:

        def factory():
            from sglang_amd.attention.sglang_backend import AmdAttnBackend

            return ATTENTION_BACKEND, AmdAttnBackend(runner)

    backend_map[ATTENTION_BACKEND] = factory
    return original(self, backend_name, backend_map, error_template, stamps_children)


def register() -> None:
    """Register the hooks with SGLang's HookRegistry (idempotent)."""
    from sglang_amd.patches import register_around_hooks

    register_around_hooks(__name__, {TARGET: _create_backend})
