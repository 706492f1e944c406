"""The leaderboard of DVC experiments (board) and its markdown (markdown).

Imports: lab.core, lab.data, lab.model, lab.eval, lab.report."""
