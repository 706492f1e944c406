"""Routing a conversation to its domain's adapter: the nearest domain centroid of all-MiniLM-L6-v2 sentence
embeddings of the prompt (the conversation before the answer to come), by cosine similarity. A prompt whose
nearest centroid is less similar than the threshold belongs to no domain clearly enough, and goes to the mixed
adapter, which was trained on every domain.

    router = Router.load("models/domains/router")
    adapter = router.route(messages)     # "docs", "code", "math" or "mixed"

A router is a folder of two small files: router.json (the domains in centroid order, the threshold, the fallback
adapter, the embedding model) and centroids.npy (one unit-length row per domain).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lab.core.config import MIXED_ADAPTER
from lab.core.errors import ConfigError
from lab.core.io import atomic_dir, atomic_open, write_json
from lab.eval.semantic import DEFAULT_BATCH_SIZE, EMBEDDING_MODEL, load_embedding_model

ROUTER_FILE = "router.json"
CENTROIDS_FILE = "centroids.npy"

Messages = Sequence[Mapping[str, str]]


def prompt_text(messages: Messages) -> str:
    """The text the router embeds: the turns newest first. The embedding model reads only its first 256 word
    pieces, so a long history (or pasted documentation) must not push the latest request out of view."""
    return "\n\n".join(str(message["content"]) for message in reversed(messages))


def embed_prompts(conversations: Sequence[Messages], device: str | None = None) -> np.ndarray:
    """Unit-length embeddings of the prompts, one row each (float64)."""
    model = load_embedding_model(device)
    embeddings = model.encode([prompt_text(messages) for messages in conversations], batch_size=DEFAULT_BATCH_SIZE,
                              normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(embeddings, dtype=np.float64).reshape(len(conversations), -1)


@dataclass(frozen=True)
class Route:
    """Where one prompt went: the adapter, the nearest domain and its similarity, and whether it fell back."""
    adapter: str
    nearest: str
    similarity: float
    fallback: bool

    def to_dict(self) -> dict[str, Any]:
        return {"adapter": self.adapter, "nearest": self.nearest, "similarity": round(self.similarity, 6),
                "fallback": self.fallback}


class Router:
    """Nearest-centroid routing over unit-length sentence embeddings, with a fallback adapter below a threshold."""

    def __init__(self, domains: Sequence[str], centroids: np.ndarray, threshold: float,
                 fallback: str = MIXED_ADAPTER) -> None:
        centroids = np.asarray(centroids, dtype=np.float64)
        if centroids.ndim != 2 or centroids.shape[0] != len(domains) or not domains:
            raise ValueError(f"{len(domains)} domain(s) but centroids of shape {centroids.shape}")
        if not np.allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-6):
            raise ValueError("the centroids are not unit length (cosine similarity is their dot product)")
        self.domains = list(domains)
        self.centroids = centroids
        self.threshold = float(threshold)
        self.fallback = fallback

    @classmethod
    def fit(cls, prompts: Mapping[str, Sequence[Messages]], threshold: float, fallback: str = MIXED_ADAPTER,
            device: str | None = None) -> Router:
        """Each domain's centroid: the normalised mean of its prompts' unit embeddings (`prompts`: domain ->
        the conversations before their answers, e.g. its training rows' histories)."""
        empty = sorted(name for name, rows in prompts.items() if not rows)
        if empty or not prompts:
            raise ValueError(f"a router needs prompts for every domain; none for {empty or 'any domain'}")
        return cls.from_embeddings({name: embed_prompts(rows, device) for name, rows in prompts.items()}, threshold,
                                   fallback)

    @classmethod
    def from_embeddings(cls, embeddings: Mapping[str, np.ndarray], threshold: float,
                        fallback: str = MIXED_ADAPTER) -> Router:
        """`fit` from each domain's prompt embeddings (unit rows, as `embed_prompts` gives them)."""
        means = np.stack([rows.mean(axis=0) for rows in embeddings.values()])
        return cls(list(embeddings), means / np.linalg.norm(means, axis=1, keepdims=True), threshold, fallback)

    def similarities(self, conversations: Sequence[Messages]) -> np.ndarray:
        """Cosine similarity of each prompt to each domain centroid (prompts x domains)."""
        if not conversations:
            return np.zeros((0, len(self.domains)))
        return embed_prompts(conversations) @ self.centroids.T

    def route_many(self, conversations: Sequence[Messages]) -> list[Route]:
        """Each prompt's route: its nearest domain's adapter, or the fallback when that similarity is below the
        threshold (prompts embedded in batches: faster than one route() each)."""
        return self.routes_from_similarities(self.similarities(conversations))

    def routes_from_similarities(self, similarities: np.ndarray) -> list[Route]:
        """The routes of prompts whose similarities to the centroids (prompts x domains) are known."""
        routes = []
        for row in similarities:
            best = int(np.argmax(row))
            similarity = float(row[best])
            fallback = similarity < self.threshold
            routes.append(Route(self.fallback if fallback else self.domains[best], self.domains[best], similarity,
                                fallback))
        return routes

    def route(self, messages: Messages) -> str:
        """The adapter name for one conversation (its history before the answer to come)."""
        return self.route_many([messages])[0].adapter

    def save(self, path: Path | str) -> None:
        """The router folder at `path`, written whole or not at all."""
        with atomic_dir(path) as folder:
            write_json(folder / ROUTER_FILE, {"domains": self.domains, "threshold": self.threshold,
                                              "fallback": self.fallback, "embedding_model": EMBEDDING_MODEL,
                                              "similarity": "cosine", "centroids": CENTROIDS_FILE})
            with atomic_open(folder / CENTROIDS_FILE, "wb") as handle:
                np.save(handle, self.centroids, allow_pickle=False)

    @classmethod
    def load(cls, path: Path | str) -> Router:
        """A router saved by `save`; a missing file is a FileNotFoundError and a malformed one a ConfigError, each
        naming the file."""
        path = Path(path)
        meta_path, centroids_path = path / ROUTER_FILE, path / CENTROIDS_FILE
        for file in (meta_path, centroids_path):
            if not file.is_file():
                raise FileNotFoundError(f"{file}: not found (a router is written by `dvc repro "
                                        "pipelines/domains/dvc.yaml`, stage domains_router)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            centroids = np.load(centroids_path, allow_pickle=False)
            if meta["embedding_model"] != EMBEDDING_MODEL:
                raise ValueError(f"fitted with {meta['embedding_model']}, not the lab's {EMBEDDING_MODEL}")
            return cls(meta["domains"], centroids, meta["threshold"], meta["fallback"])
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"{path}: not a usable router ({type(error).__name__}: {error})") from None

