"""The leaderboard of DVC experiments (board), its markdown (markdown) and the committed snapshot of its
inputs (snapshot).

Imports: lab.core, lab.data, lab.model, lab.eval, lab.report."""
