"""Device profiles: what a class of UE can afford.

A profile is a TOML file (``profiles/<name>.toml``, shipped inside the wheel as
``edgebm/_profiles``) with the sections and keys of :data:`SCHEMA`. Loading validates
every key: an unknown key, a missing key, a wrong type or an out-of-range value raises
:class:`ProfileError` whose message names the file and the key.

Units are in the key names: ``_ms`` milliseconds, ``_kib`` KiB (1024 bytes), ``_gflops``
GFLOP/s, ``_gbs`` GB/s, ``max_mflops`` MFLOPs per inference (1 multiply-add = 2 FLOPs).
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, published as tomli (declared in pyproject for < 3.11)
    import tomli as tomllib

from .errors import ProfileError, ProfileKeyError

__all__ = [
    "DeviceProfile",
    "ProfileError",
    "ProfileKeyError",
    "SSB_PERIODS_MS",
    "NAME_PATTERN",
    "check_profile_name",
    "PRECISIONS",
    "BACKENDS",
    "FAMILIES",
    "profile_dirs",
    "list_profiles",
    "load_profile",
    "parse_profile",
]

PRECISIONS = ("fp32", "fp16", "int8")
#: SSB burst periods 3GPP allows (TS 38.331 ssb-periodicityServingCell), ms; the emulator imports these
SSB_PERIODS_MS = (5, 10, 20, 40, 80, 160)
#: a profile name is an identifier, never a path: it names the default bundle folder ``export/<name>``
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
BACKENDS = ("onnxruntime", "tensorrt")
#: model families a profile may allow (see edgebm.models)
FAMILIES = (
    "mlp",
    "dscnn",
    "angular",
    "teacher",
    "teacher_pos",
    "gru",
    "svm_linear",
    "svm_rbf",
    "tree",
    "gbt",
    "sgd",
)


@dataclass(frozen=True)
class Timing:
    beam_cycle_ms: float
    inference_budget_ms: float
    ssb_period_ms: float


@dataclass(frozen=True)
class Compute:
    backend: str
    threads: int
    peak_gflops: float
    mem_bandwidth_gbs: float
    slowdown_vs_host: float


@dataclass(frozen=True)
class Limits:
    max_mflops: float
    max_params: int
    max_model_kib: float
    max_peak_ram_kib: float


@dataclass(frozen=True)
class Precision:
    allowed: tuple[str, ...]
    preferred: str


@dataclass(frozen=True)
class Adaptation:
    on_device_update: bool
    max_update_ms: float
    max_trainable_params: int


@dataclass(frozen=True)
class Energy:
    pj_per_flop: float


@dataclass(frozen=True)
class Models:
    families: tuple[str, ...]


@dataclass(frozen=True)
class DeviceProfile:
    """A validated device profile. See :data:`SCHEMA` for units."""

    name: str
    description: str
    timing: Timing
    compute: Compute
    limits: Limits
    precision: Precision
    adaptation: Adaptation
    models: Models
    energy: Energy | None
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (echoed into manifests)."""
        d = asdict(self)
        d.pop("source", None)
        return d


def check_profile_name(name: Any, field: str = "name", where: str = "") -> str:
    """Return ``name`` if it is a valid profile identifier (``^[a-z][a-z0-9_-]{0,63}$``), else raise
    :class:`ProfileKeyError`. Profile names become folder names (``export/<name>``): never a path."""
    if isinstance(name, str) and NAME_PATTERN.match(name):
        return name
    raise ProfileKeyError(
        field, f"{name!r} is not a profile name",
        "use 1-64 characters: a lower-case letter, then lower-case letters, digits, '_' or '-' (no '/', '.', spaces)",
        where=where,
    )


def _name(v: str) -> str | None:
    return None if NAME_PATTERN.match(v) else (
        f"{v!r} is not a profile name; use 1-64 characters: a lower-case letter, then lower-case letters, digits, '_' or '-' "
        "(it names the bundle folder export/<name>: no '/', '.' or spaces)")


def _positive(v: float) -> str | None:
    # TOML has inf and nan: a limit of inf would make every gate line pass
    if not math.isfinite(v):
        return f"must be a finite number > 0, got {v}"
    return None if v > 0 else "must be > 0"


def _choice(options: tuple[Any, ...]) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v in options else f"must be one of {', '.join(str(o) for o in options)}, got {v!r}"

    return check


def _subset(options: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if not v:
            return "must not be empty"
        bad = [x for x in v if x not in options]
        return None if not bad else f"unknown value(s) {bad}; allowed: {', '.join(options)}"

    return check


_NUM = (int, float)
# section -> key -> (python types, required, extra check)
SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], bool, Callable[[Any], str | None] | None]]] = {
    "": {
        "name": ((str,), True, _name),
        "description": ((str,), True, None),
    },
    "timing": {
        "beam_cycle_ms": (_NUM, True, _positive),
        "inference_budget_ms": (_NUM, True, _positive),
        "ssb_period_ms": (_NUM, True, _choice(SSB_PERIODS_MS)),
    },
    "compute": {
        "backend": ((str,), True, _choice(BACKENDS)),
        "threads": ((int,), True, _positive),
        "peak_gflops": (_NUM, True, _positive),
        "mem_bandwidth_gbs": (_NUM, True, _positive),
        "slowdown_vs_host": (_NUM, True, _positive),
    },
    "limits": {
        "max_mflops": (_NUM, True, _positive),
        "max_params": ((int,), True, _positive),
        "max_model_kib": (_NUM, True, _positive),
        "max_peak_ram_kib": (_NUM, True, _positive),
    },
    "precision": {
        "allowed": ((list,), True, _subset(PRECISIONS)),
        "preferred": ((str,), True, _choice(PRECISIONS)),
    },
    "adaptation": {
        "on_device_update": ((bool,), True, None),
        "max_update_ms": (_NUM, True, _positive),
        "max_trainable_params": ((int,), True, _positive),
    },
    "models": {
        "families": ((list,), True, _subset(FAMILIES)),
    },
    "energy": {
        "pj_per_flop": (_NUM, True, _positive),
    },
}
_OPTIONAL_SECTIONS = {"energy"}


def _type_name(types: tuple[type, ...]) -> str:
    if types == _NUM:
        return "number"
    return " or ".join({"str": "string", "int": "integer", "bool": "boolean", "list": "list"}[t.__name__] for t in types)


def parse_profile(data: dict[str, Any], source: str = "<profile>") -> DeviceProfile:
    """Validate a parsed TOML dict and build a :class:`DeviceProfile`.

    Raises :class:`ProfileKeyError` (a :class:`ProfileError` and a :class:`ConfigError`) naming ``source``
    and the dotted key at fault.
    """

    def fail(key: str, why: str) -> ProfileKeyError:
        problem, _, fix = why.partition("; ")
        return ProfileKeyError(key, problem, fix, where=source)

    top_keys = set(SCHEMA[""]) | (set(SCHEMA) - {""})
    for key in data:
        if key not in top_keys:
            raise fail(key, f"unknown key (allowed: {', '.join(sorted(top_keys))})")
    values: dict[str, dict[str, Any]] = {}
    for section, keys in SCHEMA.items():
        if section == "":
            table: Any = data
        else:
            if section not in data:
                if section in _OPTIONAL_SECTIONS:
                    continue
                raise fail(section, "missing section")
            table = data[section]
            if not isinstance(table, dict):
                raise fail(section, "must be a table ([section])")
            for key in table:
                if key not in keys:
                    raise fail(f"{section}.{key}", f"unknown key (allowed: {', '.join(keys)})")
        out: dict[str, Any] = {}
        for key, (types, required, check) in keys.items():
            dotted = f"{section}.{key}" if section else key
            if key not in table:
                if required:
                    raise fail(dotted, "missing")
                continue
            value = table[key]
            # bool is an int subclass in Python: never accept it as a number
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise fail(dotted, f"expected {_type_name(types)}, got {type(value).__name__} {value!r}")
            if check is not None and (why := check(value)) is not None:
                raise fail(dotted, why)
            out[key] = tuple(value) if isinstance(value, list) else value
        values[section] = out

    prec = values["precision"]
    if prec["preferred"] not in prec["allowed"]:
        raise fail("precision.preferred", f"{prec['preferred']!r} is not in precision.allowed")
    timing = values["timing"]
    if timing["inference_budget_ms"] > timing["beam_cycle_ms"]:
        raise fail("timing.inference_budget_ms", "must not exceed timing.beam_cycle_ms")
    return DeviceProfile(
        name=values[""]["name"],
        description=values[""]["description"],
        timing=Timing(**{k: float(v) for k, v in timing.items()}),
        compute=Compute(**values["compute"]),
        limits=Limits(**values["limits"]),
        precision=Precision(**prec),
        adaptation=Adaptation(**values["adaptation"]),
        models=Models(**values["models"]),
        energy=Energy(**values["energy"]) if "energy" in values else None,
        source=source,
    )


def profile_dirs() -> list[Path]:
    """Folders searched for ``<name>.toml``: the repo's ``profiles/`` then the wheel's copy."""
    here = Path(__file__).resolve().parent
    dirs = [here.parent / "profiles", here / "_profiles"]
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


def list_profiles() -> list[str]:
    """Names of the shipped profiles, sorted."""
    names = {p.stem for d in profile_dirs() for p in d.glob("*.toml")}
    return sorted(names)


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """Load a shipped profile by name (``smartphone``) or any TOML file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        if not NAME_PATTERN.match(str(name_or_path)):  # a name is looked up in the profile folders: never a path
            raise ProfileError(
                f"unknown profile {str(name_or_path)!r}: give a shipped profile name ({', '.join(list_profiles())}) "
                "or a path to a .toml file"
            )
        for d in profile_dirs():
            if (d / f"{name_or_path}.toml").is_file():
                path = d / f"{name_or_path}.toml"
                break
        else:
            raise ProfileError(
                f"unknown profile '{name_or_path}' (shipped: {', '.join(list_profiles())}; or give a path to a .toml file)"
            )
    if not path.is_file():
        raise ProfileError(f"{path}: no such profile file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{path}: not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(f"{path}: cannot read: {e}") from None
    profile = parse_profile(data, source=str(path))
    if profile.name != path.stem:
        raise ProfileKeyError(
            "name", f"{profile.name!r} does not match the file name {path.name!r}",
            f"set name = {path.stem!r} or rename the file to {profile.name}.toml", where=str(path),
        )
    return profile
