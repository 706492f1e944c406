"""The foundation every other package stands on: the typed params (config, choices, checks, schema, params), errors,
atomic file writes (io), the stages' command lines (cli), Hub ids and local model folders (hub), result provenance,
seeding, the paths dvc.yaml declares, host memory, the run's headline summary and the lab's unit of length (text).

Imports: nothing else of the lab's."""
