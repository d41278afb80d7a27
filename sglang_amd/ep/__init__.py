"""Expert parallelism: a MoRI-style dispatch/combine communicator.

  config.py            EpConfig (rank, world, sizes, wire format, mode) and the
                       per-batch choice between the two modes
  plan.py              where each local token goes (once per destination rank), and
                       the packed send buffer either tier hands back
  wire.py              the bytes a token row travels as (bf16/fp32, FP8, MXFP4)
  permute.py           the local permutes' Triton tier (tiers.OPS ep_permute.pack /
                       .combine): plan + records into every destination's row, and
                       the rank-ordered combine (kernels in permute_details/, launch
                       flags in opt_flags.py); permute_reference.py: the torch tier
  transport.py         the collectives under it (torch.distributed: NCCL/RCCL on
                       GPUs, gloo on CPU) with a byte counter for the bench
  dispatch_combine.py  EpDispatchCombine: dispatch(x, weights, indices) and combine
  sglang_dispatcher.py the SGLang adapter (`--moe-a2a-backend customized`)

Only sglang_dispatcher.py, support.py's callers and sglang_registration.py touch
SGLang; the rest runs wherever torch.distributed does.
"""
