"""Pretrained weights shipped inside the package (``edgebm/_pretrained/``), produced by ``python -m bench pretrain``.

Files are ``.npz`` archives written byte-stably (fixed zip timestamps, sorted keys): learned tensors only
(float16 for weight matrices, float32 for normalisation statistics and biases) plus a JSON record
(``meta_json``: family, constructor config, the command, seeds, corpus, training log). The codebook-specific
parts of an angular model (the Set A / Set B gain patterns) are *not* stored: they are recomputed from the
codebook the weights are loaded for, which is what makes one pretrained file serve any Set A codebook.

- ``angular_teacher.npz``: the teacher (GPU-class budget; trained on the randomised multi-codebook corpus).
- ``angular_student.npz``: a smartphone-size angular student distilled from it.
- ``meta_head.npz``: Reptile initialisation of the student's on-device head for the 16 -> 64 DFT codebook.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ModelError

__all__ = ["PRETRAINED_DIR", "save_weights", "read_weights", "load_pretrained_teacher", "load_pretrained_student",
           "load_angular", "pretrained_meta_head", "pretrained_info"]

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "_pretrained"
_SKIP = ("gains_b", "backproject.weight", "score.weight", "visible")   # recomputed from the codebook


def save_weights(path: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write ``arrays`` + ``meta`` to ``path`` (.npz) byte-stably: sorted keys, fixed timestamps, no compression
    variance; via a temp file and rename."""
    path = Path(path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        items = dict(arrays)
        items["meta_json"] = np.array(json.dumps(meta, sort_keys=True))
        for key in sorted(items):
            b = io.BytesIO()
            np.lib.format.write_array(b, np.asarray(items[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, b.getvalue())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
    return path


def read_weights(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Inverse of :func:`save_weights`; :class:`ModelError` naming the file when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no pretrained weights here; run `python -m bench pretrain` to produce them")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta_json")))
    except (zipfile.BadZipFile, ValueError, KeyError, OSError) as e:
        raise ModelError(f"{path}: not a readable pretrained-weights file ({e})") from None
    return arrays, meta


def module_arrays(module) -> dict[str, np.ndarray]:
    """The learned state of an angular module as numpy (weight matrices float16, the rest float32), gain patterns left out."""
    out = {}
    for k, v in module.state_dict().items():
        if k in _SKIP or k.endswith("num_batches_tracked"):
            continue
        a = v.detach().cpu().numpy()
        out[k] = a.astype(np.float16) if (a.ndim == 2 and not k.startswith("head.")) else a.astype(np.float32)
    return out


def load_angular(path: str | Path, n_b: int, n_a: int, codebooks: dict[str, np.ndarray], bs_array: Sequence[int]):
    """Build the angular module stored at ``path`` for a codebook (``codebooks``: ``cb_a_weights``, ``cb_b_weights``
    arrays of a dataset or bundle; ``bs_array`` (rows, cols)); returns ``(module, meta)`` in eval mode."""
    import torch

    from .angular import AngularBeamNet, codebook_gains

    arrays, meta = read_weights(path)
    cfg = {k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["config"].items() if k not in ("n_in", "n_out")}
    if cfg.get("inputs", "beams") == "beams" and int(meta["config"]["n_in"]) != int(n_b):
        raise ModelError(f"{path}: pretrained for |Set B| = {meta['config']['n_in']}, asked for {n_b} "
                         "(a model with inputs='beams' reads exactly its Set B)")
    gb, ga = codebook_gains(codebooks, bs_array, int(cfg.get("grid", 32)))
    if gb.shape[0] != n_b or ga.shape[0] != n_a:
        raise ModelError(f"codebooks have {gb.shape[0]} Set B / {ga.shape[0]} Set A beams, asked for {n_b} / {n_a}")
    torch.manual_seed(0)
    m = AngularBeamNet(n_b, n_a, gb, ga, **cfg)
    state = {k: torch.from_numpy(v.astype(np.float32)) for k, v in arrays.items()}
    if int(meta["config"]["n_out"]) != n_a:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    missing, unexpected = m.load_state_dict(state, strict=False)
    bad = [k for k in missing if not (k in _SKIP or k.startswith("head.") or k.endswith("num_batches_tracked"))]
    if bad or unexpected:
        raise ModelError(f"{path}: weights do not match the model (missing {bad}, unexpected {list(unexpected)})")
    m.eval()
    return m, meta


def _fitted(path: Path, n_b: int, n_a: int, codebooks: dict[str, np.ndarray], bs_array: Sequence[int]):
    from ..train import TrainConfig
    from .estimator import TorchBeamModel

    module, meta = load_angular(path, n_b, n_a, codebooks, bs_array)
    cfg = {k: v for k, v in module.config().items() if k not in ("n_in", "n_out")}
    return TorchBeamModel("angular", n_b, n_a, params=cfg, train_cfg=TrainConfig(**meta.get("train", {})), module=module)


def load_pretrained_teacher(n_b: int, n_a: int, codebooks: dict[str, np.ndarray], bs_array: Sequence[int] = (8, 8)):
    """The shipped pretrained teacher as a fitted :class:`~edgebm.models.estimator.TorchBeamModel` (family
    ``angular``) for the Set A / Set B codebooks given (any Set A codebook; Set B of the pretraining size)."""
    return _fitted(PRETRAINED_DIR / "angular_teacher.npz", n_b, n_a, codebooks, bs_array)


def load_pretrained_student(n_b: int, n_a: int, codebooks: dict[str, np.ndarray], bs_array: Sequence[int] = (8, 8)):
    """The shipped smartphone-size angular student (distilled from the teacher), fitted, for the codebooks given."""
    return _fitted(PRETRAINED_DIR / "angular_student.npz", n_b, n_a, codebooks, bs_array)


def pretrained_meta_head(n_a: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Reptile head initialisation ``(W (n_a, n_a), b (n_a,))`` of the pretrained student for its pretraining Set A
    size, or None (another size, or no file): then the plain ``I / (temperature * FEATURE_SCALE)`` start applies."""
    path = PRETRAINED_DIR / "meta_head.npz"
    if not path.is_file():
        return None
    arrays, _ = read_weights(path)
    if arrays["W"].shape != (n_a, n_a):
        return None
    return arrays["W"].astype(np.float32), arrays["b"].astype(np.float32)


def pretrained_info() -> dict[str, Any]:
    """The ``meta`` record of every shipped file (what produced it, on which corpus, how long it took)."""
    out = {}
    for p in sorted(PRETRAINED_DIR.glob("*.npz")):
        out[p.name] = read_weights(p)[1]
    return out
