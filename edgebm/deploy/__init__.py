"""Export: ONNX with parity checks, bundle writer (TensorRT and sklearn->ONNX arrive with the export issue)."""

from .bundle import write_bundle
from .onnx_export import ExportError, ParityReport, check_parity, export_onnx

__all__ = ["ExportError", "ParityReport", "check_parity", "export_onnx", "write_bundle"]
