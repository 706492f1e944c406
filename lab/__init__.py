"""Shared code of the fine-tuning lab's DVC stages: one module per concern."""
