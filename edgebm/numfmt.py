"""One number formatter for every table edgebm prints or writes (CLI, budget.md, evaluate, bench results)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["fmt_num"]


def fmt_num(v: Any, digits: int = 4) -> str:
    """``-`` for None, NaN as ``nan``; integers with thousands separators; floats of magnitude >= 10,000 as rounded
    integers with separators, others with ``digits`` significant digits (``0.9421``, ``12.35``, ``0.0001234``)."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int) or (hasattr(v, "dtype") and getattr(v.dtype, "kind", "") in "iu"):
        return f"{int(v):,}"
    if isinstance(v, float) or hasattr(v, "dtype"):
        f = float(v)
        if math.isnan(f) or math.isinf(f):
            return str(f)
        return f"{f:,.0f}" if abs(f) >= 1e4 else f"{f:.{digits}g}"
    return str(v)
