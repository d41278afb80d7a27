"""The model coverage table (`sglang_amd/models/coverage.py`) holds what it says.

A served row names e2e tests that exist; a refused row is refused at server
start (ServerArgs resolution, before any process or weight) under each of our
flags, with what is missing, for every architecture it lists; the README shows
the table as rendered from the rows; every architecture named is one SGLang
0.5.23 knows (no typo hides a model from its row).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from sglang_amd.flags import UnsupportedConfigError
from sglang_amd.models.coverage import ROWS, markdown_table, refusal, row_for

ROOT = Path(__file__).resolve().parent.parent
REFUSED = [(row, arch) for row in ROWS if not row.served for arch in row.architectures]


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("row", [r for r in ROWS if r.served], ids=lambda r: r.name)
def test_served_rows_name_tests_that_exist(row):
    assert row.evidence, f"{row.name}: a served row without a test"
    for evidence in row.evidence:
        file, _, test = evidence.partition("::")
        path = ROOT / file
        assert path.is_file(), evidence
        if test:
            assert test in _test_names(path), evidence


def test_refused_rows_say_what_is_missing():
    assert REFUSED, "no refused row: then this test and the start-time ones go"
    for row in ROWS:
        assert row.served != bool(row.missing), row.name
    why = refusal(["DeepseekV4ForCausalLM"], ["--attention-backend amd"])
    assert "--attention-backend amd" in why and "DeepSeek-V4" in why and "missing" in why
    assert refusal(["DeepseekV4ForCausalLM"], []) is None  # none of our flags: not ours to say
    assert refusal(["Qwen3MoeForCausalLM"], ["--attention-backend amd"]) is None
    assert row_for(["LlamaForCausalLM"]) is None


def test_readme_shows_the_table():
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "README's coverage table differs from models/coverage.py"


def test_every_architecture_is_one_sglang_knows():
    from sglang.srt.models.registry import ModelRegistry

    known = set(ModelRegistry.get_supported_archs())
    for row in ROWS:
        for arch in row.architectures:
            assert arch in known, f"{row.name}: SGLang 0.5.23 has no {arch}"


def _tiny_config(arch: str) -> dict:
    """A config.json SGLang resolves for `arch`: transformers' defaults for the family
    (resolution reads the config only; no weights, no tokenizer)."""
    import transformers

    if arch.startswith("Qwen3_5Moe"):
        config = transformers.Qwen3_5MoeConfig().to_dict()
    elif arch.startswith("Qwen3_5"):
        config = transformers.Qwen3_5Config().to_dict()
    elif arch.startswith("KimiK25"):
        from transformers.models.kimi_k25.configuration_kimi_k25 import Kimi_K25Config

        config = Kimi_K25Config().to_dict()
    elif arch.startswith("DeepseekV4"):
        config = transformers.DeepseekV4Config().to_dict()
        config.setdefault("compress_ratios", [0] * config["num_hidden_layers"])
    elif arch.startswith("GlmMoeDsa"):
        config = transformers.GlmMoeDsaConfig().to_dict()
    else:
        raise AssertionError(f"no tiny config for {arch}: add one with its row")
    config["architectures"] = [arch]
    return config


@pytest.mark.sglang
@pytest.mark.parametrize(
    "flag",
    [
        {"attention_backend": "amd"},
        {"moe_runner_backend": "amd"},
        {"quantization": "amd_mxfp4"},
    ],
    ids=lambda f: next(iter(f)),
)
@pytest.mark.parametrize("row,arch", REFUSED, ids=lambda x: getattr(x, "name", x))
def test_refused_rows_are_refused_at_start(tmp_path, row, arch, flag):
    from sglang.srt.server_args import ServerArgs

    from sglang_amd import plugin

    plugin.register()
    (tmp_path / "config.json").write_text(json.dumps(_tiny_config(arch), default=str))
    args = ServerArgs(model_path=str(tmp_path), device="cpu", skip_tokenizer_init=True, **flag)
    match = f"{re.escape(row.name)}.*not served yet, missing"
    with pytest.raises(UnsupportedConfigError, match=match):
        args.resolve_once()
