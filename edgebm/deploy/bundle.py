"""Bundle writer: ``export/<profile>/`` with model, codebook, manifest (with sha256 of every file), budget.md.

The implementation lives in :mod:`edgebm.runtime.bundle` (stdlib only) because the UE writes
bundles too: an on-device head update is saved as a new bundle version without torch.
"""

from ..runtime.bundle import BUNDLE_SCHEMA, sha256_file, write_bundle

__all__ = ["write_bundle", "sha256_file", "BUNDLE_SCHEMA"]
