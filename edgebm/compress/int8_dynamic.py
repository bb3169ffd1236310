"""int8 dynamic quantisation: int8 weights, activations quantised at run time (``quantize_dynamic``).

No calibration data needed. ORT has int8 kernels for MatMul/Gemm (MatMulInteger) and Conv (ConvInteger, slow
on x86 for small convolutions: export tries static int8 instead) and LSTM; a GRU stays fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .int8_static import preprocess_for_int8
from .quant_base import QuantPass, quiet

__all__ = ["Int8DynamicPass"]


class Int8DynamicPass(QuantPass):
    mode = "int8_dynamic"
    quantisable_ops = frozenset({"Gemm", "MatMul", "Conv", "LSTM"})

    def prepare(self, src: Path, notes: list[str]) -> Path:
        return preprocess_for_int8(src, self.pre, notes)

    def make(self, excluded: Sequence[str], out: Path) -> Path:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with quiet():
            quantize_dynamic(
                str(self.pre), str(out), per_channel=self.per_channel, reduce_range=self.cfg.reduce_range,
                weight_type=QuantType.QInt8, nodes_to_exclude=[*self.always_fp32, *excluded],
            )
        return out
