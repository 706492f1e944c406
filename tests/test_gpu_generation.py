"""The CUDA-graph decoder on the real embedded model, against transformers' generate.

Run on a CUDA machine; skipped without one. No Unsloth here: the evaluate stage never imports it.
"""

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

from .helpers import CONVERSATIONS  # noqa: E402


def test_cuda_graph_decoder_gives_generates_tokens(embedded_model_dir):
    """The static decoder replayed as a CUDA graph against transformers' generate, bf16, batched."""
    from lab.eval.generation import generate
    from lab.model.loading import load_for_inference

    model, tokenizer = load_for_inference(embedded_model_dir, None, "cuda")
    prompts = [c[:-1] for c in CONVERSATIONS] * 4
    static, ran = generate(model, tokenizer, prompts, batch_size=12, max_new_tokens=48, max_input_tokens=1024,
                           decode="static", cuda_graph=True)
    reference, _ = generate(model, tokenizer, prompts, batch_size=12, max_new_tokens=48, max_input_tokens=1024,
                            decode="generate", cuda_graph=True)
    assert ran["decode_steps"] == "cuda_graph"
    assert [s["prediction"] for s in static] == [r["prediction"] for r in reference]


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_a_finetuned_model_runs_on_the_base_quantized_as_in_training(embedded_model_dir, tmp_path, quantization):
    """evaluate.finetuned_base: as_trained: the base in bitsandbytes k-bit layers, the adapter unmerged on top.
    A fresh LoRA adapter (B = 0) adds nothing, so its greedy tokens equal the k-bit base's own."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lab.eval.generation import generate
    from lab.model.loading import load_for_inference

    adapter = tmp_path / "adapter"
    fresh = get_peft_model(AutoModelForCausalLM.from_pretrained(embedded_model_dir),
                           LoraConfig(r=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    fresh.save_pretrained(adapter)
    tuned, tokenizer = load_for_inference(embedded_model_dir, adapter, "cuda", quantization)
    base, _ = load_for_inference(embedded_model_dir, None, "cuda", quantization)
    layer = tuned.base_model.model.model.layers[0].self_attn.q_proj
    assert type(layer.base_layer).__name__ == {"4bit": "Linear4bit", "8bit": "Linear8bitLt"}[quantization]
    prompts = [c[:-1] for c in CONVERSATIONS]
    outputs = [generate(model, tokenizer, prompts, batch_size=3, max_new_tokens=24, max_input_tokens=1024,
                        decode="auto", cuda_graph=True)[0] for model in (tuned, base)]
    assert [o["prediction"] for o in outputs[0]] == [o["prediction"] for o in outputs[1]]
