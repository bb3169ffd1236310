"""User-facing error types (stdlib only, so any module — the torch-free runtime included — can raise them).

Everything a user can cause derives from :class:`EdgebmError`; the CLI prints it as one line and
exits 2. Over-budget results are not errors: they are verdicts (exit 3).
"""

from __future__ import annotations

__all__ = [
    "EdgebmError", "ConfigError", "ProfileError", "DatasetError", "BundleError", "InputError", "GraphError",
    "ExportError", "ModelError", "EmulatorError",
]


class EdgebmError(Exception):
    """Base of every error a user can cause (bad file, bad argument, bad model)."""


class ConfigError(EdgebmError, ValueError):
    """A configuration value (profile key, scenario field, CLI option, recipe step) is invalid.

    ``field`` names the value at fault (e.g. ``"timing.ssb_period_ms"``, ``"--snr-db"``), ``problem`` says what is
    wrong with it and ``fix`` what is allowed; callers read these attributes instead of parsing the message.
    """

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field, self.problem, self.fix = field, problem, fix
        super().__init__(f"{field}: {problem}" + (f"; {fix}" if fix else ""))


class ProfileError(EdgebmError, ValueError):
    """A profile file is missing, unreadable or does not match the schema."""


class DatasetError(EdgebmError, ValueError):
    """A dataset or path-table file is missing, unreadable or does not match its schema."""


class BundleError(EdgebmError, ValueError):
    """A bundle is missing, tampered with, or of a schema this runtime does not read."""


class InputError(EdgebmError, ValueError):
    """Inputs handed to the predictor have the wrong shape, non-finite values or the wrong units."""


class GraphError(EdgebmError, ValueError):
    """An ONNX file cannot be read, or holds ops the counter cannot size."""


class ExportError(EdgebmError, RuntimeError):
    """A model could not be exported, or the exported graph disagrees with its source."""


class ModelError(EdgebmError, ValueError):
    """Unknown model family, incompatible data, or an unreadable run folder."""


class EmulatorError(EdgebmError, ValueError):
    """Bad emulator configuration (shift spec, timing, bundle/scenario mismatch)."""
