"""The router (lab/domains/router.py) with the real all-MiniLM-L6-v2 embeddings: routing on a controlled set of three
clearly separate domains, the fallback below the threshold, the saved folder's round trip and its errors, and the
routing metrics on hand-made routes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lab.core.errors import ConfigError
from lab.domains.router import CENTROIDS_FILE, ROUTER_FILE, Route, Router, prompt_text
from lab.domains.routing import routing_metrics


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


FIT = {
    "cooking": ["How long should I boil an egg for a soft yolk?", "What temperature do I bake bread at?",
                "How do I make a tomato sauce for pasta?", "Can I replace butter with oil in a cake recipe?",
                "How do I keep rice from sticking to the pot?"],
    "code": ["How do I reverse a list in Python?", "Write a Python function that returns the maximum of a list.",
             "How do I read a JSON file in Python?", "What does the zip function do in Python?",
             "How do I sort a dictionary by value in Python?"],
    "math": ["Tom has 12 apples and gives away 5. How many are left?",
             "A train travels 60 km per hour for 3 hours. How far does it go?",
             "Sara buys 4 pens at 3 dollars each. How much does she pay?", "What is 15 percent of 80?",
             "A box holds 6 eggs. How many boxes for 30 eggs?"],
}
HELD_OUT = [("cooking", "How do I fry an onion until it is golden?"),
            ("cooking", "What spices go well in a lentil soup?"),
            ("code", "How do I remove duplicates from a list in Python?"),
            ("code", "How do I open a text file and count its lines in Python?"),
            ("math", "Ben has 3 bags with 7 marbles each. How many marbles does he have?"),
            ("math", "A shirt costs 20 dollars and is 25 percent off. What is the new price?")]
# Near none of the three: the nearest centroid's similarity stays below 0.23 for each (measured: 0.08-0.22),
# while every held-out prompt above scores 0.32 or more with its own domain.
OFF_TOPIC = ["Who painted the Mona Lisa?", "What is the tallest mountain in Europe?",
             "Translate 'good night' into German."]
THRESHOLD = 0.28


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.fit({name: [user(text) for text in texts] for name, texts in FIT.items()}, THRESHOLD)


def test_held_out_prompts_go_to_their_domain_and_off_topic_ones_fall_back(router: Router):
    routes = router.route_many([user(text) for _, text in HELD_OUT] + [user(text) for text in OFF_TOPIC])
    domains = [domain for domain, _ in HELD_OUT]
    assert [route.adapter for route in routes[:len(HELD_OUT)]] == domains
    assert all(not route.fallback and route.similarity >= THRESHOLD for route in routes[:len(HELD_OUT)])
    assert [route.adapter for route in routes[len(HELD_OUT):]] == ["mixed"] * len(OFF_TOPIC)
    assert all(route.fallback and route.similarity < THRESHOLD for route in routes[len(HELD_OUT):])
    # route() answers one conversation with the adapter name, as route_many does.
    assert router.route(user(HELD_OUT[2][1])) == "code" and router.route(user(OFF_TOPIC[0])) == "mixed"
    metrics = routing_metrics(routes, domains + ["unknown"] * len(OFF_TOPIC), [*router.domains, "mixed"])
    assert metrics["per_domain"]["code"]["accuracy"] == 1.0 and metrics["per_domain"]["unknown"]["fallback_rate"] == 1.0


def test_the_threshold_decides_the_fallback(router: Router):
    prompts = [user(text) for _, text in HELD_OUT]
    always = Router(router.domains, router.centroids, threshold=1.0)
    never = Router(router.domains, router.centroids, threshold=-1.0)
    assert {route.adapter for route in always.route_many(prompts)} == {"mixed"}
    assert [route.nearest for route in always.route_many(prompts)] == [domain for domain, _ in HELD_OUT]
    off_topic = never.route_many([user(text) for text in OFF_TOPIC])
    assert not any(route.fallback for route in off_topic) and {route.adapter for route in off_topic} <= set(FIT)


def test_the_latest_turn_is_embedded_first():
    messages = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "reply"},
                {"role": "user", "content": "latest"}]
    assert prompt_text(messages) == "latest\n\nreply\n\nfirst"


def test_save_and_load_round_trip(router: Router, tmp_path: Path):
    router.save(tmp_path / "router")
    loaded = Router.load(tmp_path / "router")
    assert sorted(p.name for p in (tmp_path / "router").iterdir()) == [CENTROIDS_FILE, ROUTER_FILE]
    assert loaded.domains == router.domains and loaded.threshold == THRESHOLD and loaded.fallback == "mixed"
    np.testing.assert_array_equal(loaded.centroids, router.centroids)
    prompts = [user(text) for _, text in HELD_OUT] + [user(text) for text in OFF_TOPIC]
    assert loaded.route_many(prompts) == router.route_many(prompts)


def test_a_missing_or_malformed_router_is_a_clear_error(router: Router, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=f"{ROUTER_FILE}: not found"):
        Router.load(tmp_path / "nowhere")
    router.save(tmp_path / "router")
    meta = json.loads((tmp_path / "router" / ROUTER_FILE).read_text())
    (tmp_path / "router" / ROUTER_FILE).write_text(json.dumps({**meta, "embedding_model": "other/model"}))
    with pytest.raises(ConfigError, match="not a usable router .*other/model"):
        Router.load(tmp_path / "router")
    (tmp_path / "router" / ROUTER_FILE).write_text(json.dumps({**meta, "domains": ["only-one"]}))
    with pytest.raises(ConfigError, match=r"1 domain\(s\) but centroids of shape \(3, 384\)"):
        Router.load(tmp_path / "router")
    (tmp_path / "router" / ROUTER_FILE).write_text(json.dumps(meta))
    np.save(tmp_path / "router" / CENTROIDS_FILE, router.centroids * 2)
    with pytest.raises(ConfigError, match="not unit length"):
        Router.load(tmp_path / "router")
    (tmp_path / "router" / ROUTER_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="not a usable router"):
        Router.load(tmp_path / "router")


def test_routing_metrics_count_right_fallback_and_misrouted():
    def route(adapter: str, nearest: str) -> Route:
        return Route(adapter, nearest, 0.5, adapter == "mixed")

    routes = [route("a", "a"), route("a", "a"), route("mixed", "a"), route("a", "b"), route("b", "b")]
    metrics = routing_metrics(routes, ["a", "a", "a", "b", "b"], ["a", "b", "mixed"])
    assert metrics["accuracy"] == 0.6 and metrics["fallback_rate"] == 0.2 and metrics["misrouted_rate"] == 0.2
    assert metrics["nearest_accuracy"] == 1.0
    assert metrics["per_domain"]["a"] == {"examples": 3, "accuracy": 0.6667, "fallback_rate": 0.3333,
                                          "misrouted_rate": 0.0, "nearest_accuracy": 1.0}
    assert metrics["confusion"] == {"a": {"a": 2, "b": 0, "mixed": 1}, "b": {"a": 1, "b": 1, "mixed": 0}}
    with pytest.raises(ValueError, match="2 routes for 1 known domains"):
        routing_metrics(routes[:2], ["a"], ["a"])
