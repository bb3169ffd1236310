"""Bundle writer: ``export/<profile>/`` with model, codebook, manifest (sha256 of every file + digest), budget.md.

The implementation lives in :mod:`edgebm.runtime.bundle` (stdlib only) because the UE writes
bundles too: an on-device head update is saved as a new bundle version without torch.
"""

from ..runtime.bundle import BUNDLE_SCHEMA, bundle_out_dir, check_bundle_out, sha256_file, sign_bundle, write_bundle
from ..runtime.manifest import BundleManifest

__all__ = ["write_bundle", "sign_bundle", "sha256_file", "check_bundle_out", "bundle_out_dir", "BundleManifest", "BUNDLE_SCHEMA"]
