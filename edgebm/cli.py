"""The ``edgebm`` command.

Exit codes: 0 success, 2 bad input (bad profile, dataset, bundle, arguments), 3 over budget
(``export`` with nothing fitting, ``check`` failing the gate), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

EXIT_OK, EXIT_BAD_INPUT, EXIT_OVER_BUDGET, EXIT_INTERRUPTED = 0, 2, 3, 130


class CliError(Exception):
    """A user error: printed as one line, exit 2."""


def _array_shape(text: str) -> tuple[int, int]:
    try:
        r, c = (int(v) for v in text.lower().split("x"))
        return r, c
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ROWSxCOLS like 8x8, got {text!r}") from None


def _console(stderr: bool = True):
    """A rich console; wide when not attached to a terminal so tables in logs are not truncated."""
    from rich.console import Console


    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 140)


class _RichProgress:
    """Adapter from the pipeline's ``progress(stage, done, total, detail)`` to a rich progress bar."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("[bold]{task.fields[stage]:<7}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[detail]}"), console=_console(), transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "_RichProgress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, stage: str, done: float, total: float, detail: str = "") -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total, stage=stage, detail=detail)
        self.bar.update(self.tasks[stage], completed=done, total=total, detail=detail)


# ---------------------------------------------------------------- data
def cmd_data_generate(a: argparse.Namespace) -> int:
    from .data import save_dataset
    from .data.simulated import generate_dataset
    from .sim import ScenarioConfig

    try:
        cfg = ScenarioConfig(
            city=a.scenario, carrier_hz=a.carrier, bs_array=a.bs_array, ue_array=a.ue_array, sectors=a.sectors,
            set_b=a.set_b, set_a=a.set_a, snr_db=a.snr_db, n_subcarriers=a.subcarriers, region=a.region,
            codebook_a=a.codebook, codebook_seed=a.codebook_seed,
        )
    except (ValueError, TypeError) as e:
        raise CliError(f"scenario: {e}") from None
    traj = None
    if a.trajectories:
        try:
            n_ues, n_steps, dt = a.trajectories.split(":")
            traj = (int(n_ues), int(n_steps), float(dt))
        except ValueError:
            raise CliError(f"--trajectories expects N_UES:N_STEPS:DT_S like 50:100:0.02, got {a.trajectories!r}") from None
    if a.samples < 1:
        raise CliError(f"--samples must be >= 1, got {a.samples}")
    con = _console()
    with con.status(f"simulating {a.samples if traj is None else traj[0] * traj[1]} UE samples in {a.scenario}..."):
        ds = generate_dataset(cfg, n_samples=a.samples, seed=a.seed, trajectories=traj)
    path = save_dataset(ds, a.out)
    con.print(f"wrote {path}: {len(ds)} samples, Set B {ds.n_b} -> Set A {ds.n_a}, LOS {ds.los.mean():.0%}")
    return EXIT_OK


def cmd_data_info(a: argparse.Namespace) -> int:
    from rich.table import Table

    from .data import load_dataset

    ds = load_dataset(a.file)
    t = Table(title=str(a.file))
    t.add_column("field")
    t.add_column("shape")
    t.add_column("dtype")
    t.add_column("min", justify="right")
    t.add_column("max", justify="right")
    for k, v in ds.arrays.items():
        t.add_row(k, str(v.shape), str(v.dtype), f"{v.min():.4g}", f"{v.max():.4g}")
    _console(False).print(t)
    print(json.dumps(ds.meta, indent=2))
    return EXIT_OK


# ---------------------------------------------------------------- profiles
def cmd_profiles_list(a: argparse.Namespace) -> int:
    from rich.table import Table

    from .profiles import list_profiles, load_profile

    t = Table(title="device profiles")
    for col in ("name", "backend", "thr", "cycle ms", "budget ms", "MFLOPs", "params", "KiB", "precision"):
        t.add_column(col, no_wrap=True)
    for name in list_profiles():
        p = load_profile(name)
        t.add_row(
            p.name, p.compute.backend, str(p.compute.threads), f"{p.timing.beam_cycle_ms:g}", f"{p.timing.inference_budget_ms:g}",
            f"{p.limits.max_mflops:g}", f"{p.limits.max_params:,}", f"{p.limits.max_model_kib:g}",
            p.precision.preferred,
        )
    _console(False).print(t)
    return EXIT_OK


def cmd_profiles_show(a: argparse.Namespace) -> int:
    from .profiles import load_profile

    p = load_profile(a.name)
    if a.json:
        print(json.dumps(p.to_dict(), indent=2))
    else:
        print(Path(p.source).read_text(encoding="utf-8"), end="")
    return EXIT_OK


# ---------------------------------------------------------------- export / check
def _budget_table(report, title: str):
    from rich.table import Table

    t = Table(title=title)
    for col in ("line", "value", "limit", "unit", "status", "note"):
        t.add_column(col, justify="right" if col in ("value", "limit") else "left")
    colors = {"pass": "green", "fail": "bold red", "warn": "yellow", "info": "dim"}
    from .budget.gate import _fmt

    for l in report.lines:
        t.add_row(l.name, _fmt(l.value), _fmt(l.limit), l.unit, f"[{colors[l.status]}]{l.status.upper()}[/]", l.note)
    return t


def cmd_export(a: argparse.Namespace) -> int:

    from .pipeline import NothingFitsError, export_for_profile
    from .profiles import load_profile
    from .train import TrainConfig

    from .data import load_dataset

    prof = load_profile(a.profile)
    data = load_dataset(a.data) if a.data is not None else None  # validate before any progress output
    cfg = TrainConfig(seed=a.seed, epochs=a.epochs, soft_weight=0.2)
    con = _console(False)
    try:
        with _RichProgress() as prog:
            res = export_for_profile(prof, data, a.out, seed=a.seed, n_samples=a.samples, train_cfg=cfg, force=a.force, progress=prog)
    except NothingFitsError as e:
        con.print(_budget_table(e.report, f"budget: {prof.name} (FAIL)"))
        print(f"edgebm: over budget: {e}; no bundle written (use --force to write it anyway)", file=sys.stderr)
        return EXIT_OVER_BUDGET
    m = res.metrics
    con.print(_budget_table(res.report, f"budget: {res.manifest['family']} for {prof.name}"))
    con.print(
        f"held-out ({m['n']} samples): top-1 {m['top1']:.3f}  top-3 {m['top3']:.3f}  within-1dB {m['within_1db']:.3f}  "
        f"SE drop mean {m['se_drop_mean']:.4f} p90 {m['se_drop_p90']:.4f}"
    )
    con.print(f"parity: max |diff| {res.parity['max_abs_diff']:.2e}, top-1 agreement {res.parity['argmax_agreement']:.4f}")
    con.print(f"[bold]{res.report.verdict.upper()}[/] -> wrote {res.bundle_dir}/ ({', '.join(res.manifest['files'])}, manifest.json)")
    return EXIT_OK if res.report.verdict == "pass" else EXIT_OVER_BUDGET


def cmd_check(a: argparse.Namespace) -> int:
    import numpy as np

    from .budget import analyze_onnx, run_gate
    from .profiles import load_profile

    prof = load_profile(a.profile)
    stats = analyze_onnx(a.model)
    shape = stats.inputs[0]["shape"]
    dims = [d if isinstance(d, int) else 1 for d in shape]
    rng = np.random.default_rng(0)
    sample = (-90.0 + 10.0 * rng.standard_normal(dims)).astype(np.float32)
    report = run_gate(a.model, prof, sample, runs=a.runs)
    _console(False).print(_budget_table(report, f"budget: {a.model} on {prof.name}"))
    if report.verdict != "pass":
        print(f"edgebm: over budget: {report.reason()}", file=sys.stderr)
        return EXIT_OVER_BUDGET
    return EXIT_OK


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="edgebm", description="Beam prediction for UEs: train, compress, export per device profile, gate, emulate.")
    p.add_argument("--version", action="version", version=f"edgebm {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("data", help="generate or inspect BeamDataset files").add_subparsers(dest="data_cmd", required=True, metavar="SUBCOMMAND")
    g = d.add_parser("generate", help="simulate a scenario into a BeamDataset .npz")
    g.add_argument("--scenario", default="city0", help="city0..city3 (default city0)")
    g.add_argument("--samples", type=int, default=20000, help="UE drops (default 20000)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--set-b", type=int, default=16, help="wide beams measured (default 16)")
    g.add_argument("--set-a", type=int, default=64, help="narrow beams to predict (default 64)")
    g.add_argument("--snr-db", type=float, default=20.0, help="per-element SNR, dB (default 20)")
    g.add_argument("--carrier", type=float, default=28e9, help="carrier, Hz: 3.5e9, 15e9 or 28e9 (default 28e9)")
    g.add_argument("--bs-array", type=_array_shape, default=(8, 8), help="BS UPA ROWSxCOLS (default 8x8)")
    g.add_argument("--ue-array", type=_array_shape, default=(1, 1), help="UE UPA 1x1, 2x2, 4x4 or 8x8 (default 1x1)")
    g.add_argument("--sectors", type=int, default=1, help="1 or 3 BS sectors (default 1)")
    g.add_argument("--subcarriers", type=int, default=24, help="OFDM subcarriers (default 24)")
    g.add_argument("--region", default="all", help="all or a quadrant q0..q3 (default all)")
    g.add_argument("--codebook", default="dft", help="Set A codebook: dft or random (default dft)")
    g.add_argument("--codebook-seed", type=int, default=0)
    g.add_argument("--trajectories", default=None, metavar="N_UES:N_STEPS:DT_S", help="UEs moving along streets instead of drops")
    g.add_argument("--out", required=True, help="output .npz")
    g.set_defaults(func=cmd_data_generate)
    i = d.add_parser("info", help="validate and summarise a dataset")
    i.add_argument("file")
    i.set_defaults(func=cmd_data_info)

    pr = sub.add_parser("profiles", help="list or show device profiles").add_subparsers(dest="profiles_cmd", required=True, metavar="SUBCOMMAND")
    pr.add_parser("list", help="table of shipped profiles").set_defaults(func=cmd_profiles_list)
    s = pr.add_parser("show", help="print one profile")
    s.add_argument("name", help="profile name or path to a .toml")
    s.add_argument("--json", action="store_true", help="validated profile as JSON")
    s.set_defaults(func=cmd_profiles_show)

    e = sub.add_parser("export", help="train, export, gate and write export/<profile>/")
    e.add_argument("--profile", required=True, help="profile name or path to a .toml")
    e.add_argument("--data", default=None, help="BeamDataset .npz (default: simulate the embedded default scenario)")
    e.add_argument("--out", default=None, help="bundle folder (default export/<profile>)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--samples", type=int, default=20000, help="samples to simulate when --data is not given")
    e.add_argument("--epochs", type=int, default=40)
    e.add_argument("--force", action="store_true", help="write the bundle even if it fails the gate (manifest says so)")
    e.set_defaults(func=cmd_export)

    c = sub.add_parser("check", help="run the budget gate on any ONNX file")
    c.add_argument("model", help="model .onnx")
    c.add_argument("--profile", required=True)
    c.add_argument("--runs", type=int, default=500, help="timed single-sample runs (default 500)")
    c.set_defaults(func=cmd_check)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from .budget.graph import GraphError
    from .data import DatasetError
    from .deploy.onnx_export import ExportError
    from .profiles import ProfileError
    from .runtime import BundleError, InputError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (CliError, ProfileError, DatasetError, BundleError, InputError, GraphError, ExportError) as e:
        print(f"edgebm: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"edgebm: error: {e.filename or ''}: {e.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("edgebm: interrupted; nothing half-written was left behind", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
