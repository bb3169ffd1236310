"""What ships to the UE: load a bundle and predict beams. numpy + onnxruntime only; never imports torch or sklearn."""

from .bundle import (BUNDLE_SCHEMA, Bundle, BundleError, BundleWarning, open_bundle, read_manifest, sha256_file, sign_bundle,
                     write_bundle)
from .manifest import BundleManifest, TensorSpec, manifest_digest
from .adapt import HeadAdapter, UpdateStats
from .predictor import InputError, Predictor
from .functionality import Applicability, build_functionality, check_configuration, configuration_from
from .monitor import ModelMonitor, MonitorConfig, design_cusum
from .lcm import LcmConfig, LifeCycleManager, RegisteredBundle

__all__ = ["BUNDLE_SCHEMA", "Bundle", "BundleError", "BundleManifest", "BundleWarning", "HeadAdapter", "InputError", "Predictor",
           "TensorSpec", "UpdateStats", "manifest_digest", "open_bundle", "read_manifest", "sha256_file", "sign_bundle",
           "write_bundle", "Applicability", "build_functionality", "check_configuration", "configuration_from", "ModelMonitor",
           "MonitorConfig", "design_cusum", "LcmConfig", "LifeCycleManager", "RegisteredBundle"]
