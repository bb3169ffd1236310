"""What ships to the UE: load a bundle and predict beams. numpy + onnxruntime only; never imports torch or sklearn."""

from .bundle import BUNDLE_SCHEMA, BundleError, read_manifest, sha256_file
from .adapt import HeadAdapter, UpdateStats
from .bundle import write_bundle
from .predictor import InputError, Predictor

__all__ = ["BUNDLE_SCHEMA", "BundleError", "HeadAdapter", "InputError", "Predictor", "UpdateStats", "read_manifest", "sha256_file", "write_bundle"]
