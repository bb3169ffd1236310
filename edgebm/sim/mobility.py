"""Street mobility: UEs drive / walk along the street grid and turn at intersections.

Vehicles (cars, buses) keep right on a lane ``street_width / 4`` from the centre line at
``N(9.5, 2.5)`` m/s clipped to [3, 16]; pedestrians walk on the right-hand sidewalk
``street_width / 2 - 2`` m from the centre line at ``N(1.4, 0.25)`` m/s clipped to [0.7, 2.2]. Speeds
are constant per UE. At every intersection a UE goes straight (p = 0.5), turns left (0.25) or right
(0.25) among the moves whose next intersection is allowed (e.g. inside the coverage area); turns
happen where the two lane lines cross, so every step covers exactly ``speed * dt`` m of path.
Vectorised over UEs; the loop runs over time steps.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .geometry import UE_HEIGHT_M, City

__all__ = ["street_trajectories", "VEHICLE_SPEED_MPS", "PEDESTRIAN_SPEED_MPS"]

VEHICLE_SPEED_MPS = (9.5, 2.5, 3.0, 16.0)      # mean, std, min, max
PEDESTRIAN_SPEED_MPS = (1.4, 0.25, 0.7, 2.2)
_P_MOVES = np.array([0.5, 0.25, 0.25])          # straight, left, right


def street_trajectories(city: City, n_ues: int, n_steps: int, dt_s: float, rng: np.random.Generator,
                        vehicle_fraction: float = 0.7, allowed: Callable[[np.ndarray], np.ndarray] | None = None,
                        return_speed: bool = False):
    """Positions (n_ues, n_steps, 3) m of UEs moving along the streets of ``city``, sampled every
    ``dt_s`` s (step 0 = start). ``allowed(xy (k, 2)) -> bool (k,)`` restricts the intersections a
    UE may head for (default: every intersection inside the city bounds). With
    ``return_speed=True`` also returns the speeds (n_ues,) m/s."""
    X, Y = np.asarray(city.streets_x, float), np.asarray(city.streets_y, float)
    b = city.bounds
    gi, gj = np.meshgrid(np.arange(len(X)), np.arange(len(Y)), indexing="ij")
    nxy = np.stack([X[gi], Y[gj]], -1)
    ok_node = (nxy[..., 0] >= b[0]) & (nxy[..., 0] <= b[2]) & (nxy[..., 1] >= b[1]) & (nxy[..., 1] <= b[3])
    if allowed is not None:
        ok_node &= np.asarray(allowed(nxy.reshape(-1, 2)), dtype=bool).reshape(ok_node.shape)
    w = city.street_width_m
    # edges between allowed neighbours: (i, j, di, dj, length)
    ex = np.argwhere(ok_node[:-1, :] & ok_node[1:, :])
    ey = np.argwhere(ok_node[:, :-1] & ok_node[:, 1:])
    edges = np.concatenate([np.c_[ex, np.ones(len(ex), int), np.zeros(len(ex), int)],
                            np.c_[ey, np.zeros(len(ey), int), np.ones(len(ey), int)]]).astype(np.int64)
    if len(edges) == 0:
        raise ValueError("street_trajectories: no street segment lies inside the allowed area")
    elen = np.where(edges[:, 2] == 1, X[np.minimum(edges[:, 0] + 1, len(X) - 1)] - X[edges[:, 0]],
                    Y[np.minimum(edges[:, 1] + 1, len(Y) - 1)] - Y[edges[:, 1]])

    n = int(n_ues)
    veh = rng.random(n) < vehicle_fraction
    vs, ps = VEHICLE_SPEED_MPS, PEDESTRIAN_SPEED_MPS
    speed = np.where(veh, np.clip(rng.normal(vs[0], vs[1], n), vs[2], vs[3]),
                     np.clip(rng.normal(ps[0], ps[1], n), ps[2], ps[3]))
    off = np.where(veh, w / 4, w / 2 - 2.0)
    e = edges[rng.choice(len(edges), size=n, p=elen / elen.sum())]
    fwd = rng.random(n) < 0.5
    hx = np.where(fwd, e[:, 2], -e[:, 2])
    hy = np.where(fwd, e[:, 3], -e[:, 3])
    ni = np.where(fwd, e[:, 0] + e[:, 2], e[:, 0])          # the intersection ahead
    nj = np.where(fwd, e[:, 1] + e[:, 3], e[:, 1])
    a0 = np.where(e[:, 2] == 1, X[e[:, 0]], Y[e[:, 1]])
    a1 = np.where(e[:, 2] == 1, X[np.minimum(e[:, 0] + 1, len(X) - 1)], Y[np.minimum(e[:, 1] + 1, len(Y) - 1)])
    margin = off + 0.5
    s = a0 + margin + rng.random(n) * np.maximum(a1 - a0 - 2 * margin, 0.0)
    # lane line of heading h on a street through (X_i, Y_j): x = X_i + off*hy (moving along y), y = Y_j - off*hx
    x = np.where(hx != 0, s, X[e[:, 0]] + off * hy)
    y = np.where(hx != 0, Y[e[:, 1]] - off * hx, s)

    def decide(ni, nj, hx, hy, r):
        opts = np.stack([np.stack([hx, hy], 1), np.stack([-hy, hx], 1), np.stack([hy, -hx], 1)], 1)  # (k, 3, 2)
        ti, tj = ni[:, None] + opts[..., 0], nj[:, None] + opts[..., 1]
        ing = (ti >= 0) & (ti < len(X)) & (tj >= 0) & (tj < len(Y))
        okm = ing & ok_node[np.clip(ti, 0, len(X) - 1), np.clip(tj, 0, len(Y) - 1)]
        okm = np.where(okm.any(1)[:, None], okm, ing)
        p = _P_MOVES[None, :] * okm
        tot = p.sum(1)
        dead = tot == 0
        cum = np.cumsum(p, 1) / np.where(dead, 1.0, tot)[:, None]
        k = np.minimum((r[:, None] > cum).sum(1), 2)
        nh = opts[np.arange(len(k)), k]
        nh = np.where(dead[:, None], -np.stack([hx, hy], 1), nh)     # U-turn only in a 1-wide grid
        return nh[:, 0], nh[:, 1]

    mx, my = decide(ni, nj, hx, hy, rng.random(n))
    out = np.empty((n, n_steps, 3), dtype=np.float64)
    out[:, :, 2] = UE_HEIGHT_M
    for t in range(n_steps):   # loop over time, vectorised over UEs
        out[:, t, 0], out[:, t, 1] = x, y
        if t == n_steps - 1:
            break
        rem = speed * dt_s
        for _ in range(10_000):
            act = rem > 1e-9
            if not act.any():
                break
            along_x = hx != 0
            sign = np.where(along_x, hx, hy)
            pos = np.where(along_x, x, y)
            straight = (mx == hx) & (my == hy)
            target = np.where(along_x, np.where(straight, X[ni], X[ni] + off * my),
                              np.where(straight, Y[nj], Y[nj] - off * mx))
            dist = np.maximum((target - pos) * sign, 0.0)
            reach = act & (rem >= dist)
            move = np.where(reach, dist, np.where(act, rem, 0.0))
            x = np.where(along_x, x + hx * move, x)
            y = np.where(along_x, y, y + hy * move)
            x = np.where(reach & along_x, target, x)
            y = np.where(reach & ~along_x, target, y)
            rem = rem - move
            if reach.any():
                idx = np.flatnonzero(reach)
                hx[idx], hy[idx] = mx[idx], my[idx]
                ni[idx] += hx[idx]
                nj[idx] += hy[idx]
                ni = np.clip(ni, 0, len(X) - 1)
                nj = np.clip(nj, 0, len(Y) - 1)
                a, c = decide(ni[idx], nj[idx], hx[idx], hy[idx],
                              rng.random(idx.size))
                mx[idx], my[idx] = a, c
    if return_speed:
        return out, speed
    return out
