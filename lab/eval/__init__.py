"""Evaluation: greedy generation (generation, and the static-cache decoder with its span attention), scoring
(ROUGE, semantic similarity, format metrics) and the paired statistics of the compare stage.

Imports: lab.core, lab.data, lab.model."""
