"""The merged export on the real embedded model: plain transformers (peft blocked) loads it and it gives
what the base with the unmerged adapter gives; and every bad input fails with one line naming it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.core.config import ExportConfig
from lab.core.errors import ConfigError, ModelError, RuntimeConfigError
from lab.core.reproducibility import save_adapter
from lab.export.gguf import check_gguf_support
from lab.export.merged import PROVENANCE_FILE, cast_checked, check_export_inputs, export_merged, file_sha256

from .conftest import REPO, make_config, stage_env

PROMPTS = ["What does `json.dumps` do?",
           "Summarise: Return a new string with the leading and trailing characters removed.",
           "What is 2 + 2?"]
NEW_TOKENS = 10
# Noise on every LoRA B matrix (zero at init, so an untrained adapter would change nothing): at this
# scale the adapter changes the greedy answer to each prompt, and the answers stay fluent.
LORA_B_NOISE = 0.2

# Plain transformers with peft blocked (`import peft` fails and transformers sees no peft): it loads each
# directory given, generates greedily from the first, and reports what the adapter directory does.
PLAIN_TRANSFORMERS = r"""
import json, sys
sys.modules["peft"] = None
from transformers import AutoModelForCausalLM, AutoTokenizer
generating, other, adapter = sys.argv[1:4]
prompts, new_tokens = json.loads(sys.argv[4]), int(sys.argv[5])
model, tokenizer = AutoModelForCausalLM.from_pretrained(generating), AutoTokenizer.from_pretrained(generating)
rows = []
for prompt in prompts:
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    out = model.generate(ids, attention_mask=ids.new_ones(ids.shape), do_sample=False, max_new_tokens=new_tokens)
    rows.append({"prompt": ids[0].tolist(), "tokens": out[0, ids.shape[1]:].tolist()})
try:
    AutoModelForCausalLM.from_pretrained(adapter)
    adapter_loads = True
except Exception:
    adapter_loads = False
print(json.dumps({"dtypes": [str(model.dtype), str(AutoModelForCausalLM.from_pretrained(other).dtype)],
                  "rows": rows, "adapter_loads": adapter_loads}))
"""


def export_config(dtype: str, gguf: str | None = None) -> ExportConfig:
    return make_config({"export": {"dtype": dtype, "gguf": gguf}}).export


def lora_adapter(base_dir: Path, out: Path, noise: float) -> Path:
    """A LoRA adapter of params.yaml's train.lora on `base_dir`, its B matrices seeded noise, saved as the
    train stage saves one (with the tokenizer)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lab.model.loading import load_tokenizer

    lora = make_config().train.lora
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
                           LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules=lora.modules(),
                                      task_type="CAUSAL_LM"))
    noise_source = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.copy_(torch.randn(weight.shape, generator=noise_source) * noise)
    save_adapter(model, load_tokenizer(base_dir), out)
    return out


@pytest.fixture(scope="module")
def adapter(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lora_adapter(embedded_model_dir, tmp_path_factory.mktemp("adapter"), LORA_B_NOISE)


@pytest.fixture(scope="module")
def exports(embedded_model_dir: Path, adapter: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The adapter exported in fp32 (the exact merge) and bf16 (the default)."""
    out = {}
    for dtype in ("fp32", "bf16"):
        out[dtype] = tmp_path_factory.mktemp(f"export-{dtype}")
        export_merged(embedded_model_dir, adapter, out[dtype], export_config(dtype), trust_remote_code=False)
    return out


@pytest.fixture(scope="module")
def unmerged(embedded_model_dir: Path, adapter: Path) -> Any:
    """The base with the adapter applied by peft, unmerged, in fp32: what training evaluated."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32),
                                     adapter).eval()


def greedy(model: Any, prompt: list[int]) -> list[int]:
    import torch

    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=NEW_TOKENS)
    return out[0, len(prompt):].tolist()


@pytest.fixture(scope="module")
def plain_run(exports: dict[str, Path], adapter: Path) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-c", PLAIN_TRANSFORMERS, str(exports["fp32"]), str(exports["bf16"]),
                             str(adapter), json.dumps(PROMPTS), str(NEW_TOKENS)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_fp32_export_loads_without_peft_and_gives_the_unmerged_adapters_greedy_tokens(
        plain_run, unmerged, base_model, exports, adapter):
    """Token equality is tested on the fp32 export, the exact merge: its logits differ from the unmerged
    adapter's by float rounding alone (~1e-5), far below any gap between a greedy token and the next
    candidate. The 16-bit export is held to a tolerance instead (next test)."""
    assert plain_run["dtypes"] == ["torch.float32", "torch.bfloat16"]  # each loads in its own dtype
    assert plain_run["adapter_loads"] is False  # the control: an adapter directory does need peft
    for row in plain_run["rows"]:
        expected = greedy(unmerged, row["prompt"])
        assert row["tokens"] == expected
        # The adapter changes every answer, so equal tokens prove that its update is in the weights.
        assert greedy(base_model, row["prompt"]) != expected
    # The prompts came from the export's own chat template: the adapter's, shipped with it.
    assert (exports["fp32"] / "chat_template.jinja").read_text() == (adapter / "chat_template.jinja").read_text()
    assert not (exports["fp32"] / "adapter_config.json").exists()
    assert (exports["fp32"] / "generation_config.json").is_file()


def test_bf16_export_logits_stay_within_bf16_rounding_of_the_unmerged_adapter(
        plain_run, unmerged, base_model, exports, embedded_model_dir):
    """bf16 keeps 8 bits of mantissa, so a 16-bit export's greedy tokens may part from the unmerged
    adapter's wherever two candidates are close (as they did on one of these prompts): token equality
    would test luck. Instead, on the prompts followed by the adapter's own answers (teacher forcing),
    the export's logits must (1) differ from the unmerged fp32 adapter's by no more than rounding the base
    model itself to bf16 moves its logits, (2) be far closer to them than the base's (the adapter is in
    the export), and (3) pick the same next token almost everywhere."""
    import torch
    from transformers import AutoModelForCausalLM

    export = AutoModelForCausalLM.from_pretrained(exports["bf16"]).eval()
    base_bf16 = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.bfloat16).eval()
    error, rounding, effect, agree, positions = 0.0, 0.0, 0.0, 0, 0
    with torch.no_grad():
        for row in plain_run["rows"]:
            ids = torch.tensor([row["prompt"] + row["tokens"]])
            reference = unmerged(ids).logits[0]
            base, exported = base_model(ids).logits[0], export(ids).logits[0].float()
            error += (exported - reference).abs().mean().item()
            rounding += (base_bf16(ids).logits[0].float() - base).abs().mean().item()
            effect += (base - reference).abs().mean().item()
            agree += int((exported.argmax(-1) == reference.argmax(-1)).sum())
            positions += ids.shape[1]
    assert export.dtype == torch.bfloat16
    assert error <= 1.5 * rounding, (error, rounding)
    assert error <= 0.25 * effect, (error, effect)
    assert agree >= 0.9 * positions, (agree, positions)


def readme_example() -> str:
    """The docs' loading example: the python block of docs/export.md."""
    section = (REPO / "docs" / "export.md").read_text()
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readmes_loading_example_runs_without_peft(exports):
    example = readme_example()
    assert example.count('"models/export"') == 2
    code = 'import sys\nsys.modules["peft"] = None\n' + example.replace('"models/export"', repr(str(exports["fp32"])))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip()


def test_export_records_what_it_was_made_from(exports, adapter, embedded_model_dir):
    record = json.loads((exports["bf16"] / PROVENANCE_FILE).read_text())
    weights = "adapter_model.safetensors"
    assert record["adapter"]["sha256"][weights] == file_sha256(adapter / weights)
    assert record["base"]["sha256"]["model.safetensors"] == file_sha256(embedded_model_dir / "model.safetensors")
    assert record["dtype"] == "bfloat16" and record["merged_in"] == "float32" and record["gguf"] is None
    assert record["adapter"]["r"] == make_config().train.lora.r and record["versions"]["peft"]
    assert record["parameters"] > 100_000_000 and record["tokenizer_from"] == str(adapter)


@pytest.fixture(scope="module")
def foreign_adapter(rehearsal_base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An adapter trained for another base: the tiny 2-layer Llama 3 (width 64, not 576)."""
    return lora_adapter(rehearsal_base_dir, tmp_path_factory.mktemp("foreign-adapter"), LORA_B_NOISE)


def test_bad_inputs_fail_before_any_weight_loads_naming_the_problem(
        tmp_path, embedded_model_dir, rehearsal_base_dir, adapter, foreign_adapter):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("not a model")
    cases = [
        (embedded_model_dir, tmp_path / "missing", "adapter .*missing: not found \\(has the train stage run"),
        (embedded_model_dir, tmp_path / "notes", "is not a LoRA adapter directory: it has no adapter_config.json"),
        (embedded_model_dir, embedded_model_dir, "holds a full model \\(config.json\\), not a LoRA adapter"),
        (tmp_path / "no-base", adapter, "base model .*no-base: not found"),
        (tmp_path / "notes", adapter, "base model .*notes has neither config.json nor a .gguf file"),
        # Another width: the same module names, other shapes.
        (embedded_model_dir, foreign_adapter, "does not fit base model .*: it updates 'model.layers.0.mlp.down_proj' "
                                              "as a 128 -> 64 projection, but the base model's is 1536 -> 576"),
        # Another depth: layers the base does not have.
        (rehearsal_base_dir, adapter, "does not fit base model .*: it updates 196 module\\(s\\) that the base model "
                                      "lacks, e.g. 'model.layers.10.mlp.down_proj' \\(trained for another base"),
    ]
    for base, adapter_dir, message in cases:
        with pytest.raises(ModelError, match=message):
            check_export_inputs(base, adapter_dir, trust_remote_code=False)


def test_a_weight_beyond_fp16s_range_stops_an_fp16_export(rehearsal_base_dir):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(rehearsal_base_dir, dtype=torch.float32)
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[0, 0] = 1e5  # fp16 tops out at 65504
    assert cast_checked(model, "bf16").dtype == torch.bfloat16  # bf16 has fp32's range
    with pytest.raises(ModelError, match="1 merged weight tensor\\(s\\) are not finite in fp16, e.g. "
                                         "'model.layers.1.mlp.up_proj.weight'"):
        cast_checked(model, "fp16")


def test_gguf_with_fp32_is_refused_when_params_load():
    with pytest.raises(ConfigError, match="export.gguf: 'q4_k_m' is not allowed; it must be null with export.dtype "
                                          "fp32"):
        export_config("fp32", "q4_k_m")
    with pytest.raises(ConfigError, match="export.gguf: 'q4_k_xl' is not allowed; allowed: not_quantized|"):
        export_config("bf16", "q4_k_xl")


def _gguf_can_run() -> bool:
    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None


@pytest.mark.skipif(_gguf_can_run(), reason="Unsloth and a CUDA GPU are here: the GGUF export can run")
def test_gguf_without_unsloth_says_what_it_needs():
    check_gguf_support(export_config("bf16"))  # null: nothing needed
    with pytest.raises(RuntimeConfigError, match="export.gguf: 'q4_k_m' needs Unsloth on a CUDA GPU \\(.*\\): on a "
                                                 "CUDA host, pip install -r requirements-gpu.txt"):
        check_gguf_support(export_config("bf16", "q4_k_m"))


@pytest.mark.parametrize("case", ["no adapter", "gguf without unsloth"])
def test_the_stage_fails_with_one_line_and_keeps_the_previous_export(case: str, tmp_path: Path, embedded_model_dir,
                                                                      adapter):
    if case == "gguf without unsloth" and _gguf_can_run():
        pytest.skip("Unsloth and a CUDA GPU are here: the GGUF export can run")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["export"]["gguf"] = "q4_k_m" if case == "gguf without unsloth" else None
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    previous = tmp_path / "models" / "export"
    previous.mkdir(parents=True)
    (previous / "model.safetensors").write_bytes(b"the previous export")
    adapter_dir = tmp_path / "no-adapter" if case == "no adapter" else adapter
    result = subprocess.run([sys.executable, str(REPO / "stages" / "export.py"), "--base", str(embedded_model_dir),
                             "--adapter", str(adapter_dir), "--out", "models/export"],
                            cwd=tmp_path, env=stage_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    expected = "not found (has the train stage run?" if case == "no adapter" else "needs Unsloth on a CUDA GPU"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("export: error: ") and expected in lines[0], result.stderr
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["export"]  # no temporary output left
    assert (previous / "model.safetensors").read_bytes() == b"the previous export"
