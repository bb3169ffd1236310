"""`BundleManifest`: the typed ``manifest.json`` of a bundle (stdlib only).

Written by the export job (through :func:`edgebm.runtime.bundle.write_bundle`) and read by the
runtime, the emulator and ``edgebm evaluate``. :meth:`BundleManifest.from_dict` validates every core
field and names the one at fault; keys this version does not model are kept in ``extra`` and written
back unchanged, so newer writers can add fields without breaking older readers. To add a field: give
it a default here (optional), validate it in ``from_dict``, and it is written by ``to_dict``.

Paths in a manifest are *member names*: relative POSIX paths inside the bundle folder made of plain
components (letters, digits, ``._-``; no ``..``, no leading ``/`` or ``.``, no backslashes). The digest
(:func:`manifest_digest`) is a sha256 over the canonical JSON of the manifest without its
``bundle_digest`` and ``signature`` fields; as ``files`` holds the sha256 of every file, it covers
the whole bundle.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, fields
from typing import Any, Iterator, Mapping

from ..errors import BundleError

__all__ = [
    "BUNDLE_SCHEMA", "MANIFEST_NAME", "TensorSpec", "BundleManifest", "check_member_name", "manifest_digest",
    "canonical_json", "DIGEST_FIELDS",
]

#: bundle layout version; the runtime refuses any other. /2 added ``bundle_digest`` (and optional ``signature``).
BUNDLE_SCHEMA = "edgebm.bundle/2"
MANIFEST_NAME = "manifest.json"
#: fields left out of the digest (the digest itself and the signature over it)
DIGEST_FIELDS = ("bundle_digest", "signature")

_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PROFILE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")  # edgebm.profiles.NAME_PATTERN (kept here: runtime reads no profile code)
_SCORE_KINDS = ("logits", "probabilities")
_VERDICTS = ("pass", "fail")
_PRECISIONS = ("fp32", "fp16", "int8")


def check_member_name(name: Any, field_name: str = "files") -> str:
    """Return ``name`` if it is a safe member path of a bundle, else raise :class:`BundleError`.

    Safe: a relative POSIX path of 1-4 plain components (``model.onnx``, ``c/model.h``): no ``..``,
    no absolute path, no backslash, no hidden (dot) component, no empty component.
    """
    if not isinstance(name, str) or not name:
        raise BundleError(f"manifest field '{field_name}': file name must be a non-empty string, got {name!r}")
    parts = name.split("/")
    if (name.startswith("/") or "\\" in name or "\x00" in name or len(parts) > 4
            or not all(_COMPONENT.match(p) for p in parts) or name == MANIFEST_NAME):
        raise BundleError(
            f"manifest field '{field_name}': {name!r} is not a file inside the bundle folder "
            "(only relative names of letters, digits, '._-' are allowed: no '..', no absolute paths, no backslashes)"
        )
    return name


def canonical_json(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, UTF-8 (NaN written as ``NaN``, as ``json`` does)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode("utf-8")


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """Hex sha256 over the canonical JSON of ``manifest`` without ``bundle_digest`` and ``signature``."""
    body = {k: v for k, v in manifest.items() if k not in DIGEST_FIELDS}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _fail(field_name: str, why: str) -> BundleError:
    return BundleError(f"manifest field '{field_name}': {why}")


def _str(d: Mapping[str, Any], key: str, *, required: bool = True, default: str | None = None) -> str | None:
    if key not in d:
        if required:
            raise _fail(key, "missing")
        return default
    v = d[key]
    if not isinstance(v, str) or not v:
        raise _fail(key, f"must be a non-empty string, got {v!r}")
    return v


def _int(d: Mapping[str, Any], key: str, lo: int, *, required: bool = True, default: int = 0) -> int:
    if key not in d:
        if required:
            raise _fail(key, "missing")
        return default
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise _fail(key, f"must be an integer >= {lo}, got {v!r}")
    return v


def _dict(d: Mapping[str, Any], key: str) -> dict[str, Any]:
    v = d.get(key, {})
    if not isinstance(v, dict):
        raise _fail(key, f"must be a JSON object, got {type(v).__name__}")
    return v


def _choice(d: Mapping[str, Any], key: str, options: tuple[str, ...], *, required: bool = True, default: str = "") -> str:
    v = _str(d, key, required=required, default=default)
    if v not in options:
        raise _fail(key, f"must be one of {', '.join(options)}, got {v!r}")
    return v  # type: ignore[return-value]


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: ``shape`` holds ints (fixed) and strings (named dynamic axes)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"
    units: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "TensorSpec":
        if not isinstance(d, dict):
            raise _fail(where, f"must be an object {{name, shape, dtype}}, got {type(d).__name__}")
        name = d.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(f"{where}.name", f"must be a non-empty string, got {name!r}")
        shape = d.get("shape")
        if (not isinstance(shape, list) or not shape
                or not all((isinstance(s, int) and not isinstance(s, bool) and s >= 1) or (isinstance(s, str) and s) for s in shape)):
            raise _fail(f"{where}.shape", f"must be a non-empty list of positive integers or axis names, got {shape!r}")
        dtype = d.get("dtype", "float32")
        if not isinstance(dtype, str):
            raise _fail(f"{where}.dtype", f"must be a string, got {dtype!r}")
        units = d.get("units")
        if units is not None and not isinstance(units, str):
            raise _fail(f"{where}.units", f"must be a string, got {units!r}")
        extra = {k: v for k, v in d.items() if k not in ("name", "shape", "dtype", "units")}
        return cls(name, tuple(shape), dtype, units, extra)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.units is not None:
            d["units"] = self.units
        return {**d, **self.extra}

    @property
    def last_dim(self) -> int | None:
        """Size of the last axis when fixed, else None."""
        s = self.shape[-1]
        return s if isinstance(s, int) else None


@dataclass(frozen=True)
class BundleManifest:
    """A validated ``manifest.json``. Core fields are typed; anything else is kept in ``extra``.

    Reading old code's ``manifest["key"]`` / ``manifest.get("key")`` still works (a read-only mapping
    view over :meth:`to_dict`'s keys), so code written against the plain-dict manifest keeps running;
    new code uses attributes.
    """

    schema: str
    edgebm_version: str
    profile: str
    family: str
    model_file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    score_output: str
    score_kind: str  # "logits" or "probabilities"
    n_beams_a: int
    n_beams_b: int
    verdict: str  # "pass" or "fail" (written with --force)
    files: dict[str, str]  # member name -> sha256 hex
    precision: str = "fp32"
    threads: int = 1
    feature_output: str | None = None
    head_file: str | None = None
    head_version: int = 0
    adapted: bool = False
    codebook: dict[str, Any] = field(default_factory=dict)  # {"file": "codebook.npz", ...}
    profile_config: dict[str, Any] = field(default_factory=dict)  # DeviceProfile.to_dict() of the target
    metrics_heldout: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    tensorrt: dict[str, Any] | None = None
    functionality: dict[str, Any] | None = None  # where the bundle applies (edgebm.runtime.functionality)
    bundle_digest: str | None = None
    signature: dict[str, Any] | None = None
    # the export recipe (export/README.md): the teacher it distilled from, the steps that made the model, the rule that chose it
    teacher: dict[str, Any] | None = None  # {family, mflops, params, top1_val, top1_test, ...}
    lineage: list[dict[str, Any]] = field(default_factory=list)  # [{step, name, from, settings, top1_val, mflops, params}]
    selection: dict[str, Any] | None = None  # {split: "val", rule, tolerance, ...}
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not model, kept verbatim

    # -- reading ---------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Any) -> "BundleManifest":
        """Validate a parsed ``manifest.json``; :class:`BundleError` names the field at fault."""
        if not isinstance(d, dict):
            raise BundleError(f"manifest must be a JSON object, got {type(d).__name__}")
        schema = d.get("schema")
        if schema != BUNDLE_SCHEMA:
            hint = " (written by an older edgebm: export it again)" if isinstance(schema, str) and schema.startswith("edgebm.bundle/") else ""
            raise _fail("schema", f"bundle schema {schema!r}, this runtime reads {BUNDLE_SCHEMA!r}{hint}")
        files = d.get("files")
        if not isinstance(files, dict):
            raise _fail("files", f"must be an object {{file name: sha256}}, got {type(files).__name__}")
        for name, sha in files.items():
            check_member_name(name, "files")
            if not isinstance(sha, str) or not _SHA256.match(sha):
                raise _fail(f"files.{name}", f"must be a 64-character lower-case hex sha256, got {sha!r}")

        def member(key: str, value: Any, required: bool = True) -> str | None:
            if value is None and not required:
                return None
            check_member_name(value, key)
            if value not in files:
                raise _fail(key, f"{value!r} is not listed in 'files' (every file the runtime reads must be listed and hashed)")
            return value

        for key in ("inputs", "outputs"):
            v = d.get(key)
            if not isinstance(v, list) or not v:
                raise _fail(key, f"must be a non-empty list of {{name, shape, dtype}} objects, got {v!r}")
        inputs = tuple(TensorSpec.from_dict(x, f"inputs[{i}]") for i, x in enumerate(d["inputs"]))
        outputs = tuple(TensorSpec.from_dict(x, f"outputs[{i}]") for i, x in enumerate(d["outputs"]))
        out_names = [o.name for o in outputs]
        if len(set(out_names)) != len(out_names):
            raise _fail("outputs", f"output names must be unique, got {out_names}")
        n_a = _int(d, "n_beams_a", 1)
        n_b = _int(d, "n_beams_b", 1, required=False, default=inputs[0].last_dim or 0)
        if inputs[0].last_dim is None or inputs[0].last_dim != n_b:
            raise _fail("inputs[0].shape", f"last axis must be |Set B| = n_beams_b = {n_b}, got {list(inputs[0].shape)}")
        score_output = _str(d, "score_output")
        if score_output not in out_names:
            raise _fail("score_output", f"{score_output!r} is not one of the outputs ({', '.join(out_names)})")
        score_spec = outputs[out_names.index(score_output)]
        if score_spec.last_dim is not None and score_spec.last_dim != n_a:
            raise _fail("score_output", f"output {score_output!r} has {score_spec.last_dim} scores, n_beams_a is {n_a}")
        feature_output = d.get("feature_output")
        if feature_output is not None and (feature_output not in out_names or feature_output == score_output):
            raise _fail("feature_output", f"{feature_output!r} must be one of the outputs other than score_output ({', '.join(out_names)})")
        adapted = d.get("adapted", False)
        if not isinstance(adapted, bool):
            raise _fail("adapted", f"must be true or false, got {adapted!r}")
        if d.get("head_file") is not None and feature_output is None:
            raise _fail("head_file", "a head file needs a feature_output to multiply (the penultimate features)")
        if adapted and d.get("head_file") is None:
            raise _fail("adapted", "an adapted bundle must ship its head (head_file)")
        codebook = _dict(d, "codebook")
        if "file" in codebook:
            member("codebook.file", codebook["file"])
        tensorrt = d.get("tensorrt")
        if tensorrt is not None:
            if not isinstance(tensorrt, dict):
                raise _fail("tensorrt", f"must be a JSON object, got {type(tensorrt).__name__}")
            if tensorrt.get("plan_file") is not None:
                member("tensorrt.plan_file", tensorrt["plan_file"])
        functionality = d.get("functionality")
        if functionality is not None:
            from .functionality import validate_block  # stdlib-only at import

            try:
                validate_block(functionality)
            except ValueError as e:
                raise _fail("functionality", str(e)) from None
        digest = d.get("bundle_digest")
        if digest is not None and (not isinstance(digest, str) or not _SHA256.match(digest)):
            raise _fail("bundle_digest", f"must be a 64-character lower-case hex sha256, got {digest!r}")
        signature = d.get("signature")
        if signature is not None:
            if (not isinstance(signature, dict) or signature.get("algorithm") != "ed25519"
                    or not all(isinstance(signature.get(k), str) and signature.get(k) for k in ("key_id", "value"))):
                raise _fail("signature", "must be an object {algorithm: 'ed25519', key_id, value} (see edgebm sign)")
        teacher, selection = d.get("teacher"), d.get("selection")
        for key, v in (("teacher", teacher), ("selection", selection)):
            if v is not None and not isinstance(v, dict):
                raise _fail(key, f"must be a JSON object or absent, got {type(v).__name__}")
        lineage = d.get("lineage", [])
        if not isinstance(lineage, list) or not all(isinstance(s, dict) and isinstance(s.get("step"), str) for s in lineage):
            raise _fail("lineage", "must be a list of {step, name, from, settings, top1_val, mflops, params} objects")
        profile = _str(d, "profile")
        if not _PROFILE.match(profile):  # type: ignore[arg-type]
            raise _fail("profile", f"{profile!r} is not a profile name (lower-case letters, digits, '_', '-')")
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(
            schema=schema,
            edgebm_version=_str(d, "edgebm_version"),  # type: ignore[arg-type]
            profile=profile,  # type: ignore[arg-type]
            family=_str(d, "family"),  # type: ignore[arg-type]
            model_file=member("model_file", d.get("model_file")),  # type: ignore[arg-type]
            inputs=inputs,
            outputs=outputs,
            score_output=score_output,  # type: ignore[arg-type]
            score_kind=_choice(d, "score_kind", _SCORE_KINDS),
            n_beams_a=n_a,
            n_beams_b=n_b,
            verdict=_choice(d, "verdict", _VERDICTS),
            files=dict(files),
            precision=_choice(d, "precision", _PRECISIONS, required=False, default="fp32"),
            threads=_int(d, "threads", 1, required=False, default=1),
            feature_output=feature_output,
            head_file=member("head_file", d.get("head_file"), required=False),
            head_version=_int(d, "head_version", 0, required=False, default=0),
            adapted=adapted,
            codebook=codebook,
            profile_config=_dict(d, "profile_config"),
            metrics_heldout=_dict(d, "metrics_heldout"),
            dataset=_dict(d, "dataset"),
            tensorrt=tensorrt,
            functionality=functionality,
            bundle_digest=digest,
            signature=signature,
            teacher=teacher,
            lineage=list(lineage),
            selection=selection,
            extra={k: v for k, v in d.items() if k not in known},
        )

    # -- writing ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to ``manifest.json`` (core fields first, then ``extra``)."""
        d: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            if v is None and f.name in _OPTIONAL_NONE:
                continue
            if f.name in ("inputs", "outputs"):
                v = [t.to_dict() for t in v]
            d[f.name] = v
        for k, v in self.extra.items():
            d.setdefault(k, v)
        return d

    def digest(self) -> str:
        """:func:`manifest_digest` of this manifest as written."""
        return manifest_digest(self.to_dict())

    # -- conveniences ----------------------------------------------------------------------------
    @property
    def feature_dim(self) -> int | None:
        """Width F of the feature output (what the head's W (A, F) multiplies), when fixed."""
        if self.feature_output is None:
            return None
        return next(o.last_dim for o in self.outputs if o.name == self.feature_output)

    @property
    def codebook_file(self) -> str | None:
        return self.codebook.get("file")

    # read-only mapping view for code written against the plain-dict manifest
    def __getitem__(self, key: str) -> Any:
        if key != "extra" and key in _FIELD_NAMES:
            v = getattr(self, key)
            if v is None and key in _OPTIONAL_NONE:
                raise KeyError(key)
            return [t.to_dict() for t in v] if key in ("inputs", "outputs") else v
        return self.extra[key]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _MISSING) is not _MISSING

    def keys(self) -> Iterator[str]:
        return iter(self.to_dict())


_MISSING = object()
_FIELD_NAMES = {f.name for f in fields(BundleManifest)}
_OPTIONAL_NONE = {"feature_output", "head_file", "tensorrt", "functionality", "bundle_digest", "signature", "teacher", "selection"}
