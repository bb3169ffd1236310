"""fp16 conversion (weights and activations fp16, float32 graph I/O kept) with onnxruntime's float16 converter."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import onnx

from .quant_base import WEIGHTED_OPS, QuantPass, quiet

__all__ = ["Fp16Pass", "toposort"]


def toposort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` in place so every node comes after the producers of its inputs (stable)."""
    nodes = list(graph.node)
    produced_by = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    deps = [{produced_by[t] for t in n.input if t in produced_by} for n in nodes]
    done: set[int] = set()
    order: list[int] = []
    for start in range(len(nodes)):
        stack = [(start, False)]
        while stack:
            i, expanded = stack.pop()
            if i in done:
                continue
            if expanded:
                done.add(i)
                order.append(i)
                continue
            stack.append((i, True))
            stack.extend((d, False) for d in sorted(deps[i], reverse=True) if d not in done)
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)


class Fp16Pass(QuantPass):
    """Converts the exported graph as is (no int8 pre-processing); ``excluded`` nodes stay fp32 (block list)."""

    mode = "fp16"
    quantisable_ops = frozenset(WEIGHTED_OPS)

    def make(self, excluded: Sequence[str], out: Path) -> Path:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        block = [*self.always_fp32, *excluded]
        with quiet():
            model = onnx.load(str(self.pre))
            half = convert_float_to_float16(model, keep_io_types=True, node_block_list=block or None)
            toposort(half.graph)  # the converter appends the input Casts after their consumers
            del half.graph.value_info[:]  # stale float32 annotations on blocked ops (Resize) break shape inference
            onnx.checker.check_model(half)
            onnx.save_model(half, str(out))
        return out
