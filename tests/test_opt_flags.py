"""Launch flags per target: `target_info.Target` and the opt_flags modules.

Runs on a CPU-only machine: GPU targets come from `KNOWN_TARGETS` or from a
mocked device (torch.cuda.get_device_properties / torch.version.hip patched),
which is what lets a compile-for-target audit ask what gfx950 would get without
one. The expected values are those chosen before the flags were split by vendor
and arch: a literal table for a few shapes, and the old rules themselves
(`_legacy_*`, copied from the code they replaced) swept over many shapes.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from sglang_amd import target_info
from sglang_amd.attention.opt_flags import (
    MAX_SPLITS,
    MIN_TOKENS_PER_SPLIT,
    WAVES,
    DecodeFlags,
    ExtendFlags,
    choose_num_splits,
    decode_flags,
    extend_flags,
    partial_traffic_cap,
)
from sglang_amd.gemm.opt_flags import GemmFlags, grouped_gemm_flags, linear_block_m, moe_block_m
from sglang_amd.target_info import (
    INTERPRETER,
    KNOWN_TARGETS,
    Target,
    current_target,
    target_for_arch,
)

# (batch, num_kv_heads, group, max_kv_len, d_qk, d_v)
GQA_D128 = (1, 8, 4, 32768, 128, 128)
MLA = (2, 1, 128, 8192, 576, 512)  # absorbed MLA: K = [latent 512 | rope 64], V = latent


@pytest.fixture(autouse=True)
def _fresh_gpu_cache():
    """Mocked devices must not leak cached targets into other tests."""
    target_info._gpu_target.cache_clear()
    yield
    target_info._gpu_target.cache_clear()


def _mock_gpu(monkeypatch, *, hip: str | None, calls: list[int] | None = None, **props):
    monkeypatch.setattr(torch.version, "hip", hip)

    def get_device_properties(index):
        if calls is not None:
            calls.append(index)
        return SimpleNamespace(**props)

    monkeypatch.setattr(torch.cuda, "get_device_properties", get_device_properties)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


# --- Target -------------------------------------------------------------------


def test_cpu_is_the_interpreter():
    assert current_target("cpu") == INTERPRETER
    assert current_target(torch.device("cpu")) is KNOWN_TARGETS["interpreter"]
    assert INTERPRETER.vendor == "interpreter"
    assert INTERPRETER.compute_units == 4
    assert INTERPRETER.warp_size == 32
    if not torch.cuda.is_available():
        assert current_target() == INTERPRETER


def test_known_targets():
    assert {
        name: (t.backend, t.vendor, t.warp_size, t.compute_units)
        for name, t in KNOWN_TARGETS.items()
    } == {
        "gfx942": ("hip", "amd", 64, 304),
        "gfx950": ("hip", "amd", 64, 256),
        "sm_90": ("cuda", "nvidia", 32, 132),
        "sm_100": ("cuda", "nvidia", 32, 148),
        "interpreter": ("interpreter", "interpreter", 32, 4),
    }
    for name, target in KNOWN_TARGETS.items():
        assert target.arch == name
        assert target_for_arch(name) is target


def test_target_for_arch():
    assert target_for_arch("gfx942:sramecc+:xnack-") is KNOWN_TARGETS["gfx942"]
    with pytest.raises(KeyError, match="gfx90a.*gfx942, gfx950, sm_90, sm_100, interpreter"):
        target_for_arch("gfx90a")


def test_mocked_rocm_device(monkeypatch):
    calls: list[int] = []
    _mock_gpu(
        monkeypatch,
        hip="6.3.42131",
        calls=calls,
        gcnArchName="gfx942:sramecc+:xnack-",
        multi_processor_count=80,  # a partitioned MI300X reports fewer CUs
        major=9,
        minor=4,
    )
    target = current_target("cuda:0")
    assert target == Target("hip", "gfx942", warp_size=64, compute_units=80)
    assert target.vendor == "amd"
    # Cached per device index: "cuda" (the current device, 0) asks no more.
    assert current_target("cuda") is target
    assert current_target(torch.device("cuda", 0)) is target
    assert calls == [0]
    current_target("cuda:1")
    assert calls == [0, 1]


def test_mocked_rocm_full_mi355x_matches_known(monkeypatch):
    _mock_gpu(
        monkeypatch,
        hip="7.0",
        gcnArchName="gfx950:sramecc+:xnack-",
        multi_processor_count=256,
        warp_size=64,
        major=9,
        minor=5,
    )
    assert current_target("cuda:0") == KNOWN_TARGETS["gfx950"]


def test_mocked_unknown_amd_keeps_its_arch(monkeypatch):
    _mock_gpu(
        monkeypatch, hip="6.3", gcnArchName="gfx1100", multi_processor_count=48, major=11, minor=0
    )
    target = current_target("cuda:0")
    assert (target.vendor, target.arch, target.warp_size, target.compute_units) == (
        "amd",
        "gfx1100",
        32,  # RDNA: wave32
        48,
    )
    # Unknown arch: the vendor's default row (gfx942's), with its own unit count.
    gfx942 = KNOWN_TARGETS["gfx942"]
    flags = decode_flags(target, *GQA_D128)
    assert flags == DecodeFlags(choose_num_splits(8, 32768, 48), 64, 16, 4, 1)
    assert extend_flags(target, 128, 128) == extend_flags(gfx942, 128, 128)


@pytest.mark.parametrize(
    ("major", "minor", "units", "arch"),
    [(9, 0, 132, "sm_90"), (10, 0, 148, "sm_100"), (8, 0, 108, "sm_80")],
)
def test_mocked_cuda_device(monkeypatch, major, minor, units, arch):
    _mock_gpu(monkeypatch, hip=None, major=major, minor=minor, multi_processor_count=units)
    target = current_target("cuda:0")
    assert target == Target("cuda", arch, warp_size=32, compute_units=units)
    assert target.vendor == "nvidia"
    if arch in KNOWN_TARGETS:
        assert target == KNOWN_TARGETS[arch]


# --- Values: the table ----------------------------------------------------------

# Per target: decode GQA d128, decode MLA 576/512 (num_splits, block_n, block_h,
# num_warps, num_stages); extend d128 and 192/128 (block_m, block_n, num_warps,
# num_stages); grouped GEMM W4A16 and A4W4 (block_n, block_k); MoE block_m;
# linear block_m at 16 and 17 rows.
EXPECTED = {
    "gfx942": dict(
        gqa=(64, 64, 16, 4, 1),
        mla=(32, 16, 64, 8, 1),
        extend=((128, 64, 4, 1), (64, 32, 4, 1)),
        gemm=((64, 64), (64, 128)),
        moe_block_m=64,
        linear_block_m=(16, 64),
    ),
    "gfx950": dict(
        gqa=(64, 64, 16, 4, 1),
        mla=(32, 16, 64, 8, 1),
        extend=((128, 64, 4, 1), (64, 32, 4, 1)),
        gemm=((64, 64), (64, 128)),
        moe_block_m=64,
        linear_block_m=(16, 64),
    ),
    "sm_90": dict(  # decode tiles measured on an H200 (opt_flags_nvidia.py)
        gqa=(33, 128, 16, 4, 2),
        mla=(32, 32, 64, 8, 2),
        extend=((128, 64, 8, 3), (64, 32, 4, 2)),
        gemm=((64, 64), (64, 128)),
        moe_block_m=64,
        linear_block_m=(16, 64),
    ),
    "sm_100": dict(
        gqa=(37, 64, 16, 4, 2),
        mla=(32, 16, 64, 8, 2),
        extend=((128, 64, 8, 3), (64, 32, 4, 2)),
        gemm=((64, 64), (64, 128)),
        moe_block_m=64,
        linear_block_m=(16, 64),
    ),
    # Decode: NVIDIA's tiles with 4 units (the old "ROCm, else" rule); the rest small.
    "interpreter": dict(
        gqa=(1, 64, 16, 4, 2),
        mla=(2, 16, 64, 8, 2),
        extend=((16, 16, 4, 1), (16, 16, 4, 1)),
        gemm=((32, 32), (32, 64)),
        moe_block_m=16,
        linear_block_m=(16, 16),
    ),
}


def test_expected_table_covers_every_known_target():
    assert set(EXPECTED) == set(KNOWN_TARGETS)


@pytest.mark.parametrize("arch", list(KNOWN_TARGETS))
def test_flags_per_target(arch):
    target = target_for_arch(arch)
    want = EXPECTED[arch]
    assert decode_flags(target, *GQA_D128) == DecodeFlags(*want["gqa"])
    mla = decode_flags(target, *MLA)
    assert mla == DecodeFlags(*want["mla"])
    # 128 heads: two 64-head programs a split (FlashMLA's layout); at 16 heads the
    # 16-head block and the wide row (16-key tiles on gfx950: with the latent tile
    # serving as K and V, 32 keys took 256 VGPRs + 36 AGPRs there, one wave per SIMD).
    mla16 = decode_flags(target, 2, 1, 16, 8192, 576, 512)
    assert mla16.block_h == 16 and mla16.block_n == {"gfx950": 16, "sm_90": 64}.get(arch, 32)
    assert extend_flags(target, 128, 128) == ExtendFlags(*want["extend"][0])
    assert extend_flags(target, 192, 128) == ExtendFlags(*want["extend"][1])
    assert grouped_gemm_flags(target, a4w4=False) == GemmFlags(*want["gemm"][0])
    assert grouped_gemm_flags(target, a4w4=True) == GemmFlags(*want["gemm"][1])
    assert moe_block_m(target) == want["moe_block_m"]
    assert (linear_block_m(target, 16), linear_block_m(target, 17)) == want["linear_block_m"]
    assert linear_block_m(target, 1) == 16


@pytest.mark.parametrize("arch", ["gfx942", "gfx950", "sm_90", "sm_100"])
def test_float32_extend_takes_the_float32_rows(arch):
    """float32 K/V doubles the tiles in shared memory: the bf16 latent row asked an
    H200 for 295,168 bytes (limit 232,448). The float32 rows fit and do not spill
    (compile audit's float32 cases); bf16 and fp16 keep the tables' rows."""
    target = target_for_arch(arch)
    amd = arch.startswith("gfx")
    for (dqk, dv), nvidia in zip(
        [(128, 128), (192, 128), (576, 512)],
        [(32, 16, 4, 1), (16, 16, 8, 1), (32, 16, 8, 1)],
        strict=True,
    ):
        want = ExtendFlags(*((32, 16, 4, 1) if amd else nvidia))
        assert extend_flags(target, dqk, dv, elem_bytes=4) == want
        assert extend_flags(target, dqk, dv, elem_bytes=2) != want


def test_decode_stages_per_vendor():
    for target in KNOWN_TARGETS.values():
        stages = decode_flags(target, *GQA_D128).num_stages
        assert stages == (1 if target.vendor == "amd" else 2)


# --- Values: the old rules, swept -----------------------------------------------


def _legacy_kind_units(target: Target) -> tuple[str, int]:
    """What the old code saw: device_kind() and the unit count it used."""
    if target.vendor == "amd":
        return "rocm", target.compute_units
    if target.vendor == "nvidia":
        return "cuda", target.compute_units
    return "cpu", 4


def _legacy_decode(kind, units, batch, num_kv_heads, group, max_kv_len, d_qk, d_v):
    block_h = max(16, min(64, 1 << max(group - 1, 0).bit_length()))
    wide = d_qk > 256 or d_v > 256
    if wide:
        block_h = 16
    head_blocks = -(-group // block_h)
    programs = batch * num_kv_heads * head_blocks
    want = -(-2 * units // max(programs, 1))
    by_length = max(1, -(-max_kv_len // 256))
    splits = max(1, min(want, by_length, 64))
    if kind == "rocm":
        return (splits, 32 if wide else 64, block_h, 4, 1)
    return (splits, 32 if wide else 64, block_h, 8 if wide else 4, 2)


def _latent_heads_decode(target, kind, units, shape):
    """MLA with > 16 heads: heads per program up to 64, 16-key tiles, 8 warps."""
    batch, num_kv_heads, group, max_kv_len, _, _ = shape
    block_h = min(64, 1 << (group - 1).bit_length())
    programs = batch * num_kv_heads * -(-group // block_h)
    want = -(-2 * units // max(programs, 1))
    splits = max(1, min(want, max(1, -(-max_kv_len // 256)), 64))
    return DecodeFlags(splits, 16, block_h, 8, 1 if kind == "rocm" else 2)


def _legacy_extend(kind, d_qk, d_v):
    wide = max(d_qk, d_v) > 128
    if kind == "cpu":
        return (16, 16, 4, 1)
    if kind == "rocm":
        return (64 if wide else 128, 32 if wide else 64, 4, 1)
    return (64 if wide else 128, 32 if wide else 64, 4 if wide else 8, 2 if wide else 3)


def _legacy_gemm(kind, a4w4, rows):
    cpu = kind == "cpu"
    block_n = 32 if cpu else 64
    block_k = (64 if cpu else 128) if a4w4 else (32 if cpu else 64)
    moe = 16 if cpu else 64
    linear = 16 if rows <= 16 or cpu else 64
    return (block_n, block_k), moe, linear


DIMS = [(64, 64), (128, 128), (192, 128), (256, 256), (96, 96), (576, 512), (320, 256)]


@pytest.mark.parametrize("arch", list(KNOWN_TARGETS))
def test_flags_equal_the_old_rules(arch):
    target = target_for_arch(arch)
    kind, units = _legacy_kind_units(target)
    for batch in (1, 3, 64, 512):
        for num_kv_heads in (1, 8):
            for group in (1, 2, 5, 8, 16, 33, 128):
                for max_kv_len in (1, 255, 257, 4096, 131072):
                    for d_qk, d_v in DIMS:
                        shape = (batch, num_kv_heads, group, max_kv_len, d_qk, d_v)
                        got = decode_flags(target, *shape)
                        want = DecodeFlags(*_legacy_decode(kind, units, *shape))
                        wide = max(d_qk, d_v) > 256
                        if arch == "gfx950" and wide:  # on purpose, above
                            want = replace(want, block_n=16)
                        if wide and group > 16:  # on purpose: up to 64 MLA heads a program
                            want = _latent_heads_decode(target, kind, units, shape)
                        if max(d_qk, d_v) <= 256:  # changed on purpose: partial traffic cap
                            cap = partial_traffic_cap(max_kv_len, group, d_qk, d_v)
                            want = replace(want, num_splits=min(want.num_splits, cap))
                        if arch == "sm_90":  # on purpose: tiles measured on an H200
                            latent_heads = wide and group > 16
                            want = replace(
                                want, block_n=32 if latent_heads else 64 if wide else 128
                            )
                        assert got == want, shape
                        assert got.min_split_len == MIN_TOKENS_PER_SPLIT
    for d_qk, d_v in DIMS:
        if d_v > 256 and target.vendor == "nvidia":
            continue  # changed on purpose: test_mla_latent_extend_tiles_do_not_spill
        assert extend_flags(target, d_qk, d_v) == ExtendFlags(*_legacy_extend(kind, d_qk, d_v))
    for a4w4 in (False, True):
        for rows in (1, 16, 17, 1000):
            (block_n, block_k), moe, linear = _legacy_gemm(kind, a4w4, rows)
            assert grouped_gemm_flags(target, a4w4=a4w4) == GemmFlags(block_n, block_k)
            assert moe_block_m(target) == moe
            assert linear_block_m(target, rows) == linear


@pytest.mark.parametrize("arch", list(KNOWN_TARGETS))
def test_block_sizes_are_powers_of_two(arch):
    def pow2(v: int) -> bool:
        return v > 0 and v & (v - 1) == 0

    target = target_for_arch(arch)
    for shape in (GQA_D128, MLA, (4, 2, 6, 1000, 192, 128)):
        f = decode_flags(target, *shape)
        assert pow2(f.block_n) and pow2(f.block_h) and pow2(f.num_warps), (arch, shape)
    for d_qk, d_v in DIMS:
        f = extend_flags(target, d_qk, d_v)
        assert pow2(f.block_m) and pow2(f.block_n) and pow2(f.num_warps), (arch, d_qk, d_v)
    for a4w4 in (False, True):
        f = grouped_gemm_flags(target, a4w4=a4w4)
        assert pow2(f.block_n) and pow2(f.block_k)
        # A4W4 packs two codes a byte and one E8M0 scale per 32: K tiles of whole scales.
        assert f.block_k % 32 == 0
    assert pow2(moe_block_m(target))
    for rows in (1, 16, 17, 4096):
        assert pow2(linear_block_m(target, rows))


def test_choose_num_splits_limits():
    assert (MIN_TOKENS_PER_SPLIT, MAX_SPLITS, WAVES) == (256, 64, 2)
    # 148 SMs, one program: as many as length allows, capped at MAX_SPLITS.
    assert choose_num_splits(programs=1, max_kv_len=1 << 20, units=148) == MAX_SPLITS
    assert choose_num_splits(programs=1, max_kv_len=300, units=148) == 2
    assert choose_num_splits(programs=0, max_kv_len=0, units=4) == 1


def test_opt_flags_modules_import_without_sglang():
    modules = [
        "sglang_amd.target_info",
        "sglang_amd.attention.opt_flags",
        "sglang_amd.attention.opt_flags_amd",
        "sglang_amd.attention.opt_flags_nvidia",
        "sglang_amd.gemm.opt_flags",
        "sglang_amd.gemm.opt_flags_amd",
        "sglang_amd.gemm.opt_flags_nvidia",
    ]
    code = (
        "import importlib, sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'sglang' or name.startswith('sglang.'):\n"
        "            raise ImportError('sglang blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "assert 'triton' not in sys.modules, 'flag modules must not need triton'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "arch, want",
    [
        ("sm_90", (64, 32, 8, 2)),
        ("sm_100", (32, 32, 8, 2)),
        ("gfx942", (64, 32, 4, 1)),
        ("gfx950", (64, 32, 4, 1)),
    ],
)
def test_mla_latent_extend_tiles_do_not_spill(arch, want):
    """The absorbed MLA extend (512 + 64 / 512) on 4 warps and 64 rows spilled on
    sm_90 (2,104 bytes) and sm_100 (896): its own row per arch, found by the
    compile audit (sglang-amd audit), which checks these compile without spills."""
    assert extend_flags(target_for_arch(arch), 576, 512) == ExtendFlags(*want)
    assert extend_flags(target_for_arch(arch), 192, 128) != ExtendFlags(*want) or arch.startswith(
        "gfx"
    )


def test_split_reduce_warps_hold_the_mla_tile_without_spilling():
    """64 splits x 512 (MLA at long context) on 4 warps spilled on sm_90/sm_100
    (sglang-amd audit); enough warps that each thread holds <= 64 values."""
    from sglang_amd.attention.opt_flags import reduce_warps

    assert reduce_warps(target_for_arch("sm_90"), 64, 512) == 16
    assert reduce_warps(target_for_arch("gfx942"), 64, 512) == 8
    for arch in KNOWN_TARGETS:
        assert reduce_warps(target_for_arch(arch), 2, 128) == 4  # small tiles as before
        assert reduce_warps(target_for_arch(arch), 64, 128) in (4, 8)


@pytest.mark.parametrize("arch", ["gfx942", "sm_90"])
def test_gqa_split_partials_stay_within_their_traffic_budget(arch):
    """Splits * partial bytes <= budget * K/V bytes for MHA/GQA; MLA is exempt (see
    opt_flags' docstring) and keeps the splits that fill the GPU."""
    target = target_for_arch(arch)
    for group in (1, 4, 8, 16, 64):
        for ctx in (1024, 8192, 65536):
            f = decode_flags(target, 1, 1, group, ctx, 128, 128)
            partials = f.num_splits * group * 129 * 8
            assert f.num_splits == 1 or partials <= 0.06 * ctx * 256 * 2, (group, ctx)
    # 16 query heads per KV head at 8K keys: was 32 splits (1.16x the ideal bytes).
    assert decode_flags(target, 1, 1, 16, 8192, 128, 128).num_splits == 15
    assert decode_flags(target, 1, 1, 128, 8192, 576, 512).num_splits > 8
