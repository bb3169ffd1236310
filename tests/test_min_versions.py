"""The declared dependency floors are the tested versions: what is installed satisfies pyproject.toml, each
installed dependency supports the declared minimum Python, and the APIs edgebm relies on exist."""

from __future__ import annotations

import importlib.metadata as md
import inspect
import sys
from pathlib import Path

import pytest

packaging = pytest.importorskip("packaging")
from packaging.requirements import Requirement  # noqa: E402
from packaging.specifiers import SpecifierSet  # noqa: E402
from packaging.version import Version  # noqa: E402

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _project() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]


def _requirements() -> list[Requirement]:
    reqs = [Requirement(r) for r in _project()["dependencies"]]
    return [r for r in reqs if r.marker is None or r.marker.evaluate()]


def _min_python() -> Version:
    spec = SpecifierSet(_project()["requires-python"])
    floors = [Version(s.version) for s in spec if s.operator in (">=", "==")]
    assert floors, "requires-python needs a lower bound"
    return max(floors)


@pytest.mark.parametrize("req", _requirements(), ids=lambda r: r.name)
def test_installed_version_within_declared_range(req):
    installed = Version(md.version(req.name))
    # a local build tag (torch 2.13.0+cpu) satisfies == 2.13.0
    assert req.specifier.contains(Version(installed.public), prereleases=True), f"{req.name} {installed} is outside {req}"


@pytest.mark.parametrize("req", _requirements(), ids=lambda r: r.name)
def test_floor_is_what_is_tested(req):
    """A floor below the installed (tested) minor version would claim support nobody tested."""
    floors = [Version(s.version) for s in req.specifier if s.operator in (">=", "==")]
    if not floors:
        pytest.skip(f"{req.name} has no lower bound")
    tested = Version(md.version(req.name))
    def minor(v: Version) -> tuple[int, int]:
        return (v.release + (0, 0))[:2]

    assert minor(max(floors)) == minor(tested), (
        f"{req.name}: floor {max(floors)} but {tested} is what is tested here; raise the floor (or test the floor)")


@pytest.mark.parametrize("req", _requirements(), ids=lambda r: r.name)
def test_dependencies_support_the_declared_python(req):
    needs = md.metadata(req.name).get("Requires-Python")
    if not needs:
        pytest.skip(f"{req.name} does not declare Requires-Python")
    assert SpecifierSet(needs).contains(_min_python()), f"{req.name} {md.version(req.name)} needs Python {needs}, we declare >= {_min_python()}"


def test_apis_we_rely_on_exist():
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: F401
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from threadpoolctl import ThreadpoolController  # noqa: F401

    assert "calibration_cache_path" in inspect.signature(quantize_static).parameters
    assert "node_block_list" in inspect.signature(convert_float_to_float16).parameters
    assert "data_prop" in inspect.signature(onnx.shape_inference.infer_shapes).parameters
    assert hasattr(onnx.helper, "tensor_dtype_to_np_dtype")
    assert hasattr(ort.SessionOptions(), "enable_cpu_mem_arena")
    assert hasattr(np.random.Generator, "noncentral_chisquare")
    import torch

    assert "dynamo" in inspect.signature(torch.onnx.export).parameters
