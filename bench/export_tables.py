"""Issue "compression, export per device profile": the candidate table of every shipped profile.

Runs the real ``edgebm export --profile P`` job (default scenario, default settings) for each profile
into a temporary folder and collects each bundle's ``budget.md`` (gate lines, held-out metrics and
the table of every candidate tried, with why it was rejected) into ``bench/results/export_candidates.md``.

    python -m bench.export_tables [--profiles smartphone,iot,fwa,vehicle]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from .common import RESULTS, header, write_text


def run(profiles: list[str], out_dir: Path = RESULTS) -> str:
    from edgebm.pipeline import NothingFitsError, export_for_profile

    lines = header("Export candidates per device profile", f"python -m bench.export_tables --profiles {','.join(profiles)}",
                   ["each section = one `edgebm export --profile P` run on the default scenario (20000 UEs, seed 0); "
                    "latencies are host-measured and device-scaled by the profile"])
    with tempfile.TemporaryDirectory() as td:
        for name in profiles:
            t0 = time.perf_counter()
            try:
                res = export_for_profile(name, None, Path(td) / name)
                body = (res.bundle_dir / "budget.md").read_text()
                body = body.replace("# Budget report", f"## `{name}`: chosen", 1).replace("\n## ", "\n### ")
                body = body.replace(f"## `{name}`: chosen", f"\n## `{name}`: chosen", 1)
            except NothingFitsError as e:
                body = f"\n## `{name}`: nothing fits\n\n{e}\n"
            lines += [body.strip(), "", f"_export wall time: {time.perf_counter() - t0:.0f} s_", ""]
    text = "\n".join(lines)
    write_text(out_dir / "export_candidates.md", text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.export_tables")
    p.add_argument("--profiles", default="smartphone,iot,fwa,vehicle")
    a = p.parse_args(argv)
    print(run([s.strip() for s in a.profiles.split(",")]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
