"""Expert parallelism: a MoRI-style dispatch/combine communicator.

  config.py            EpConfig (rank, world, sizes, wire format, mode) and the
                       per-batch choice between the two modes
  plan.py              where each local token goes (once per destination rank)
  wire.py              the bytes a token row travels as (bf16/fp32, FP8, MXFP4)
  transport.py         the collectives under it (torch.distributed: NCCL/RCCL on
                       GPUs, gloo on CPU) with a byte counter for the bench
  dispatch_combine.py  EpDispatchCombine: dispatch(x, weights, indices) and combine
  sglang_dispatcher.py the SGLang adapter (`--moe-a2a-backend customized`)

Only sglang_dispatcher.py, support.py's callers and sglang_registration.py touch
SGLang; the rest runs wherever torch.distributed does.
"""
