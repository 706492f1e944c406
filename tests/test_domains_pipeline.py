"""The domain pipeline (pipelines/domains/dvc.yaml) through DVC: its foreach stages follow params.yaml (read from
the sub-directory through `vars`), and a tiny run of the whole pipeline in a lab copy with the real embedded model,
on two domains, writes the adapters, the router, the comparison and the report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from lab.domains.router import Router

from .conftest import REPO
from .pipeline_copy import dvc, make_lab_copy

PIPELINE = "pipelines/domains/dvc.yaml"
# Two of the builtin domains (docs rows stay out of training and eval: any `source` can be a domain), 4 training,
# 2 validation and 2 eval rows each; one optimizer step per domain adapter, two for mixed; 8 new tokens per answer.
TINY = {
    "data": {"builtin": {"packages": ["json", "collections", "statistics", "textwrap", "string"],
                         "max_input_words": 40}, "test_size": 0.3},
    "train": {"batch_size": 2, "grad_accum": 2, "max_seq_length": 128, "eval_steps": 2, "warmup_steps": 0},
    "evaluate": {"max_new_tokens": 8, "batch_size": 4, "semantic_similarity": False},
    "compare": {"bootstrap_resamples": 200},
    "domains": {"names": ["code", "math"], "adapters": ["code", "math", "mixed"], "code_examples": 40,
                "math_examples": 20, "train_examples": 4, "validation_examples": 2, "eval_examples": 2},
}


def stage_names(root: Path) -> list[str]:
    return [line.split()[0].split(":", 1)[1] for line in dvc("stage", "list", PIPELINE, cwd=root).stdout.splitlines()]


def test_the_foreach_stages_follow_the_root_params():
    adapters = yaml.safe_load((REPO / "params.yaml").read_text())["domains"]["adapters"]
    names = stage_names(REPO)
    assert [n for n in names if n.startswith("domains_train@")] == [f"domains_train@{a}" for a in adapters]
    assert [n for n in names if n.startswith("domains_evaluate@")] == [f"domains_evaluate@{a}" for a in adapters]
    assert {"domains_prepare", "domains_evaluate_base", "domains_router", "domains_evaluate_routed",
            "domains_report"} <= set(names)


@pytest.fixture(scope="module")
def lab_copy(tmp_path_factory: pytest.TempPathFactory, embedded_model_dir: Path) -> Path:
    """A lab copy whose root base_model stage is done: the session's converted base model (what that stage writes),
    committed as its result, so that the run below spends its time on the domain pipeline's own stages."""
    root = make_lab_copy(tmp_path_factory.mktemp("domains-lab"), TINY, extra=("pipelines",))
    shutil.copytree(embedded_model_dir, root / "models" / "base")
    dvc("commit", "-f", "base_model", cwd=root)
    return root


def test_tiny_domain_pipeline_end_to_end(lab_copy: Path):
    assert stage_names(lab_copy)[1:4] == ["domains_train@code", "domains_train@math", "domains_train@mixed"]
    assert "Running stage 'base_model'" not in dvc("repro", PIPELINE, cwd=lab_copy).stdout
    metrics = lab_copy / "metrics" / "domains"
    data = json.loads((metrics / "data.json").read_text())
    assert data["adapters"]["mixed"] == {"train": 8, "validation": 4, "eval": 4}
    for adapter in ("code", "math", "mixed"):
        assert (lab_copy / "models" / "domains" / adapter / "adapter_model.safetensors").is_file()
    assert json.loads((metrics / "train" / "mixed.json").read_text())["steps"] == 2
    routed = [json.loads(line) for line in (metrics / "predictions" / "routed.jsonl").read_text().splitlines()]
    assert [r["source"] for r in routed] == ["code", "code", "math", "math"]
    assert all(r["route"]["adapter"] in ("code", "math", "mixed") for r in routed)
    router = Router.load(lab_copy / "models" / "domains" / "router")
    assert router.domains == ["code", "math"] and router.route(routed[2]["input"]) == routed[2]["route"]["adapter"]
    summary = json.loads((metrics / "summary.json").read_text())
    assert set(summary["rougeL"]) == {"code", "math", "routed"} and set(summary["router"]) == {"accuracy",
                                                                                              "fallback_rate"}
    comparison = json.loads((metrics / "comparison.json").read_text())
    report = (metrics / "report.md").read_text()
    code = comparison["domains"]["code"]
    assert f"| code | 2 | ROUGE-L | {code['means']['base']['rougeL']:.4f} | {code['means']['mixed']['rougeL']:.4f} |" \
        in report
    assert "## Router" in report and "## Routed system vs the mixed adapter" in report
    assert "Stage 'pipelines/domains/dvc.yaml:domains_report' didn't change" in dvc(
        "repro", PIPELINE, cwd=lab_copy).stdout
    # The router's threshold (read from the root params.yaml) changes the router stage only; the routed evaluation
    # and the report follow from its outputs.
    params = yaml.safe_load((lab_copy / "params.yaml").read_text())
    params["domains"]["router_threshold"] = 1.0
    (lab_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(dvc("status", "--json", PIPELINE, cwd=lab_copy).stdout)
    assert status == {f"{PIPELINE}:domains_router": [
        {"changed deps": {"params.yaml": {"domains.router_threshold": "modified"}}}]}
