"""``python -m bench pretrain``: produce the pretrained weights shipped in ``edgebm/_pretrained/``.

Full run: :data:`edgebm.train.pretrain.PretrainConfig` defaults (teacher, distilled student, Reptile head) written
into the package folder, with timings and the sha256 of every file in ``bench/results/pretrain.md``. ``--quick``
runs :data:`~edgebm.train.pretrain.QUICK` twice into temporary folders and checks that the two runs give the same
bytes (the shipped files are not touched).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

from .common import RESULTS, header, md_table, write_text


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def run(quick: bool = False, out_dir: Path = RESULTS) -> str:
    import dataclasses
    import os

    from edgebm.models.pretrained import PRETRAINED_DIR
    from edgebm.train.pretrain import QUICK, PretrainConfig, pretrain

    cfg = QUICK if quick else PretrainConfig()
    t0 = time.perf_counter()
    runs = []
    if quick:
        for _ in range(2):
            with tempfile.TemporaryDirectory() as td:
                s = pretrain(cfg, td, progress=lambda m: print(m, flush=True))
                runs.append((s, {p.name: (_sha(p), p.stat().st_size) for p in sorted(Path(td).glob("*.npz"))}))
    else:
        s = pretrain(cfg, PRETRAINED_DIR, progress=lambda m: print(m, flush=True))
        runs.append((s, {p.name: (_sha(p), p.stat().st_size) for p in sorted(PRETRAINED_DIR.glob("*.npz"))}))
    wall = time.perf_counter() - t0
    s, files = runs[0]
    stable = None if len(runs) < 2 else all(runs[0][1][k][0] == runs[1][1][k][0] for k in runs[0][1])
    lines = header("Pretrained weights (teacher, distilled student, meta-learned head)",
                   f"python -m bench pretrain{' --quick' if quick else ''}",
                   [f"config: {dataclasses.asdict(cfg)}",
                    f"wall time {wall:.0f} s for {len(runs)} run(s) on this machine ({os.cpu_count()} logical CPUs, shared; torch 1 thread)",
                    "output: " + ("two runs into temporary folders (shipped files untouched)" if quick else f"`{PRETRAINED_DIR.relative_to(PRETRAINED_DIR.parents[1])}/`")])
    lines += ["## Stages", ""]
    lines += md_table(["stage", "val top-1 (all parts)", "val top-1 (DFT-64 parts)", "epochs", "seconds"],
                      [[k, round(s[k]["val_top1_all"], 4), round(s[k]["val_top1_dft64"], 4), s[k]["epochs"], s[k]["seconds"]]
                       for k in ("teacher", "student")])
    lines += ["", f"Meta head: {s['meta_head']}; corpus simulated in {s['seconds_corpus']} s; total {s['seconds_total']} s.", ""]
    lines += ["## Corpus parts", ""]
    lines += md_table(["part", "samples", "cities", "Set A"], [[c["part"], c["n"], c["scenario"]["cities"],
                      f"{c['scenario']['codebook_a']} {c['scenario']['set_a']}"] for c in s["corpus"]])
    lines += ["", "## Files", ""]
    lines += md_table(["file", "bytes", "sha256"], [[k, v[1], v[0]] for k, v in files.items()])
    if stable is not None:
        lines += ["", f"Byte-stable across two runs with the same seed: **{'yes' if stable else 'NO'}**."]
    text = "\n".join(lines) + "\n"
    write_text(out_dir / f"pretrain{'_quick' if quick else ''}.md", text)
    return text
