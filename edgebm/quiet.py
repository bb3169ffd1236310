"""Silencing third-party tools while edgebm calls them (stdlib only, so any layer can use it).

onnxruntime's quantiser and usability checker, the torch ONNX exporter and onnxruntime's ORT-format converter
print progress to stdout, log per tensor and raise warnings that say nothing to an edgebm user; edgebm reports
their outcome itself. One context manager instead of a copy per caller."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Iterator

__all__ = ["quiet"]


@contextlib.contextmanager
def quiet(logger: str | None = "", level: int = logging.ERROR, silence_warnings: bool = True) -> Iterator[None]:
    """Within the block: stdout goes nowhere, ``logger`` (``""`` = the root logger; ``None`` = leave logging alone)
    shows only records at ``level`` or above, and Python warnings are ignored unless ``silence_warnings`` is False.
    Everything is restored on exit, also when the block raises."""
    log = None if logger is None else logging.getLogger(logger or None)
    old = None if log is None else log.level
    if log is not None:
        log.setLevel(level)
    try:
        with contextlib.ExitStack() as stack:
            if silence_warnings:
                stack.enter_context(warnings.catch_warnings())
                warnings.simplefilter("ignore")
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            yield
    finally:
        if log is not None:
            log.setLevel(old)
