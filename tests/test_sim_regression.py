"""Byte-identical outputs of the named scenarios: hashes recorded on main before the random scenario and the
simulator restructuring (issue 12), for drops, trajectories, 3 sectors, random codebooks, UE arrays.

Hash = sha256 over every dataset array and codebook array (name, dtype, shape, bytes; sorted by name) except the
``cb_*_psi`` arrays added later, plus sha256 of the metadata JSON. A change here means the simulator's output
changed for users: only acceptable on purpose, with a note in the commit.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from edgebm.data.simulated import generate_dataset
from edgebm.sim import ScenarioConfig

CASES = {
    "city0_drops": (ScenarioConfig(), 300, 5, None),
    "city1_ue4_256": (ScenarioConfig(city="city1", ue_array=(4, 4), set_a=256, snr_db=10.0), 200, 3, None),
    "city2_3sec": (ScenarioConfig(city="city2", sectors=3, carrier_hz=3.5e9), 200, 1, None),
    "city3_q2_random": (ScenarioConfig(city="city3", region="q2", codebook_a="random", codebook_seed=4, set_b=8), 200, 2, None),
    "city0_traj": (ScenarioConfig(ue_array=(2, 2)), 0, 7, (6, 20, 0.05)),
}
EXPECTED = {
    "city0_drops": ("cd1c43ad171509cb3331b8bdc6eae719ec8c58508b5e07a78d00b62d20cb2bae", "f0de61e607ebd1e9a9f07d450aa989f2cd7f22a013a2d11ae38099ad43b1e84a"),
    "city1_ue4_256": ("327ec6f728403e81d0d028706624cf87fcac397313e9a6bb86e34f550ec12f0a", "c6c5187dd8192b632aa2174d5dcc4d74f0de33e39a5f3ecb321963133c4a8bb6"),
    "city2_3sec": ("9915e9ab27fb22fa4b5bccfb55a1a0b5672c80ac3eee8a0df8f4b1f35c08c661", "6644585981b4f0917f281551968818a569743681e827df8516e0e3138ee8f239"),
    "city3_q2_random": ("9b334c4f051af7fd2fead4558abfb75fcc67c3ced63a3829b627373fd207767b", "9294be298cb05982aa7124cc86680125c59664b67a5570a4324faa2be4b5b26f"),
    "city0_traj": ("d58464ae24f3cd436962ca395a539b8e598e4df35374a6e12fcb639d450142a5", "aaa93fb41e4cc24f95b74953b5dfa4b6f6834e64848d00dace0352678afaac49"),
}


def _hash(arrays: dict[str, np.ndarray]) -> str:
    m = hashlib.sha256()
    for k in sorted(x for x in arrays if not x.endswith("_psi")):
        a = np.ascontiguousarray(arrays[k])
        m.update(k.encode())
        m.update(str(a.dtype).encode())
        m.update(str(a.shape).encode())
        m.update(a.tobytes())
    return m.hexdigest()


@pytest.mark.parametrize("name", list(CASES))
def test_named_scenarios_byte_identical(name):
    cfg, n, seed, traj = CASES[name]
    ds = generate_dataset(cfg, n, seed, trajectories=traj)
    got = (_hash({**ds.arrays, **ds.codebooks}), hashlib.sha256(json.dumps(ds.meta, sort_keys=True).encode()).hexdigest())
    assert got == EXPECTED[name]
    for tag in ("a", "b"):    # the added panel-frame spatial frequencies are those of the codebooks
        assert ds.codebooks[f"cb_{tag}_psi"].shape == (ds.codebooks[f"cb_{tag}_weights"].shape[0], 2)
