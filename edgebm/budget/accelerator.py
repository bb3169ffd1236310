"""Phone accelerator coverage: how much of a graph NNAPI / CoreML can take, and the gate lines for it.

The estimate is onnxruntime's own (``onnxruntime.tools.mobile_helpers.usability_checker``, the code
behind ``python -m onnxruntime.tools.check_onnx_model_mobile_usability``), called through its Python
functions: the graph is optimised at the BASIC level first (as the ORT-format conversion does), shapes
are inferred, and the checker replays onnxruntime's partitioning over the EP's list of supported
operators. It counts nodes and partitions; operator caveats (e.g. "only 2-D Conv") are not checked,
so a real device can take less, never more.

The check runs on the batch-1 graph the accelerator would get (:mod:`edgebm.deploy.fixed_shape`):
NNAPI refuses every node with a dynamic input shape.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..profiles import DeviceProfile
from ..quiet import quiet
from .gate import BudgetLine

__all__ = ["AcceleratorCoverage", "accelerator_coverage", "accelerator_lines", "EP_NAMES", "QDQ_OPS"]

#: profile accelerator -> onnxruntime execution provider
EP_NAMES = {"nnapi": "NNAPI", "coreml": "CoreML (MLProgram)"}
QDQ_OPS = {"ai.onnx:QuantizeLinear", "ai.onnx:DequantizeLinear"}


@dataclass(frozen=True)
class AcceleratorCoverage:
    """What one execution provider can take of a graph (onnxruntime's estimate)."""

    accelerator: str
    nodes: int
    supported: int
    partitions: int
    partition_sizes: list[int] = field(default_factory=list)
    unsupported_ops: list[str] = field(default_factory=list)
    dynamic_shape_nodes: int = 0  # nodes refused because an input shape is not fixed
    empty_input_ops: list[str] = field(default_factory=list)  # ops with an omitted optional input ('' name)
    error: str | None = None  # the checker could not analyse the graph

    @property
    def pct(self) -> float:
        """Share of the graph's nodes the EP takes, %."""
        return 100.0 * self.supported / self.nodes if self.nodes else 0.0

    def summary(self) -> str:
        if self.error:
            return f"{EP_NAMES.get(self.accelerator, self.accelerator)}: not analysable ({self.error})"
        s = (f"{EP_NAMES.get(self.accelerator, self.accelerator)} takes {self.supported}/{self.nodes} nodes "
             f"({self.pct:.1f} %) in {self.partitions} partition(s)")
        if self.unsupported_ops:
            s += f"; unsupported ops: {', '.join(self.unsupported_ops)}"
        if self.dynamic_shape_nodes:
            s += f"; {self.dynamic_shape_nodes} node(s) refused for a dynamic or unknown input shape"
            if self.empty_input_ops:  # the checker treats an omitted optional input as a value of unknown shape
                s += f" (the checker counts the omitted optional input of {', '.join(self.empty_input_ops)} as unknown)"
        return s

    def to_dict(self) -> dict:
        return {**asdict(self), "pct": round(self.pct, 2)}


def accelerator_coverage(onnx_path: str | Path, accelerator: str) -> AcceleratorCoverage:
    """Run onnxruntime's usability checker for ``accelerator`` (``nnapi`` or ``coreml``) on ``onnx_path``.

    Shapes are taken as they are in the file (pass the fixed-shape graph to judge the accelerator
    path). A graph the checker cannot analyse (e.g. ai.onnx.ml tree ensembles fail its strict shape
    inference) gives a coverage with ``error`` set and nothing supported.
    """
    import onnx
    from onnxruntime.tools.mobile_helpers.usability_checker import check_coreml_partitions, check_nnapi_partitions
    from onnxruntime.tools.onnx_model_utils import optimize_model

    if accelerator not in EP_NAMES:
        raise ValueError(f"accelerator must be one of {', '.join(EP_NAMES)}, got {accelerator!r}")
    with tempfile.TemporaryDirectory(prefix="edgebm-accel-") as tmp, quiet():
        opt = Path(tmp) / "basic.onnx"
        try:
            optimize_model(Path(onnx_path), opt, use_external_initializers=True)
            model = onnx.shape_inference.infer_shapes(onnx.load(str(opt)), strict_mode=True)
        except Exception as e:  # the checker's own pre-processing (ORT optimiser, strict shape inference)
            n = len(onnx.load(str(onnx_path), load_external_data=False).graph.node)
            return AcceleratorCoverage(accelerator, n, 0, 0, error=f"{type(e).__name__}: {str(e).strip().splitlines()[0][:160]}")
        if accelerator == "nnapi":
            info = check_nnapi_partitions(model, require_fixed_input_sizes=True)
        else:  # MLProgram: the CoreML format onnxruntime recommends (NeuralNetwork is deprecated by Apple)
            info = check_coreml_partitions(model, True, "coreml_supported_mlprogram_ops.md")
    return AcceleratorCoverage(
        accelerator, int(info.num_nodes), int(info.num_supported_nodes), int(info.num_partitions),
        [len(g) for g in info.supported_groups], sorted(info.unsupported_ops), int(info.nodes_unsupported_due_to_dynamic_input),
        sorted({n.op_type for n in model.graph.node if "" in list(n.input)}),
    )


def accelerator_lines(onnx_path: str | Path, profile: DeviceProfile, fixed_path: str | Path | None = None) -> tuple[list[BudgetLine], AcceleratorCoverage | None]:
    """Gate lines for the profile's accelerator, judged on the batch-1 graph made from ``onnx_path``.

    Two lines, both able to fail: ``accelerator_cpu_nodes`` (share of nodes left on the CPU, %, against
    ``100 - accelerator_min_nodes_pct``) and ``accelerator_partitions`` (against
    ``accelerator_max_partitions``). No lines for ``accelerator = "none"``. Where the unsupported ops
    are QuantizeLinear/DequantizeLinear (int8 QDQ on CoreML), the note says the accelerator needs
    another precision (fp16). ``fixed_path``: the batch-1 graph when the caller already made it.
    """
    from ..deploy.fixed_shape import write_fixed_shape

    c = profile.compute
    if c.accelerator == "none":
        return [], None
    with tempfile.TemporaryDirectory(prefix="edgebm-accel-") as tmp:
        fixed = Path(fixed_path) if fixed_path is not None else Path(tmp) / "fixed.onnx"
        try:
            if fixed_path is None:
                write_fixed_shape(onnx_path, fixed)
            cov = accelerator_coverage(fixed, c.accelerator)
        except Exception as e:  # a graph that cannot be fixed to batch 1 cannot go to the accelerator
            n = 0
            cov = AcceleratorCoverage(c.accelerator, n, 0, 0, error=f"no fixed-shape graph: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
    cpu_pct = 100.0 - cov.pct
    limit_pct = 100.0 - c.accelerator_min_nodes_pct
    note = cov.summary() + " (fixed batch-1 graph, onnxruntime usability checker)"
    if QDQ_OPS & set(cov.unsupported_ops):
        note += f"; int8 QDQ is not supported by {EP_NAMES[c.accelerator]}: an fp16 candidate can run there"
    lines = [
        BudgetLine("accelerator_cpu_nodes", round(cpu_pct, 2), round(limit_pct, 2), "% nodes",
                   "pass" if cov.error is None and cpu_pct <= limit_pct + 1e-9 else "fail", note),
        BudgetLine("accelerator_partitions", cov.partitions, c.accelerator_max_partitions, "",
                   "pass" if cov.error is None and cov.partitions <= c.accelerator_max_partitions else "fail",
                   f"{EP_NAMES[c.accelerator]} partitions: {cov.partition_sizes or '-'} nodes each; every boundary is a CPU <-> accelerator copy"),
    ]
    return lines, cov
