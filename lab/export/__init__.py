"""The optional export pipeline (pipelines/export): the adapter merged into the base (merged) and GGUF files (gguf).

Imports: lab.core, lab.data, lab.model."""
