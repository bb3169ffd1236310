"""What ships to the UE: load a bundle and predict beams. numpy + onnxruntime only; never imports torch or sklearn."""

from .bundle import BUNDLE_SCHEMA, BundleError, read_manifest, sha256_file
from .predictor import InputError, Predictor

__all__ = ["BUNDLE_SCHEMA", "BundleError", "InputError", "Predictor", "read_manifest", "sha256_file"]
