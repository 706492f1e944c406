"""The report stage: metrics/report.md assembled from the metrics files (build), its tables, data section and plots.

Imports: lab.core, lab.data, lab.model, lab.eval."""
