"""User-facing error types (stdlib only, so any module — the torch-free runtime included — can raise them).

Everything a user can cause derives from :class:`EdgebmError`; the CLI prints it as one line and
exits 2. Over-budget results are not errors: they are verdicts (exit 3).

The process exit codes of the ``edgebm`` command are declared here and nowhere else.
"""

from __future__ import annotations

__all__ = [
    "EXIT_OK", "EXIT_BAD_INPUT", "EXIT_OVER_BUDGET", "EXIT_INTERRUPTED", "EXIT_TERMINATED",
    "EdgebmError", "ConfigError", "ProfileError", "ProfileKeyError", "EmulatorConfigError", "DatasetError", "BundleError", "InputError", "GraphError",
    "ExportError", "ModelError", "EmulatorError",
]

#: success; gate verdict pass
EXIT_OK = 0
#: bad input: profile, dataset, bundle, model file, argument (one line on stderr, nothing written)
EXIT_BAD_INPUT = 2
#: over budget: ``export`` with no candidate inside the budget, ``check`` failing the gate
EXIT_OVER_BUDGET = 3
#: interrupted by Ctrl-C (SIGINT): 128 + 2
EXIT_INTERRUPTED = 130
#: terminated by SIGTERM: 128 + 15
EXIT_TERMINATED = 143


class EdgebmError(Exception):
    """Base of every error a user can cause (bad file, bad argument, bad model)."""


class ConfigError(EdgebmError, ValueError):
    """A configuration value (profile key, scenario field, CLI option, recipe step) is invalid.

    ``field`` names the value at fault (e.g. ``"timing.ssb_period_ms"``, ``"--snr-db"``), ``problem`` says what is
    wrong with it and ``fix`` what is allowed; ``where`` optionally names the file it came from. Callers read these
    attributes instead of parsing the message.
    """

    #: how the message names the field (subclasses say "key 'x'" for TOML keys)
    field_label = "{field}"

    def __init__(self, field: str, problem: str, fix: str = "", *, where: str = "") -> None:
        self.field, self.problem, self.fix, self.where = field, problem, fix, where
        label = self.field_label.format(field=field)
        super().__init__((f"{where}: " if where else "") + f"{label}: {problem}" + (f"; {fix}" if fix else ""))

    def __reduce__(self) -> tuple:
        # pickled with its fields, so it crosses process and Ray task boundaries as itself (the default pickles
        # only the message, which __init__ cannot take back)
        import functools

        return (functools.partial(type(self), where=self.where), (self.field, self.problem, self.fix))


class ProfileError(EdgebmError, ValueError):
    """A profile file is missing, unreadable or does not match the schema."""


class ProfileKeyError(ConfigError, ProfileError):
    """A key of a profile file is unknown, missing, of the wrong type or out of range (``where`` = the file)."""

    field_label = "key '{field}'"


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


class EmulatorConfigError(ConfigError, EmulatorError):
    """One emulator setting (``duration_s``, a shift time, ``k_refine``...) is out of range."""
