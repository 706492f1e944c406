"""The lab's expected errors: each ends a stage with one clear line instead of a traceback."""

from __future__ import annotations


class LabError(Exception):
    """A problem the user can fix (a param, the data, the machine); the message says how."""


class ConfigError(LabError, ValueError):
    """A param in params.yaml is missing, unknown or impossible."""


class DataError(LabError, ValueError):
    """The dataset cannot be used as configured; the message says which rows and why."""


class RuntimeConfigError(LabError, RuntimeError):
    """The requested backend, device or quantization cannot run on this machine."""


class ModelError(LabError, ValueError):
    """A model or adapter directory cannot be used as given; the message names it and why."""
