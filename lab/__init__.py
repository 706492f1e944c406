"""Shared code of the fine-tuning lab's DVC stages, one sub-package per concern, layered from the bottom up:

    core                      params, errors, files, provenance
    data, model               datasets to splits; the model as loaded and run
    train, eval               fine-tuning; generation, scoring, statistics
    report, export, chat      the report stage; merged and GGUF exports; the chat CLI
    domains, leaderboard      per-domain adapters and the router; the leaderboard of experiments

A module imports only from its own package and from packages on lower lines (tests/test_layers.py)."""
