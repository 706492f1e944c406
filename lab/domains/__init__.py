"""The optional per-domain pipeline (pipelines/domains): the domain splits, the router and its fit, the routed
evaluation, the comparison of adapters and its report.

Imports: lab.core, lab.data, lab.model, lab.train, lab.eval, lab.report."""
