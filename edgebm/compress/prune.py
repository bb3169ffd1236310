"""Structured (channel / neuron) pruning with torch-pruning, physically shrinking Linear/Conv layers.

``torch_pruning.DependencyGraph`` traces the model once and groups every layer coupled to a pruned
channel (the BatchNorm after a Linear/Conv, the next layer's input, residual additions, depthwise
convs, grouped convs); ``MetaPruner`` with ``MagnitudeImportance`` removes the lowest-norm channel
groups and rewrites the modules with smaller weight tensors. Nothing is masked: after pruning the
``nn.Linear``/``nn.Conv2d`` shapes are smaller, so do the exported ONNX graph, its FLOPs and latency.

``ratio`` is torch-pruning's per-layer channel ratio: the fraction of output channels/neurons removed
from every prunable layer. A layer between two pruned layers loses that fraction on both sides, so
its parameters shrink to about ``(1 - ratio)^2``. Never pruned: the model input (torch-pruning has
no way to drop graph inputs), the output head's ``out_features`` (``model.head`` and any
``extra_heads`` are ignored layers) and recurrent layers (see below).

After pruning, ``model.config()`` no longer rebuilds the architecture in general; the pruned module
object is kept in :attr:`PruneResult.model` (export it with :func:`edgebm.deploy.onnx_export.export_onnx`).
For :class:`edgebm.models.mlp.BeamMLP` the pruned hidden widths are written back to ``model.hidden`` so
``BeamMLP(**model.config())`` rebuilds the pruned shapes exactly; :attr:`PruneResult.config` is set only
when that round trip is verified.

Recurrent layers: torch-pruning 1.6 has no GRU rule (its dependency graph fails on GRU outputs that
feed a concatenation), so models containing ``nn.GRU``/``nn.RNN`` raise :class:`PruneError`; compress
those with int8 dynamic quantisation or distillation into a narrower model instead.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from ..atomic import ScratchDir
from ..budget.gate import thop_flops
from ..budget.graph import analyze_onnx
from ..deploy.onnx_export import check_parity, export_onnx
from ..errors import EdgebmError

__all__ = ["PruneError", "PruneResult", "prune_structured", "layer_widths", "count_params", "make_torch_top1_eval", "IMPORTANCES"]

IMPORTANCES = ("l2", "l1", "bn", "random")


class PruneError(EdgebmError, RuntimeError):
    """The model cannot be pruned structurally (unsupported layers) or the pruned model fails export/parity."""


@dataclass
class PruneResult:
    """One structured-pruning step (all rounds of it). FLOPs are per inference at batch 1."""

    ratio: float
    steps: int
    importance: str
    params_before: int  # torch parameters (BatchNorm included)
    params_after: int
    flops_before: int  # thop (torch) count
    flops_after: int
    onnx_flops_before: int | None  # edgebm.budget.analyze_onnx on the exported graph (BatchNorm folded); None if check_onnx=False
    onnx_flops_after: int | None
    onnx_params_before: int | None
    onnx_params_after: int | None
    widths_before: dict[str, list[int]] = field(default_factory=dict)  # layer -> [in, out]
    widths_after: dict[str, list[int]] = field(default_factory=dict)
    top1_before: float | None = None
    top1_after_prune: float | None = None  # after the last prune round, before its fine-tune
    top1_after_finetune: float | None = None
    parity: dict | None = None  # ONNX Runtime vs torch on the pruned model
    onnx_path: str | None = None  # the pruned model's ONNX export, when an onnx_path was asked for
    config: dict | None = None  # constructor args rebuilding the pruned shapes, when verified
    rounds: list[dict] = field(default_factory=list)  # per round: params, flops, top1 after prune / fine-tune
    notes: list[str] = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False)  # the pruned module

    def to_dict(self) -> dict:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "model"}


def count_params(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def layer_widths(module: nn.Module) -> dict[str, list[int]]:
    """``name -> [in, out]`` of every Linear, Conv and recurrent layer."""
    out: dict[str, list[int]] = {}
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            out[name] = [m.in_features, m.out_features]
        elif isinstance(m, nn.modules.conv._ConvNd):
            out[name] = [m.in_channels, m.out_channels]
        elif isinstance(m, nn.RNNBase):
            out[name] = [m.input_size, m.hidden_size]
    return out


def make_torch_top1_eval(x_val: np.ndarray, y_val: np.ndarray) -> Callable[[nn.Module], float]:
    """``eval_fn(module) -> top-1`` on (x_val, y_val) (sequence outputs are flattened over slots)."""
    from ..train.loop import predict_logits

    y = np.asarray(y_val).reshape(-1)

    def eval_fn(module: nn.Module) -> float:
        logits = predict_logits(module, x_val)
        return float(np.mean(logits.reshape(-1, logits.shape[-1]).argmax(-1) == y))

    return eval_fn


def _importance(kind: str):
    if kind == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    if kind == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if kind == "bn":
        return tp.importance.BNScaleImportance()
    if kind == "random":
        return tp.importance.RandomImportance()
    raise ValueError(f"importance must be one of {IMPORTANCES}, got {kind!r}")


def _default_ignored(model: nn.Module) -> list[nn.Module]:
    """Output heads: ``model.head`` plus ``extra_heads`` (multi-sector teacher)."""
    ign: list[nn.Module] = []
    head = getattr(model, "head", None)
    if isinstance(head, nn.Module):
        ign.append(head)
    extra = getattr(model, "extra_heads", None)
    if isinstance(extra, nn.Module):
        ign.extend(m for m in extra.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)))
    return ign


def _head_input_ratios(model: nn.Module, ex: torch.Tensor, ratio: float, max_head_in: int | None) -> dict[nn.Module, float]:
    """``pruning_ratio_dict`` for torch-pruning that leaves at most ``max_head_in`` input features to ``model.head``:
    the Linear/Conv layers whose output channels the dependency graph couples to the head's input get the ratio
    ``1 - (max_head_in + 0.5) / width`` (torch-pruning keeps ``int(width x (1 - ratio))`` channels; the half
    keeps float rounding from dropping one more), or ``ratio`` when that is larger. Empty when nothing is capped."""
    head = getattr(model, "head", None)
    if max_head_in is None or not isinstance(head, (nn.Linear, nn.modules.conv._ConvNd)):
        return {}
    if max_head_in < 1:
        raise ValueError(f"max_head_in must be >= 1, got {max_head_in}")
    width = head.in_features if isinstance(head, nn.Linear) else head.in_channels
    if width <= max_head_in:
        return {}
    head_ratio = max(float(ratio), 1.0 - (max_head_in + 0.5) / width)
    fn = tp.prune_linear_in_channels if isinstance(head, nn.Linear) else tp.prune_conv_in_channels
    dg = tp.DependencyGraph().build_dependency(model, ex)
    group = dg.get_pruning_group(head, fn, idxs=list(range(width)))
    producers = [dep.target.module for dep, _ in group
                 if isinstance(dep.target.module, (nn.Linear, nn.modules.conv._ConvNd)) and dep.target.module is not head]
    if not producers:
        raise PruneError(f"no prunable layer feeds the head of {type(model).__name__}: cannot cap its input at {max_head_in}")
    return {mod: head_ratio for mod in producers}


def _rebuild_config(model: nn.Module) -> dict | None:
    """Constructor args that rebuild the pruned shapes, or None. Updates ``BeamMLP.hidden`` in place."""
    from ..models.mlp import BeamMLP

    if isinstance(model, BeamMLP):
        model.hidden = tuple(m.out_features for m in model.body if isinstance(m, nn.Linear))
    cfg_fn = getattr(model, "config", None)
    if not callable(cfg_fn):
        return None
    try:
        cfg = cfg_fn()
        fresh = type(model)(**cfg)
    except Exception:
        return None
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    return cfg if want == got else None


def _onnx_stats(model: nn.Module, x: np.ndarray, path: Path) -> tuple[int, int]:
    export_onnx(model, x, path)
    s = analyze_onnx(path)
    return s.flops, s.params


def prune_structured(
    model: nn.Module,
    example_x: np.ndarray,
    ratio: float,
    train_fn: Callable[[nn.Module], object] | None = None,
    ignored: Sequence[nn.Module] | None = None,
    importance: str = "l2",
    *,
    steps: int = 1,
    eval_fn: Callable[[nn.Module], float] | None = None,
    round_to: int | None = None,
    global_pruning: bool = False,
    in_place: bool = False,
    onnx_path: str | Path | None = None,
    parity_atol: float = 1e-3,
    check_onnx: bool = True,
    max_head_in: int | None = None,
) -> PruneResult:
    """Prune ``ratio`` of the channels/neurons of every prunable layer, in ``steps`` prune(+fine-tune) rounds.

    ``example_x``: real inputs (N, ...) float32 (the first two trace the graph; up to 256 check ONNX parity).
    ``train_fn(model)`` fine-tunes the pruned module in place after each round (e.g. a closure around
    :func:`edgebm.train.loop.train_classifier`). ``eval_fn(model) -> top-1`` fills the top-1 fields.
    ``ignored``: extra modules never pruned (the head is always ignored). ``round_to``: keep channel
    counts multiples of this (SIMD-friendly widths). ``model`` is deep-copied unless ``in_place``.
    The pruned model is exported to ONNX (``onnx_path`` or a temporary file) and checked for parity;
    :class:`PruneError` if that fails. ``check_onnx=False`` skips both exports and the parity check (the
    ``onnx_*`` fields are None): for callers that export and check the pruned model themselves.
    ``max_head_in``: at most this many features may reach ``model.head`` (the on-device head's input width: a
    profile's ``max_trainable_params`` bounds ``(in + 1) x n_out``); the layers producing them are pruned at the
    larger of ``ratio`` and the ratio that leaves ``max_head_in`` channels, every other layer at ``ratio``.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    imp = _importance(importance)
    rnn = [name for name, m in model.named_modules() if isinstance(m, nn.RNNBase)]
    if rnn:
        raise PruneError(
            f"structured pruning of recurrent layers is not supported (torch-pruning has no GRU rule): {', '.join(rnn)}; "
            "use int8_dynamic quantisation or distil into a narrower model"
        )
    m = model if in_place else copy.deepcopy(model)
    m.eval()
    x = np.ascontiguousarray(example_x, dtype=np.float32)
    if len(x) < 1:
        raise ValueError("example_x must hold at least one sample")
    ex = torch.from_numpy(x[:2])
    ignored_layers = _default_ignored(m)
    if ignored:
        # the caller's modules belong to ``model``; map them onto the copy by name
        names = {id(mod): name for name, mod in model.named_modules()}
        copied = dict(m.named_modules())
        for mod in ignored:
            name = names.get(id(mod))
            ignored_layers.append(copied[name] if name is not None and not in_place else mod)

    notes: list[str] = []
    widths_before = layer_widths(m)
    params_before = count_params(m)
    flops_before = thop_flops(m, x)
    top1_before = float(eval_fn(m)) if eval_fn is not None else None
    onnx_flops_before = onnx_params_before = onnx_flops_after = onnx_params_after = parity = None
    with ScratchDir("edgebm-prune") as tmp:
        if check_onnx:
            onnx_flops_before, onnx_params_before = _onnx_stats(m, x, Path(tmp) / "before.onnx")

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch-pruning warns on every unwrapped buffer
            try:
                head_ratios = _head_input_ratios(m, ex, ratio, max_head_in)
                if head_ratios:
                    notes.append(f"head input capped at {max_head_in} features (pruning ratio "
                                 f"{next(iter(head_ratios.values())):.4f} on the layers feeding the head)")
                pruner = tp.pruner.MetaPruner(
                    m, ex, importance=imp, pruning_ratio=float(ratio), iterative_steps=int(steps),
                    ignored_layers=ignored_layers, round_to=round_to, global_pruning=global_pruning,
                    pruning_ratio_dict=head_ratios or None,
                )
            except Exception as e:  # dependency tracing fails on layer types it has no rule for
                raise PruneError(f"torch-pruning could not trace {type(model).__name__}: {type(e).__name__}: {e}") from e
        rounds: list[dict] = []
        top1_after_prune = top1_after_ft = None
        for r in range(steps):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pruner.step()
            m.eval()
            row: dict = {"round": r + 1, "params": count_params(m), "flops": thop_flops(m, x)}
            if eval_fn is not None:
                top1_after_prune = row["top1_after_prune"] = float(eval_fn(m))
            if train_fn is not None:
                train_fn(m)
                m.eval()
                if eval_fn is not None:
                    top1_after_ft = row["top1_after_finetune"] = float(eval_fn(m))
            rounds.append(row)

        if check_onnx:
            out = Path(onnx_path) if onnx_path is not None else Path(tmp) / "after.onnx"
            try:
                onnx_flops_after, onnx_params_after = _onnx_stats(m, x, out)
            except Exception as e:
                raise PruneError(f"pruned {type(model).__name__} does not export to ONNX: {e}") from e
            parity = check_parity(m, out, x[:256])
            if parity.max_abs_diff > parity_atol:
                raise PruneError(f"pruned model disagrees with its ONNX export: max |diff| {parity.max_abs_diff:.3g} > {parity_atol}")

    head = getattr(m, "head", None)
    if max_head_in is not None and isinstance(head, (nn.Linear, nn.modules.conv._ConvNd)):
        width = head.in_features if isinstance(head, nn.Linear) else head.in_channels
        if width > max_head_in:
            raise PruneError(f"the head still reads {width} features after pruning (asked at most {max_head_in})")
    cfg = _rebuild_config(m)
    if cfg is None:
        notes.append("model.config() does not describe the pruned shapes; keep PruneResult.model (or its ONNX export)")
    widths_after = layer_widths(m)
    if isinstance(head, nn.Linear) and widths_before.get("head", [None, None])[1] != head.out_features:
        raise PruneError("the output head lost classes")  # cannot happen with head in ignored_layers
    return PruneResult(
        ratio=float(ratio),
        steps=int(steps),
        importance=importance,
        params_before=params_before,
        params_after=count_params(m),
        flops_before=flops_before,
        flops_after=thop_flops(m, x),
        onnx_flops_before=onnx_flops_before,
        onnx_flops_after=onnx_flops_after,
        onnx_params_before=onnx_params_before,
        onnx_params_after=onnx_params_after,
        widths_before=widths_before,
        widths_after=widths_after,
        top1_before=top1_before,
        top1_after_prune=top1_after_prune,
        top1_after_finetune=top1_after_ft,
        parity=parity.to_dict() if parity is not None else None,
        onnx_path=str(onnx_path) if onnx_path is not None and check_onnx else None,
        config=cfg,
        rounds=rounds,
        notes=notes,
        model=m,
    )
