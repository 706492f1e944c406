"""The builtin dataset, built offline from installed packages: docstring tasks, code and math tasks.

Imports: lab.core and the rest of lab.data."""
