"""Per-example attention on CUDA (lab.train.attention): the varlen flash route against per-example SDPA, and
through the hf backend against transformers' masked SDPA, on the real embedded model (grouped-query
attention: 9 query heads over 3 key/value heads).

Run on a CUDA machine; skipped without one. No Unsloth here (tests/test_gpu_training.py covers its route).
"""

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

from lab.train.attention import public_varlen, varlen_causal  # noqa: E402

from .conftest import make_config  # noqa: E402
from .helpers import loss_and_grads, packed_batch  # noqa: E402

LENGTHS = [37, 200, 5, 90, 1]
ROUTES = [False] + ([True] if public_varlen() is not None else [])  # aten operators; PyTorch's varlen_attn


def _per_example_reference(query, key, value):
    """fp32 SDPA example by example: what each example's causal attention is."""
    outputs, start = [], 0
    for length in LENGTHS:
        q, k, v = (t[start:start + length].transpose(0, 1).float() for t in (query, key, value))
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        outputs.append(out.transpose(0, 1))
        start += length
    return torch.cat(outputs)


@pytest.mark.parametrize("use_public", ROUTES)
def test_varlen_attention_is_each_examples_causal_attention(use_public):
    generator = torch.Generator(device="cuda").manual_seed(0)
    total = sum(LENGTHS)
    query, key, value = (torch.randn(total, heads, 64, device="cuda", dtype=torch.bfloat16, generator=generator,
                                     requires_grad=True) for heads in (9, 3, 3))
    cu_seqlens = torch.tensor([0, *torch.tensor(LENGTHS).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    out = varlen_causal(query, key, value, cu_seqlens, max(LENGTHS), None, use_public=use_public)
    grad_out = torch.randn(out.shape, device="cuda", dtype=torch.bfloat16, generator=generator)
    grads = torch.autograd.grad(out, (query, key, value), grad_out)
    reference = _per_example_reference(query, key, value)
    reference_grads = torch.autograd.grad(reference, (query, key, value), grad_out.float())
    torch.testing.assert_close(out.float(), reference, atol=2e-2, rtol=2e-2)
    for grad, expected in zip(grads, reference_grads, strict=True):
        torch.testing.assert_close(grad.float(), expected.float(), atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_hf_backend_varlen_gives_the_masked_loss_and_gradients(embedded_model_dir, tokenizer, monkeypatch,
                                                                quantization):
    """The hf backend on a padding-free batch, under bf16 autocast as the trainer runs it (on a 4-bit base
    peft keeps the norms in fp32, so the queries arrive in fp32): train.packed_attention per_example (one
    varlen call a layer, counted) against library (transformers' SDPA under the block-diagonal mask), in
    bf16 tolerance; the same tokens as one sequence (the control) land far from both."""
    import lab.train.attention
    from lab.model.runtime import resolve_runtime
    from lab.train.attention import attention_path
    from lab.train.backends import load_trainable_model

    calls = []
    monkeypatch.setattr(lab.train.attention, "varlen_causal",
                        lambda *args, **kwargs: calls.append(1) or varlen_causal(*args, **kwargs))
    results = {}
    for setting in ("per_example", "library"):
        config = make_config({"train": {"backend": "hf", "quantization": quantization, "packed_attention": setting}})
        runtime = resolve_runtime(config.train)
        model, _ = load_trainable_model(embedded_model_dir, config.training, runtime)
        batch = {key: value.cuda() for key, value in packed_batch(tokenizer).items()}
        with torch.autocast("cuda", dtype=torch.bfloat16):
            results[setting] = loss_and_grads(model, batch)
            results[setting + " path"] = attention_path(model, "hf", "cuda")
            if setting == "library":
                one_sequence = {**batch, "position_ids": torch.arange(batch["input_ids"].shape[1], device="cuda")[None]}
                results["control"] = loss_and_grads(model, one_sequence)
        if setting == "per_example":
            assert len(calls) == model.config.num_hidden_layers  # every layer took the varlen route, once
        del model
        torch.cuda.empty_cache()
    (varlen_loss, varlen_grads), (masked_loss, masked_grads) = results["per_example"], results["library"]
    print(quantization, results["per_example path"], varlen_loss, masked_loss, results["control"][0])
    assert results["per_example path"] == "varlen (flash)"
    assert results["library path"] == "transformers sdpa (masked)"
    assert abs(varlen_loss - masked_loss) < 0.01 * masked_loss
    assert abs(results["control"][0] - masked_loss) > 5 * abs(varlen_loss - masked_loss)
    assert torch.nn.functional.cosine_similarity(varlen_grads.float(), masked_grads.float(), dim=0).item() > 0.99
