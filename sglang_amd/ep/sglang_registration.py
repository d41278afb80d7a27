"""SGLang registration of expert parallelism (called by `plugin.register`).

  --moe-a2a-backend customized   patches/ep_dispatcher.py: the CLI choice and our
                                 dispatcher from create_moe_dispatcher
  tp / ep > 1 on our CPU platform  patches/cpu_tensor_parallel.py (SGLang's CPU
                                 collectives), platform.py (thread binding)

Imports sglang.
"""

from __future__ import annotations


def register() -> None:
    """Idempotent."""
    from sglang_amd.patches import cpu_tensor_parallel, ep_dispatcher

    ep_dispatcher.register()
    cpu_tensor_parallel.apply()


def prepare(server_args: object) -> None:
    """In the launcher, for a server using our communicator: shared experts replicated
    (SGLANG_SHARED_EXPERT_TP1, inherited by the scheduler processes). The ranks hold
    different tokens after SGLang's attention-TP scatter, so each computes its own
    tokens' shared expert in full, as SGLang arranges for its DeepEP and MoRI
    backends (a TP-sharded shared expert would leave each rank a partial sum).
    In an in-process Engine the switch stays set for later engines of the
    process, which stay correct (SGLang serves replicated shared experts without
    an a2a backend too)."""
    from sglang.srt.environ import envs

    if not envs.SGLANG_SHARED_EXPERT_TP1.get():
        envs.SGLANG_SHARED_EXPERT_TP1.set(True)
