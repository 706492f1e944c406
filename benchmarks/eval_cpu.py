"""Generation time of the evaluate stage on CPU: batch sizes, and decode attention over each row's own
span of the KV cache against the whole cache.

usage: python benchmarks/eval_cpu.py [--batch-sizes 16 64] [--rounds 2] [--out benchmarks/results/eval_cpu.json]

The fine-tuned model as evaluate_finetuned loads it (its base with the adapter merged, paths from
dvc.yaml) greedily continues the eval sample with params.yaml's evaluate settings except the batch
size: run `dvc repro` first. Variants, in one process, alternating round by round so that a machine
whose speed drifts weighs on all alike:

- `spans`: the static decoder as the stage runs it, each run of rows attending over only the cache
  slots its prompts and the tokens so far fill (lab/eval/span_attention.py);
- `whole_cache`: every decode step attending over the batch's whole cache (as before spans).

Every variant must produce the same predictions; the result records whether they did.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lab.core.io import write_json
from lab.core.provenance import result_header

VARIANTS = ("spans", "whole_cache")


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    """`whole_cache` makes every eager decode step pass no spans (lab.eval.decoder's _step then
    attends over the whole cache); `spans` leaves the decoder as it is."""
    import lab.eval.decoder as static_decoder

    shipped = static_decoder.DecodeSpans
    if name == "whole_cache":
        static_decoder.DecodeSpans = lambda runs, end: None
    try:
        yield
    finally:
        static_decoder.DecodeSpans = shipped


def measure(batch_sizes: list[int], rounds: int) -> dict[str, Any]:
    """Each (variant, batch size) generation `rounds` times: seconds per run, new tokens, and
    whether all predictions matched the first run's."""
    from lab.core.host_memory import keep_freed_memory
    from lab.core.io import read_jsonl
    from lab.core.params import load_config
    from lab.core.pipeline_files import stage_flag_path
    from lab.eval.generation import generate
    from lab.model.loading import load_for_inference

    keep_freed_memory()  # as the evaluate stage does
    ev = load_config().evaluate
    base, adapter, eval_file = (stage_flag_path("evaluate_finetuned", flag)
                                for flag in ("--base", "--adapter", "--eval-file"))
    model, tokenizer = load_for_inference(base, adapter, "cpu")
    conversations = [example["input"] for example in read_jsonl(eval_file)]
    runs: dict[str, list[float]] = {}
    reference, same, new_tokens = None, True, None
    for _ in range(rounds):
        for batch_size in batch_sizes:
            for name in VARIANTS:
                with variant(name):
                    started = time.perf_counter()
                    outputs, timing = generate(model, tokenizer, conversations, batch_size, ev.max_new_tokens,
                                               ev.max_input_tokens, ev.decode, ev.cuda_graph)
                    seconds = time.perf_counter() - started
                predictions = [output["prediction"] for output in outputs]
                reference = reference or predictions
                same = same and predictions == reference
                new_tokens = timing["new_tokens"]
                runs.setdefault(f"{name}@{batch_size}", []).append(round(seconds, 1))
                print(f"{name} batch {batch_size}: {seconds:.1f} s", flush=True)
    return {"examples": len(conversations), "new_tokens": new_tokens, "max_new_tokens": ev.max_new_tokens,
            "seconds": runs, "median_seconds": {key: statistics.median(values) for key, values in runs.items()},
            "identical_predictions": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/eval_cpu.json"))
    args = parser.parse_args()
    header = result_header(__file__, "CPU generation of the eval sample by the fine-tuned model: batch sizes, and "
                                     "decode attention over each row's span against the whole cache")
    write_json(args.out, {**header, **measure(args.batch_sizes, args.rounds)})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
