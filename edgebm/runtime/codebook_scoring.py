"""Codebook-aware scoring in numpy: beam gain patterns on a panel spatial-frequency grid, and Set A
scores from an angular power spectrum (APS).

A BS beam ``f`` (unit-norm precoder of a half-wavelength UPA) captures the fraction
``g_f(psi) = |f^H a(psi)|^2 / ||a(psi)||^2`` (in [0, 1]) of a plane wave arriving from panel spatial
frequency ``psi = (psi_v, psi_h)``. If the channel's power is spread over directions as an APS
``P(psi)`` (sum 1 over the grid), beam ``f`` receives ``sum_psi g_f(psi) P(psi)`` of it (up to the
cross terms of coherent paths, which the OFDM average over subcarriers largely removes). So with
``G`` (n_beams, n_grid) a codebook's gain patterns, the predicted relative power of every beam is
``P @ G.T``: any codebook, of any size, on any array of the same panel, is scored from one APS.

This is what lets the ``angular`` family serve a codebook it never saw: the bundle's graph outputs
the APS next to its logits, and :func:`score_codebook` (or ``Predictor.set_codebook``) scores a new
codebook's beams here, with no torch. The graph's own ``logits`` output is exactly
``score_codebook(aps, gain_patterns(bundle codebook))`` (a test checks it).

Written in numpy rather than taken from a library: it is one steering-vector product and a log; the
runtime must stay free of torch and of the simulator.
"""

from __future__ import annotations

import numpy as np

__all__ = ["psi_grid", "visible_mask", "gain_patterns", "score_codebook", "codebook_features", "APS_EPS", "DEFAULT_GRID",
           "FEATURE_SCALE"]

#: grid points per axis of the APS (panel spatial frequency, [-1, 1) centred cells: spacing 2/32 = 0.0625)
DEFAULT_GRID = 32
#: floor added to predicted beam powers before the log (relative linear power; the APS sums to 1)
APS_EPS = 1e-6
#: the angular graph's ``features`` are ``FEATURE_SCALE * log(G_a @ APS + eps)`` (about [-1.4, 0]: unit scale for the
#: on-device SGD of the head) and its head starts at ``I / (temperature * FEATURE_SCALE)``
FEATURE_SCALE = 0.1


def psi_grid(n: int = DEFAULT_GRID) -> np.ndarray:
    """(n*n, 2) float64 grid of panel spatial frequencies ``(psi_v, psi_h)``, cell centres
    ``-1 + (2k + 1) / n`` per axis, row-major (index ``iv * n + ih``)."""
    if int(n) < 2:
        raise ValueError(f"psi_grid: n must be >= 2, got {n}")
    c = -1.0 + (2.0 * np.arange(int(n)) + 1.0) / int(n)
    pv, ph = np.meshgrid(c, c, indexing="ij")
    return np.stack([pv.ravel(), ph.ravel()], 1)


def visible_mask(n: int = DEFAULT_GRID) -> np.ndarray:
    """(n*n,) bool: grid points inside the visible region ``psi_v^2 + psi_h^2 <= 1`` (real directions)."""
    g = psi_grid(n)
    return (g ** 2).sum(1) <= 1.0


def gain_patterns(weights: np.ndarray, array_shape: tuple[int, int], n: int = DEFAULT_GRID) -> np.ndarray:
    """Gain patterns (n_beams, n*n) float32 in [0, 1] of a codebook on the APS grid.

    ``weights`` (n_beams, rows*cols) complex: precoders of a half-wavelength UPA with element index
    ``r * cols + c`` (the simulator's panel convention, ``edgebm.sim.arrays``); each row is normalised
    to unit norm here, so the pattern is the captured fraction of a unit plane wave.
    """
    w = np.asarray(weights)
    rows, cols = int(array_shape[0]), int(array_shape[1])
    if w.ndim != 2 or w.shape[1] != rows * cols:
        raise ValueError(f"gain_patterns: weights must be (n_beams, {rows * cols}) for a {rows}x{cols} array, got {w.shape}")
    g = psi_grid(n)
    rv = np.arange(rows) - (rows - 1) / 2
    cv = np.arange(cols) - (cols - 1) / 2
    ev = np.exp(1j * np.pi * g[:, 0:1] * rv[None, :])                     # (P, rows)
    eh = np.exp(1j * np.pi * g[:, 1:2] * cv[None, :])                     # (P, cols)
    a = (ev[:, :, None] * eh[:, None, :]).reshape(len(g), rows * cols)   # (P, n_tx), |a_i| = 1
    wn = w.astype(np.complex128)
    wn = wn / np.maximum(np.linalg.norm(wn, axis=1, keepdims=True), 1e-12)
    resp = np.conj(wn) @ a.T                                              # (B, P) = f^H a(psi)
    return ((resp.real ** 2 + resp.imag ** 2) / (rows * cols)).astype(np.float32)


def codebook_features(aps: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """The angular graph's ``features`` for a codebook: ``FEATURE_SCALE * log(aps @ gains.T + APS_EPS)``, (batch, n_beams)."""
    a = np.atleast_2d(np.asarray(aps, dtype=np.float32))
    gmat = np.asarray(gains, dtype=np.float32)
    p = a @ gmat.T if len(a) > 8 else np.einsum("bp,ap->ba", a, gmat)
    return (np.float32(FEATURE_SCALE) * np.log(p + np.float32(APS_EPS))).astype(np.float32)


def score_codebook(aps: np.ndarray, gains: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Logits (batch, n_beams) float32 = ``log(aps @ gains.T + APS_EPS) / temperature``.

    ``aps`` (batch, n_grid) or (n_grid,): the APS the angular graph outputs (non-negative, sums to 1);
    ``gains`` (n_beams, n_grid) from :func:`gain_patterns`; ``temperature`` the model's (manifest).
    """
    a = np.asarray(aps, dtype=np.float32)
    single = a.ndim == 1
    a = a[None, :] if single else a
    gmat = np.asarray(gains, dtype=np.float32)
    if a.shape[1] != gmat.shape[1]:
        raise ValueError(f"score_codebook: APS has {a.shape[1]} grid points, gain patterns {gmat.shape[1]}")
    p = a @ gmat.T if len(a) > 8 else np.einsum("bp,ap->ba", a, gmat)
    out = (np.log(p + np.float32(APS_EPS)) / np.float32(temperature)).astype(np.float32)
    return out[0] if single else out
