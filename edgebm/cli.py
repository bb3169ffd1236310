"""The ``edgebm`` command.

Exit codes (declared in :mod:`edgebm.errors`): 0 success, 2 bad input (bad profile, dataset, bundle,
argument: one line on stderr, nothing written), 3 over budget (``export`` with nothing fitting,
``check`` failing the gate), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). Cheap checks run
first: arguments, profile, output folder, keys, dataset size — then the expensive work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import (EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_OVER_BUDGET, EXIT_TERMINATED, ConfigError,
                     EdgebmError)
from .parallel import add_ray_argument


class CliError(EdgebmError):
    """A bad argument: printed as one line, exit 2."""


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so ``finally`` blocks and temp-file cleanups run (like KeyboardInterrupt)."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line (no usage block) and lets ``main`` return 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{message} (see {self.prog} --help)")


def _int_arg(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in [lo, hi]."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be an integer {'>= ' + str(lo) if hi is None else f'in [{lo}, {hi}]'}, got {text!r}")
        return v

    return parse


def _float_arg(lo: float, hi: float = math.inf, lo_open: bool = True) -> Callable[[str], float]:
    """argparse type: a finite number in (lo, hi] (or [lo, hi] with ``lo_open=False``); refuses nan and inf."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
        if not ok:
            bound = (f"{'>' if lo_open else '>='} {lo:g}" if not math.isfinite(hi)
                     else f"in {'(' if lo_open else '['}{lo:g}, {hi:g}]")
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text!r}")
        return v

    return parse


_SEED = _int_arg(0, 2**32 - 1)


def _reference_arg(text: str) -> str | float:
    """argparse type of ``--monitor-reference``: ``activation``, ``validated`` or a miss rate in (0, 1)."""
    if text in ("activation", "validated"):
        return text
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'activation', 'validated' or a miss rate in (0, 1), got {text!r}") from None
    if not (math.isfinite(v) and 0 < v < 1):
        raise argparse.ArgumentTypeError(f"a miss rate must be in (0, 1), got {text!r}")
    return v


def _is_report_folder(path: Path) -> bool:
    """A previous ``edgebm emulate`` report: kpis.json plus Markdown/JSON/PNG files, no sub-folders."""
    entries = list(path.iterdir())
    return (path / "kpis.json").is_file() and all(p.is_file() and p.suffix in (".json", ".md", ".png") for p in entries)


def _split_sizes(n_units: int) -> tuple[int, int, int]:
    """(train, val, test) sizes of the 0.8 / 0.1 / 0.1 split of ``n_units`` samples or trajectories (as BeamDataset.split)."""
    import numpy as np

    from .data.dataset import DEFAULT_SPLIT

    b = np.round(np.cumsum((0.0, *DEFAULT_SPLIT)) * n_units).astype(int)  # the bounds BeamDataset.split computes
    return int(b[1] - b[0]), int(b[2] - b[1]), int(b[3] - b[2])


def _check_split(n_units: int, arg: str, minimum: tuple[int, int, int], unit: str = "samples") -> None:
    sizes = _split_sizes(n_units)
    if any(s < m for s, m in zip(sizes, minimum)):
        need = next(n for n in range(n_units, 100_000) if all(s >= m for s, m in zip(_split_sizes(n), minimum)))
        raise ConfigError(arg, f"{n_units} {unit} split 80/10/10 into train/val/test {sizes[0]}/{sizes[1]}/{sizes[2]}",
                          f"give at least {need} {unit} (at least {minimum[0]}/{minimum[1]}/{minimum[2]})")


def _units(ds: Any) -> tuple[int, str]:
    traj = ds.arrays.get("traj_id")
    if traj is not None:
        import numpy as np

        return int(len(np.unique(traj))), "trajectories"
    return len(ds), "samples"


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
def _radio_error(e: Exception) -> CliError:
    """A ScenarioConfig / RandomScenario ConfigError as one line naming the command-line flag."""
    from .sim.config import RADIO_OPTIONS

    name = str(getattr(e, "field", "")).rsplit(".", 1)[-1]
    flag = {**{k: v[0] for k, v in RADIO_OPTIONS.items()}, "cities": "--cities", "city": "--scenario"}.get(name)
    if flag and hasattr(e, "problem"):
        return CliError(f"{flag}: {e.problem}" + (f"; {e.fix}" if e.fix else ""))
    return CliError(f"scenario: {e}")


def _snr_range(text: str) -> tuple[float, float]:
    import math

    try:
        parts = [float(v) for v in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or not all(math.isfinite(v) for v in parts):
        raise CliError(f"--snr-db: expected a number (dB) like 20 or a range LOW:HIGH like 0:30, got {text!r}")
    return parts[0], parts[-1]


def _scenario_from_args(a: argparse.Namespace):
    """ScenarioConfig (named city) or RandomScenario from the ``data generate`` options."""
    from .errors import ConfigError
    from .sim import RandomScenario, ScenarioConfig
    from .sim.config import radio_default

    snr = _snr_range(a.snr_db) if a.snr_db is not None else (
        RandomScenario().snr_db if a.scenario == "random" else (radio_default("snr_db"),) * 2)
    rand_ue, rand_fc = a.ue_array == "random", a.carrier == "random"
    ue = (1, 1) if rand_ue else _array_shape_or_cli(a.ue_array, "--ue-array")
    try:
        fc = 28e9 if rand_fc else float(a.carrier)
    except ValueError:
        raise CliError(f"--carrier: expected a frequency in Hz like 28e9 or 'random', got {a.carrier!r}") from None
    radio = dict(carrier_hz=fc, bs_array=a.bs_array, ue_array=ue, sectors=a.sectors, set_b=a.set_b, set_a=a.set_a,
                 n_subcarriers=a.subcarriers, codebook_a=a.codebook, codebook_seed=a.codebook_seed)
    try:
        if a.scenario == "random":
            if a.region != "all":
                raise CliError("--region: quadrants are not available with --scenario random; leave it at 'all'")
            return RandomScenario(cities=100 if a.cities is None else a.cities, snr_db=snr, random_ue_array=rand_ue,
                                  random_carrier=rand_fc, base=ScenarioConfig(**radio))
        for flag, bad in (("--cities", a.cities is not None), ("--snr-db", snr[0] != snr[1]),
                          ("--ue-array", rand_ue), ("--carrier", rand_fc)):
            if bad:
                raise CliError(f"{flag}: {'a range / random value' if flag != '--cities' else 'a city count'} "
                               "needs --scenario random")
        return ScenarioConfig(city=a.scenario, snr_db=snr[0], region=a.region, **radio)
    except ConfigError as e:
        raise _radio_error(e) from None
    except TypeError as e:
        raise CliError(f"scenario: {e}") from None


def _array_shape_or_cli(text: str, flag: str) -> tuple[int, int]:
    try:
        return _array_shape(text)
    except argparse.ArgumentTypeError as e:
        raise CliError(f"{flag}: {e}") from None


def _check_dataset_outputs(dataset: str | None, paths: str | None = None, dataset_arg: str = "--out",
                           paths_arg: str = "--paths-out") -> Callable[[], None]:
    """Check a command's output files before any work: the dataset ``.npz`` and the path table may be new files
    or a previous output of the same kind (replaced atomically); any other existing file is refused (edgebm never
    overwrites files it did not create), and two outputs may not name the same file. Returns the check, to run
    again just before writing (the files may have appeared during a long simulation)."""
    from .data.dataset import is_dataset_file
    from .data.paths import is_path_table_file
    from .outputs import check_distinct_outputs, check_output_file

    def check() -> None:
        check_distinct_outputs({dataset_arg: dataset, paths_arg: paths})
        if dataset is not None:
            check_output_file(dataset, dataset_arg, is_dataset_file, "dataset")
        if paths is not None:
            check_output_file(paths, paths_arg, is_path_table_file, "path table")

    check()
    return check


def cmd_data_generate(a: argparse.Namespace) -> int:
    import numpy as np

    from .data import save_dataset
    from .data.simulated import generate_dataset
    from .sim import RandomScenario

    scn = _scenario_from_args(a)
    is_random = isinstance(scn, RandomScenario)
    traj = None
    if a.trajectories:
        if is_random:
            raise CliError("--trajectories: not available with --scenario random (UE drops only)")
        try:
            n_ues, n_steps, dt = a.trajectories.split(":")
            traj = (int(n_ues), int(n_steps), float(dt))
            if traj[0] < 1 or traj[1] < 1 or not math.isfinite(traj[2]) or traj[2] <= 0:
                raise ValueError
        except ValueError:
            raise CliError(f"--trajectories expects N_UES:N_STEPS:DT_S (integers >= 1, DT_S > 0 s) like 50:100:0.02, "
                           f"got {a.trajectories!r}") from None
    if a.paths_out and is_random:
        raise CliError("--paths-out: not available with --scenario random (each city has its own frame)")
    con = _console()
    where = f"{scn.cities} random cities" if is_random else a.scenario
    n_total = a.samples if traj is None else traj[0] * traj[1]
    if a.shards is not None:
        return _generate_shards(a, scn, traj, con, where, n_total)
    if a.workers != 1 or a.ray is not None:
        flag = "--ray" if a.ray is not None else "--workers"
        raise CliError(f"{flag}: parallel generation needs --shards N (shards are generated independently)")
    if Path(a.out).is_dir():
        raise CliError(f"--out: {a.out} is a folder; pass --shards N to write a shard folder, or give a .npz file name")
    outputs = _check_dataset_outputs(a.out, a.paths_out)   # before simulating
    with con.status(f"simulating {n_total} UE samples in {where}..."):
        if a.paths_out:
            from .data.paths import save_path_table
            from .data.simulated import dataset_from_sim
            from .sim import simulate, simulate_trajectories
            from .sim.pathtable import sim_to_path_table

            res = (simulate_trajectories(scn, n_ues=traj[0], n_steps=traj[1], dt_s=traj[2], seed=a.seed) if traj
                   else simulate(scn, n_samples=a.samples, seed=a.seed))
            ds = dataset_from_sim(res)
            table = sim_to_path_table(res)
        else:
            ds = generate_dataset(scn, n_samples=a.samples, seed=a.seed, trajectories=traj)
    outputs()                                   # still safe after the long simulation
    if a.paths_out:
        save_path_table(a.paths_out, table)
        con.print(f"wrote path table {a.paths_out}")
    path = save_dataset(ds, a.out)
    extra = f", {len(np.unique(ds.city_id))} cities" if is_random else ""
    con.print(f"wrote {path}: {len(ds)} samples, Set B {ds.n_b} -> Set A {ds.n_a}, LOS {ds.los.mean():.0%}{extra}")
    return EXIT_OK


def _generate_shards(a: argparse.Namespace, scn: Any, traj: Any, con: Any, where: str, n_total: int) -> int:
    from .data.shards import ShardSpec, check_shards_out, read_index, write_shards
    from .errors import ConfigError

    if a.paths_out:
        raise CliError("--paths-out: not available with --shards (write a single file to export paths)")
    check_shards_out(a.out, "--out")            # before the progress bar and any simulation
    try:
        spec = ShardSpec(scn, a.samples, a.seed, a.shards, trajectories=traj)
    except ConfigError as e:
        raise CliError(f"--{e.field.split('.')[0].replace('_', '-')}: {e.problem}" + (f"; {e.fix}" if e.fix else "")) from None
    parallel = a.ray is not None or a.workers > 1
    if parallel:
        from .outputs import check_output_folder
        from .data.shards import _is_shard_folder

        check_output_folder(a.out, "--out", _is_shard_folder, "shard folder")   # before starting workers or Ray
    with (_executor(a) if parallel else _no_executor()) as ex, _RichProgress() as prog:
        if ex is not None:
            con.print(f"generating {spec.shards} shards on {ex.describe()}")
        prog("shards", 0, spec.shards, f"{n_total} UE samples in {where}")
        report = lambda done, total: prog("shards", done, total, f"{n_total} UE samples in {where}")  # noqa: E731
        out = write_shards(spec, a.out, progress=report, executor=ex)
    idx = read_index(out)
    con.print(f"wrote {out}/: {idx['n_samples']} samples in {len(idx['shards'])} shards + index.json, "
              f"Set B {idx['set_b']} -> Set A {idx['set_a']}")
    return EXIT_OK


def _executor(a: argparse.Namespace, threads: int = 1) -> Any:
    """The :class:`edgebm.parallel.Executor` for ``--ray`` / ``--workers`` (Ray is imported only with ``--ray``)."""
    from .parallel import make_executor

    return make_executor(ray=getattr(a, "ray", None), workers=getattr(a, "workers", 1), threads=threads)


@contextlib.contextmanager
def _no_executor() -> Any:
    yield None


def cmd_data_from_paths(a: argparse.Namespace) -> int:
    from .data import save_dataset
    from .data.paths import dataset_from_path_table, load_path_table
    from .errors import ConfigError
    from .outputs import check_distinct_outputs
    from .sim import ScenarioConfig

    try:    # the radio options first (cheap), with the flag's name in the message
        ScenarioConfig(bs_array=a.bs_array, ue_array=a.ue_array, set_b=a.set_b, set_a=a.set_a, snr_db=a.snr_db,
                       n_subcarriers=a.subcarriers, downtilt_deg=8.0 if a.downtilt is None else a.downtilt)
    except ConfigError as e:
        if e.field.endswith("downtilt_deg"):
            raise CliError(f"--downtilt: {e.problem}; {e.fix}") from None
        raise _radio_error(e) from None
    check_distinct_outputs({"PATHS (the input path table)": a.paths, "--out": a.out})   # the input table is not an output
    outputs = _check_dataset_outputs(a.out)
    table = load_path_table(a.paths)
    try:
        ds, info = dataset_from_path_table(
            table, bs_array=a.bs_array, ue_array=a.ue_array, set_b=a.set_b, set_a=a.set_a, snr_db=a.snr_db,
            n_subcarriers=a.subcarriers, seed=a.seed, boresight_az_deg=a.boresight_az, downtilt_deg=a.downtilt,
        )
    except (ValueError, TypeError) as e:
        if type(e).__name__ == "DatasetError":
            raise
        raise CliError(f"{a.paths}: {e}") from None
    outputs()
    path = save_dataset(ds, a.out)
    _console().print(f"wrote {path}: {len(ds)} UEs ({info.get('n_dropped', 0)} without any path dropped), "
                     f"Set B {ds.n_b} -> Set A {ds.n_a}, LOS {ds.los.mean():.0%}")
    return EXIT_OK


def cmd_data_raytrace(a: argparse.Namespace) -> int:
    from .data.paths import save_path_table
    from .data.raytrace import RaytraceUnavailable, raytrace_scene

    try:
        tx = tuple(float(v) for v in a.tx.split(","))
        gx, gy, gz = a.grid.split(";")
        grid = (tuple(float(v) for v in gx.split(",")), tuple(float(v) for v in gy.split(",")), float(gz))
        grid = ((grid[0][0], grid[0][1], int(grid[0][2])), (grid[1][0], grid[1][1], int(grid[1][2])), grid[2])
        if len(tx) != 3:
            raise ValueError
    except ValueError:
        raise CliError("--tx expects X,Y,Z (m) and --grid 'X0,X1,NX;Y0,Y1,NY;Z' (m)") from None
    outputs = _check_dataset_outputs(None, a.out, paths_arg="--out")   # before ray tracing
    info: dict = {}
    try:
        with _console().status(f"ray tracing {a.scene} at {a.carrier / 1e9:g} GHz, depth {a.max_depth}..."):
            table = raytrace_scene(a.scene, tx=tx, grid=grid, carrier_hz=a.carrier, max_depth=a.max_depth, seed=a.seed, info=info)
    except RaytraceUnavailable as e:
        raise CliError(str(e)) from None
    outputs()
    save_path_table(a.out, table)
    _console().print(f"wrote {a.out}: {len(table['rx_pos'])} receivers with paths ({info.get('n_dropped', 0)} without any path dropped)")
    return EXIT_OK


def cmd_data_info(a: argparse.Namespace) -> int:
    import numpy as np
    from rich.table import Table

    from .data import open_dataset

    ds = open_dataset(a.file)          # a file or a shard folder; statistics one shard at a time
    stats: dict[str, list[Any]] = {}
    for j in range(ds.n_shards):
        part = ds.shard(j)
        for k, v in part.arrays.items():
            lo, hi = (float(v.min()), float(v.max())) if v.size else (np.nan, np.nan)
            st = stats.setdefault(k, [v.shape[1:], v.dtype, lo, hi])
            st[2], st[3] = min(st[2], lo), max(st[3], hi)
    title = str(a.file) + (f" ({ds.n_shards} shards)" if ds.n_shards > 1 or Path(a.file).is_dir() else "")
    t = Table(title=title)
    for col, just in (("field", "left"), ("shape", "left"), ("dtype", "left"), ("min", "right"), ("max", "right")):
        t.add_column(col, justify=just)
    for k, (tail, dtype, lo, hi) in stats.items():
        t.add_row(k, str((len(ds),) + tuple(tail)), str(dtype), f"{lo:.4g}", f"{hi:.4g}")
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
    from .numfmt import fmt_num

    for l in report.lines:
        t.add_row(l.name, fmt_num(l.value), fmt_num(l.limit), l.unit, f"[{colors.get(l.status, 'dim')}]{l.status.upper()}[/]", l.note)
    return t


def _candidates_table(cands, title: str):
    from rich.table import Table

    from .pipeline.report import CANDIDATE_COLUMNS, candidate_table_rows

    t = Table(title=title)
    numeric = {"top-1 val", "MFLOPs", "params", "KiB", "device p99 ms", "cost"}
    for col in CANDIDATE_COLUMNS:
        t.add_column(col, justify="right" if col in numeric else "left")
    colors = {"chosen": "[bold green]CHOSEN[/]", "pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]"}
    for row in candidate_table_rows(cands):
        row[8] = colors.get(row[8], row[8])
        t.add_row(*row)
    return t


def cmd_export(a: argparse.Namespace) -> int:
    from .data import load_dataset
    from .deploy.bundle import bundle_out_dir, sign_bundle
    from .pipeline import (DEFAULT_SAMPLES, SOFT_WEIGHT, NothingFitsError, TeacherSource, check_families, export_profiles,
                           resolve_profiles)
    from .train import TrainConfig

    profs = resolve_profiles(a.profile)
    if not profs:
        raise CliError("--profile: no profile named (give NAME, NAME,NAME,... or all)")
    families = [f.strip() for f in a.families.split(",")] if a.families else None
    for prof in profs:
        try:
            check_families(prof, families)
        except ValueError as e:
            if families is None:
                from .models.registry import family_names

                raise ConfigError("models.families", f"{', '.join(prof.models.families)}: no family export can build",
                                  f"allow at least one of {', '.join(family_names(exportable=True))} in [models] families",
                                  where=prof.source) from None
            raise CliError(f"--families: {e}") from None
    # cheap checks before any simulation or training: output folders, teacher run, signing key, data size
    single = len(profs) == 1
    out_dirs = {p.name: bundle_out_dir(a.out if single else (None if a.out is None else Path(a.out) / p.name), p.name, arg="--out")
                for p in profs}
    teacher = None
    if a.teacher:
        if not Path(a.teacher).is_dir():
            raise CliError(f"--teacher {a.teacher}: no such run folder (train one with edgebm train --model teacher ...)")
        teacher = TeacherSource("run", run_dir=Path(a.teacher))
    sign_key = None
    if a.sign_key:
        from .runtime.signing import load_private_key

        sign_key = load_private_key(a.sign_key, arg="--sign-key")
    data = load_dataset(a.data) if a.data is not None else None  # validate before any progress output
    if data is not None:
        n, unit = _units(data)
        _check_split(n, "--data", (2, 2, 2), unit)
    else:
        _check_split(a.samples or DEFAULT_SAMPLES, "--samples", (2, 2, 2))
    if a.search == "tune" and a.ray is None:
        raise CliError("--search tune: needs --ray (local, or a cluster's HOST:PORT): its trials run on Ray Tune")
    if a.tune_trials is not None and a.search != "tune":
        raise CliError("--tune-trials: only with --search tune")
    cfg = TrainConfig(seed=a.seed, epochs=a.epochs, soft_weight=SOFT_WEIGHT) if a.epochs else None
    con = _console(False)
    with (_executor(a) if a.ray is not None else _no_executor()) as ex, _RichProgress() as prog:
        search = None
        if a.search == "tune":
            from .search_tune import DEFAULT_TRIALS, TuneSearch

            search = TuneSearch(ex, a.tune_trials or DEFAULT_TRIALS)
        if ex is not None:
            con.print(f"students{' and Tune trials' if search else ''} on {ex.describe()}")
        results = export_profiles(profs, data, None, seed=a.seed, n_samples=a.samples or DEFAULT_SAMPLES, train_cfg=cfg, families=families,
                                  teacher=teacher, force=a.force, progress=prog, out_dirs=out_dirs, executor=ex, prune_search=search)
    code = EXIT_OK
    for name, res in results.items():
        if isinstance(res, NothingFitsError):
            con.print(_candidates_table(res.candidates, f"candidates for {name}: none fits"))
            print(f"edgebm: over budget: {res}; no bundle written for {name} (use --force to write the most accurate one anyway)",
                  file=sys.stderr)
            code = EXIT_OVER_BUDGET
            continue
        if sign_key is not None:
            signed = sign_bundle(res.bundle_dir, sign_key)
            con.print(f"signed {name} with key {signed.signature['key_id']} (ed25519)")  # type: ignore[index]
        m = res.metrics
        con.print(_candidates_table(res.candidates, f"candidates for {name} (chosen on validation: {res.manifest['selection']['rule']})"))
        con.print(_budget_table(res.report, f"budget: {res.chosen.name} for {name}"))
        con.print(
            f"chosen {res.chosen.name}: test ({m['n']} samples, read once) top-1 {m['top1']:.3f}  top-3 {m['top3']:.3f}  "
            f"within-1dB {m['within_1db']:.3f}  SE drop mean {m['se_drop_mean']:.4f} p90 {m['se_drop_p90']:.4f}"
        )
        t = res.teacher
        if t is not None:
            ratio = t["mflops"] / max(res.chosen.mflops or 0.0, 1e-12)
            con.print(f"teacher {t['family']} ({t['source']}): {t['mflops']:.3f} MFLOPs, test top-1 {t['top1_test']:.3f} -> shipped "
                      f"{ratio:.1f}x fewer FLOPs, {100 * (m['top1'] - t['top1_test']):+.2f} pp" + (f"  [{t['note']}]" if t["note"] else ""))
        nc = res.manifest.get("named_cities") or {}
        if nc.get("computed"):
            con.print("named cities (fresh drops, information only): " + "  ".join(
                f"{c} {v['top1']:.3f}" + (" (seen)" if v["seen_in_training"] else "") for c, v in nc["cities"].items())
                + f"  mean {nc['mean_top1']:.3f}")
        if "argmax_agreement" in res.parity:
            con.print(f"parity ({res.parity.get('vs', 'source')}, val): top-1 agreement {res.parity['argmax_agreement']:.4f}"
                      + (f", max |diff| {res.parity['max_abs_diff']:.2e}" if "max_abs_diff" in res.parity else ""))
        if "tensorrt" in res.manifest and not res.manifest["tensorrt"]["built"]:
            con.print(f"[yellow]TensorRT engine not built: {res.manifest['tensorrt']['reason']}; the bundle ships the ONNX model (onnxruntime fallback)[/]")
        verdict = res.manifest["verdict"]
        con.print(f"[bold]{verdict.upper()}[/] -> wrote {res.bundle_dir}/ ({', '.join(res.manifest['files'])}, manifest.json)")
        if verdict != "pass":
            code = EXIT_OVER_BUDGET
    return code


def cmd_check(a: argparse.Namespace) -> int:
    import numpy as np

    from .budget import analyze_onnx, run_gate
    from .profiles import load_profile

    prof = load_profile(a.profile)
    if not Path(a.model).is_file():
        raise ConfigError("model", f"{a.model}: no such file", "give the path of an .onnx model")
    stats = analyze_onnx(a.model)
    shape = stats.inputs[0]["shape"]
    dims = [d if isinstance(d, int) else 1 for d in shape]
    rng = np.random.default_rng(0)
    sample = (-90.0 + 10.0 * rng.standard_normal(dims)).astype(np.float32)
    report = run_gate(a.model, prof, sample, runs=a.runs)
    import tempfile

    from .deploy.targets import check_targets

    with tempfile.TemporaryDirectory(prefix="edgebm-check-") as tmp:  # the profile's targets: accelerator, ORT format, C, TensorRT
        n_rows = shape[0] if isinstance(shape[0], int) else 500  # a graph with a fixed batch takes exactly that many rows
        rows = (-90.0 + 10.0 * rng.standard_normal((n_rows, *dims[1:]))).astype(np.float32)
        report.lines += check_targets(a.model, prof, tmp, x=rows, latency_runs=a.runs).lines
    _console(False).print(_budget_table(report, f"budget: {a.model} on {prof.name}"))
    if report.verdict != "pass":
        print(f"edgebm: over budget: {report.reason()}", file=sys.stderr)
        return EXIT_OVER_BUDGET
    return EXIT_OK


# ---------------------------------------------------------------- train / evaluate
def _trusted_keys(paths: Sequence[str]) -> list[Any] | None:
    """The ``--trusted-key`` public keys (None when none is given); a missing or bad key file is one line, exit 2."""
    if not paths:
        return None
    from .runtime.signing import load_public_key

    return [load_public_key(k, arg="--trusted-key") for k in paths]


def _add_trusted_key(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trusted-key", action="append", default=[], metavar="KEY.pub.pem",
                   help="refuse the bundle unless it is signed by this ed25519 public key (repeatable; extra: edgebm[sign])")


def _parse_params(items: list[str]) -> dict[str, Any]:
    """``--param key=value`` pairs; values parsed as JSON when they are JSON (numbers, lists), else strings."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise CliError(f"--param expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
        if isinstance(out[k], list):
            out[k] = tuple(tuple(x) if isinstance(x, list) else x for x in out[k])
    return out


def cmd_train(a: argparse.Namespace) -> int:
    from .data import load_dataset
    from .models.estimator import ALL_FAMILIES, ModelError
    from .pipeline import train_run
    from .pipeline.train_job import check_run_out, check_train_memory
    from .train import TrainConfig

    if a.model not in ALL_FAMILIES:
        raise CliError(f"--model {a.model!r}: unknown family (known: {', '.join(ALL_FAMILIES)})")
    check_run_out(a.out, "--out")  # before loading data or training
    check_train_memory(a.data, a.model, distil=bool(a.distil_from), arg="--data")  # from the headers, before loading
    ds = load_dataset(a.data)
    n, unit = _units(ds)
    _check_split(n, "--data", (2, 1, 1), unit)
    try:
        cfg = TrainConfig(epochs=a.epochs, seed=a.seed, soft_weight=a.soft_labels, soft_temperature=a.temperature,
                          hard_loss=a.loss, lr=a.lr, batch_size=a.batch_size, patience=a.patience)
    except ValueError as e:
        raise CliError(str(e)) from None
    params = _parse_params(a.param)
    with _RichProgress() as prog:
        try:
            res = train_run(ds, a.model, a.out, cfg, params, distil_from=a.distil_from, data_path=str(a.data), arg="--out",
                            progress=lambda e, n, row: prog("train", e, n, f"val top-1 {row.get('val_top1', float('nan')):.3f}"))
        except ModelError as e:
            where = "--distil-from" if a.distil_from and "teacher" in str(e) else f"--model {a.model}"
            raise CliError(f"{where}: {e}") from None
    metrics, r = res.metrics, res.model.result
    con = _console(False)
    if "top1" in metrics:
        con.print(f"{a.model}: held-out top-1 {metrics['top1']:.3f} top-3 {metrics['top3']:.3f} within-1dB {metrics['within_1db']:.3f} "
                  f"SE drop {metrics['se_drop_mean']:.4f} (p90 {metrics['se_drop_p90']:.4f}); best epoch {r.best_epoch}/{r.epochs_run}")
    else:
        con.print(f"{a.model}: " + "  ".join(f"t+{x['slot']}: top-1 {x['top1']:.3f} top-3 {x['top3']:.3f}" for x in metrics["per_slot"]))
    con.print(f"wrote {res.out}/ (model, config.json, metrics.json, history.json)")
    return EXIT_OK


def cmd_evaluate(a: argparse.Namespace) -> int:
    from rich.table import Table

    from .data import load_dataset
    from .data.shards import check_memory
    from .evaluate import COLUMNS, MEMORY_FACTOR, choose_split, evaluation_rows, scores_from
    from .models.estimator import ModelError
    from .numfmt import fmt_num

    src = Path(a.source)
    if not src.exists():
        raise CliError(f"{src}: no such run or bundle folder")
    keys = _trusted_keys(a.trusted_key)
    if keys:  # cheap: refuse an unsigned, untrusted or tampered bundle before loading any data
        if not (src / "manifest.json").is_file():
            raise ConfigError("--trusted-key", f"{src} is a run folder (edgebm train), not a bundle",
                              "signatures cover bundles (edgebm export); drop --trusted-key to evaluate a run folder you made")
        from .runtime import read_manifest

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # extra files: reported once when the Predictor opens the bundle
            read_manifest(src, trusted_keys=keys)
    check_memory(a.data, "--data", MEMORY_FACTOR, "edgebm evaluate")   # from the headers, before loading
    ds, split = choose_split(load_dataset(a.data), src, a.split, a.seed)
    try:
        label, scores = scores_from(src, ds, trusted_keys=keys)
    except ModelError as e:
        raise CliError(str(e)) from None
    if scores.shape != (len(ds), ds.n_a):
        raise CliError(f"{src}: model outputs {scores.shape[1]} beams for {scores.shape[0]} rows, data has |A| = {ds.n_a}")
    train = load_dataset(a.train_data) if a.train_data else None
    rows = evaluation_rows(scores, ds, label, train=train, cycle_ms=a.cycle_ms, seed=a.seed)
    if a.json:
        print(json.dumps({"source": str(src), "data": str(a.data), "split": split, "n": len(ds), "rows": rows}, indent=2))
        return EXIT_OK
    t = Table(title=f"{src} on {a.data}: {split}; {ds.n_b}->{ds.n_a} beams, cycle {a.cycle_ms:g} ms")
    for c in COLUMNS:
        t.add_column(c, justify="left" if c == "method" else "right")
    for r in rows:
        t.add_row(*[fmt_num(r.get(c)) for c in COLUMNS])
    _console(False).print(t)
    print(f"evaluated on {split}")
    return EXIT_OK


# ---------------------------------------------------------------- emulate
#: EmulatorConfig field -> the emulate option that sets it (errors name the option the user typed)
_EMULATE_FLAGS = {"n_ues": "--ues", "duration_s": "--duration", "ssb_period_ms": "--ssb-period", "k_refine": "--k",
                  "confidence": "--confidence", "drop_db": "--drop-db", "full_sweep_every": "--full-sweep-every",
                  "max_labels": "--max-labels", "shifts": "--shift", "seed": "--seed", "monitoring.every": "--monitor-every",
                  "monitoring.reference": "--monitor-reference", "monitor.metric": "--monitor-metric", "monitor.arl0": "--monitor-arl0",
                  "monitor.k": "--k", "city": "--scenario"}


def _emulate_bundles(a: argparse.Namespace) -> list[Path]:
    """The positional bundle (or every bundle in a folder of bundles, by name) followed by each ``--bundle``."""
    first = Path(a.bundle)
    if first.is_dir() and not (first / "manifest.json").exists():
        inner = sorted(p for p in first.iterdir() if p.is_dir() and (p / "manifest.json").is_file())
        if not inner:
            raise ConfigError("bundle", f"{first} is neither a bundle (no manifest.json) nor a folder of bundles",
                              "give a folder written by edgebm export, or a folder holding several")
        bundles = inner
    else:
        bundles = [first]
    bundles += [Path(b) for b in a.extra_bundle]
    seen: dict[Path, Path] = {}
    for b in bundles:
        r = b.resolve()
        if r in seen:
            raise ConfigError("--bundle", f"{b} is given twice", "register each bundle once")
        seen[r] = b
    return bundles


def _monitoring_settings(a: argparse.Namespace, n_bundles: int) -> Any:
    """Life-cycle management settings from the ``--monitor*`` options (None: off). Several bundles or any
    ``--monitor-*`` option turn it on."""
    from .emulator.monitoring import MonitoringSettings
    from .runtime.lcm import LcmConfig
    from .runtime.monitor import MonitorConfig

    opts = (a.monitor_every, a.monitor_metric, a.monitor_arl0, a.monitor_reference)
    if not (a.monitor or n_bundles > 1 or any(v is not None for v in opts)):
        return None
    mon = MonitorConfig(**{k: v for k, v in (("metric", a.monitor_metric), ("arl0", a.monitor_arl0), ("k", a.k)) if v is not None})
    kw = {k: v for k, v in (("every", a.monitor_every), ("reference", a.monitor_reference)) if v is not None}
    return MonitoringSettings(lcm=LcmConfig(monitor=mon), **kw)


def cmd_emulate(a: argparse.Namespace) -> int:
    from .emulator import EmulatorConfig, EmulatorError, parse_shift, run_emulator, write_report
    from .outputs import check_output_folder
    from .runtime import read_manifest

    bundles = _emulate_bundles(a)
    try:
        shifts = tuple(parse_shift(s, default_at_s=a.duration / 2) for s in a.shift)
        cfg = EmulatorConfig(n_ues=a.ues, duration_s=a.duration, ssb_period_ms=a.ssb_period, k_refine=a.k, confidence=a.confidence,
                             drop_db=a.drop_db, full_sweep_every=a.full_sweep_every, adapt=not a.no_adapt, shifts=shifts, seed=a.seed,
                             max_labels=a.max_labels, monitoring=_monitoring_settings(a, len(bundles)), city=a.scenario)
    except ConfigError as e:
        raise ConfigError(_EMULATE_FLAGS.get(e.field, e.field), e.problem, e.fix) from None
    out = Path(a.out) if a.out else Path("runs") / "emulate" / bundles[0].name
    check_output_folder(out, "--out", _is_report_folder, "emulator report")
    keys = _trusted_keys(a.trusted_key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Predictor in run_emulator reports unlisted files once
        mans = [read_manifest(b, trusted_keys=keys) for b in bundles]  # cheap: refuse a bad bundle before simulating anything
    man = mans[0]
    if cfg.k_refine > man.n_beams_a:
        raise ConfigError("--k", f"{cfg.k_refine} beams to refine, the bundle predicts only {man.n_beams_a}", f"give --k in [1, {man.n_beams_a}]")
    for b, m in zip(bundles[1:], mans[1:]):
        if m.n_beams_b != man.n_beams_b:
            raise ConfigError("--bundle", f"{b} takes |Set B| = {m.n_beams_b}, {bundles[0]} takes {man.n_beams_b}",
                              "register bundles for the same Set B")
    with _RichProgress() as prog:
        try:
            res = run_emulator(bundles if len(bundles) > 1 else bundles[0], cfg, progress=prog, trusted_keys=keys)
        except ConfigError as e:  # a setting the bundle decides on (e.g. --scenario rand-S-K past its cities)
            raise ConfigError(_EMULATE_FLAGS.get(e.field, e.field), e.problem, e.fix) from None
        except EmulatorError as e:
            raise CliError(str(e)) from None
    k = write_report(res, out, before_swap=lambda: check_output_folder(out, "--out", _is_report_folder, "emulator report"))
    con = _console(False)
    from rich.table import Table

    t = Table(title=f"emulator: {k['ues']} UEs x {k['cycles']} cycles of {k['cycle_ms']:g} ms in {k['config']['city']} "
                    f"({k['config']['city_source']})")
    for col in ("method", "SE", "SE drop mean", "SE drop p90", "beams/cycle", "effective SE"):
        t.add_column(col, justify="left" if col == "method" else "right")
    for m, v in k["methods"].items():
        t.add_row(m, f"{v['se_mean']:.3f}", f"{v['se_drop_mean']:.4f}", f"{v['se_drop_p90']:.4f}", f"{v['beams_per_cycle']:.1f}", f"{v['effective_se_mean']:.3f}")
    con.print(t)
    tm = k["timing"]
    con.print(f"deadline {tm['deadline_ms']:g} ms: p99 {tm['latency_p99_ms']:.3f} ms (margin {tm['margin_p99_ms']:.3f} ms), misses {tm['deadline_misses']}; "
              f"fallback rate {k['fallback_rate']:.3f}; updates {k['adaptation']['updates']}")
    for s in k["shifts"]:
        rec = s["recovered_fraction"]
        con.print(f"shift {s['shift']}: SE drop before {s['before']['edgebm']['se_drop_mean']:.4f} -> just after {s['just_after']['edgebm']['se_drop_mean']:.4f} "
                  f"-> adapted {s['adapted']['edgebm']['se_drop_mean']:.4f}" + (f"; recovered {rec:.1%} of pre-shift SE" if rec is not None else "")
                  + ("" if k.get("monitoring") is None else
                     f"; detected after {s['detected_after_s']:.2f} s by the {s['detected_by']}" if s["detected_after_s"] is not None else "; not detected"))
    m = k.get("monitoring")
    if m:
        c = m["cost_us"]
        con.print(f"life-cycle management: {len(m['events'])} decisions ({', '.join(e['action'] + '@' + format(e['t_s'], '.2f') + 's' for e in m['events']) or 'none'}); "
                  f"false alarms before the first shift {m['false_alarms']}; monitor cost per cycle p99 {c['host_p99']:.0f} us host, {c['device_p99']:.0f} us device")
    con.print(f"wrote {out}/ (kpis.json, summary.md, {', '.join(k['plots'])})")
    return EXIT_OK


# ---------------------------------------------------------------- keys and signatures
def cmd_keygen(a: argparse.Namespace) -> int:
    from .runtime.signing import generate_keypair, key_id, load_public_key

    priv, pub = generate_keypair(a.out, arg="--out")
    print(f"wrote private key {priv} (mode 0600: keep it secret) and public key {pub} "
          f"(key id {key_id(load_public_key(pub))}; give it to the UEs as --trusted-key)")
    return EXIT_OK


def cmd_sign(a: argparse.Namespace) -> int:
    from .runtime import sign_bundle
    from .runtime.signing import load_private_key

    key = load_private_key(a.key, arg="--key")
    man = sign_bundle(a.bundle, key)
    print(f"signed {a.bundle} (bundle_digest {man.bundle_digest}) with key {man.signature['key_id']}")  # type: ignore[index]
    return EXIT_OK


def cmd_verify(a: argparse.Namespace) -> int:
    from .runtime import Predictor

    keys = _trusted_keys(a.trusted_key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # extra files are listed below
        # everything the runtime would check: manifest, digest, signature, hashes, model, head, codebook
        pred = Predictor(a.bundle, trusted_keys=keys, allow_failed=True)
        _ = pred.codebook
    b, m = pred.bundle, pred.manifest
    sig = m.signature["key_id"] if m.signature else None
    print(f"OK {a.bundle}: {m.family} for {m.profile}, verdict {m.verdict}, {len(m.files)} files verified, "
          f"bundle_digest {m.bundle_digest}; "
          + (f"signature by {b.signed_by} verified" if b.signed_by else (f"signed by {sig} (not checked: no --trusted-key)" if sig else "unsigned")))
    if b.extra_files:
        print(f"not part of the bundle (ignored by the runtime): {', '.join(b.extra_files)}")
    return EXIT_OK


# ---------------------------------------------------------------- parser
def _radio_arguments(p: argparse.ArgumentParser, names: Sequence[str], ranged: Sequence[str] = ()) -> None:
    """Add the radio options ``names`` (ScenarioConfig fields) with the flag, help and default declared once in
    :data:`edgebm.sim.config.RADIO_OPTIONS`. ``ranged``: options that also take a range / ``random`` (random
    scenario), parsed by the command."""
    from .sim.config import RADIO_OPTIONS, radio_default

    extra = {"snr_db": "; LOW:HIGH draws it per sample (random scenario)",
             "carrier_hz": "; random draws it per city (random scenario)",
             "ue_array": "; random draws it per city (random scenario)"}
    for name in names:
        flag, text = RADIO_OPTIONS[name]
        d = radio_default(name)
        shown = "x".join(map(str, d)) if isinstance(d, tuple) else f"{d:g}" if isinstance(d, float) else str(d)
        if name in ranged:
            kind: Any = str
            default: Any = None if name == "snr_db" else shown
            if name == "snr_db":
                shown += "; random scenario 0:30"
        else:
            kind = _array_shape if isinstance(d, tuple) else type(d)
            default = d
        p.add_argument(flag, type=kind, default=default, help=f"{text}{extra.get(name, '') if name in ranged else ''} "
                       f"(default {shown})")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .models.registry import family_names
    from .search_tune import DEFAULT_TRIALS as DEFAULT_TUNE_TRIALS

    p = _Parser(prog="edgebm", description="Beam prediction for UEs: train, compress, export per device profile, gate, emulate.")
    p.add_argument("--version", action="version", version=f"edgebm {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("data", help="generate or inspect BeamDataset files").add_subparsers(dest="data_cmd", required=True, metavar="SUBCOMMAND")
    g = d.add_parser("generate", help="simulate a scenario into a BeamDataset .npz")
    g.add_argument("--scenario", default="city0", help="city0..city3, or random: K procedurally drawn cities "
                   "(never city0..city3) (default city0)")
    g.add_argument("--cities", type=_int_arg(1), default=None, help="random scenario: number of cities K (default 100)")
    g.add_argument("--samples", type=_int_arg(1), default=20000, help="UE drops (default 20000)")
    g.add_argument("--seed", type=_SEED, default=0)
    _radio_arguments(g, ("set_b", "set_a", "snr_db", "carrier_hz", "bs_array", "ue_array", "sectors", "n_subcarriers",
                         "region", "codebook_a", "codebook_seed"), ranged=("snr_db", "carrier_hz", "ue_array"))
    g.add_argument("--trajectories", default=None, metavar="N_UES:N_STEPS:DT_S", help="UEs moving along streets instead of drops")
    g.add_argument("--paths-out", default=None, help="also write the simulator's paths as a path table .npz")
    g.add_argument("--shards", type=_int_arg(1), default=None, metavar="N", help="write a folder of N .npz shards + "
                   "index.json (--out is the folder; loads as one dataset everywhere, streams with open_dataset)")
    g.add_argument("--workers", type=_int_arg(1), default=1, help="processes generating shards in parallel (same bytes; default 1)")
    add_ray_argument(g, "the shards (same bytes; needs --shards)")
    g.add_argument("--out", required=True, help="output .npz (or folder with --shards)")
    g.set_defaults(func=cmd_data_generate)
    fp = d.add_parser("from-paths", help="build a BeamDataset from a ray-traced path table (docs/path_table.md)")
    fp.add_argument("paths", help="path table .npz (DeepMIMO v4 names)")
    _radio_arguments(fp, ("bs_array", "ue_array", "set_b", "set_a", "snr_db", "n_subcarriers"))
    fp.add_argument("--boresight-az", type=float, default=None, help="BS panel azimuth, deg (default: from the table or towards the users)")
    fp.add_argument("--downtilt", type=float, default=None, help="BS downtilt, deg (default 8)")
    fp.add_argument("--seed", type=_SEED, default=0)
    fp.add_argument("--out", required=True)
    fp.set_defaults(func=cmd_data_from_paths)
    rt = d.add_parser("raytrace", help="ray-trace a Sionna RT scene into a path table (extra: edgebm[raytrace])")
    rt.add_argument("--scene", default="simple_street_canyon", help="bundled Sionna RT scene name or a scene .xml")
    rt.add_argument("--tx", default="-45,0,10", help="transmitter X,Y,Z in m")
    rt.add_argument("--grid", default="-40,60,21;-6,6,5;1.5", help="receiver grid 'X0,X1,NX;Y0,Y1,NY;Z' in m")
    rt.add_argument("--carrier", type=float, default=28e9)
    rt.add_argument("--max-depth", type=int, default=2)
    rt.add_argument("--seed", type=int, default=0)
    rt.add_argument("--out", required=True)
    rt.set_defaults(func=cmd_data_raytrace)
    i = d.add_parser("info", help="validate and summarise a dataset (.npz or shard folder)")
    i.add_argument("file", help="dataset .npz or shard folder")
    i.set_defaults(func=cmd_data_info)

    pr = sub.add_parser("profiles", help="list or show device profiles").add_subparsers(dest="profiles_cmd", required=True, metavar="SUBCOMMAND")
    pr.add_parser("list", help="table of shipped profiles").set_defaults(func=cmd_profiles_list)
    s = pr.add_parser("show", help="print one profile")
    s.add_argument("name", help="profile name or path to a .toml")
    s.add_argument("--json", action="store_true", help="validated profile as JSON")
    s.set_defaults(func=cmd_profiles_show)

    e = sub.add_parser("export", help="run the compression recipe (teacher -> distil -> prune -> quantise -> gate), write export/<profile>/")
    e.add_argument("--profile", required=True, help="profile name or .toml path; several comma-separated, or 'all' (they share the teacher and students)")
    e.add_argument("--data", default=None, help="BeamDataset .npz or shard folder (default: simulate the randomised corpus, "
                                                "1000 random cities, none of city0..city3)")
    e.add_argument("--out", default=None, help="bundle folder for one profile (default export/<profile>); parent folder for several")
    e.add_argument("--teacher", default=None, metavar="RUN", help="teacher run folder (edgebm train), instead of the profiles' [recipe] teacher")
    e.add_argument("--seed", type=_SEED, default=0, help="split and training seed; without --data the corpus is drawn from seed 2026 + SEED")
    e.add_argument("--samples", type=_int_arg(1), default=None, help="drops to simulate when --data is not given (default 40000)")
    e.add_argument("--epochs", type=_int_arg(1), default=None, help="training epochs for every neural family (default: per family)")
    e.add_argument("--families", default=None, help="comma-separated subset of the profile's families to try")
    e.add_argument("--force", action="store_true", help="write the most accurate candidate (on validation) even if none passes (manifest says so)")
    e.add_argument("--sign-key", default=None, metavar="KEY.pem", help="sign the bundle(s) with this ed25519 private key (edgebm keygen; extra: edgebm[sign])")
    add_ray_argument(e, "the students' training (same candidates as without) and --search tune's trials")
    e.add_argument("--search", choices=("bisect", "tune"), default="bisect",
                   help="pruning-ratio search: bisect (the recipe's bisection on the budget, default) or tune (Ray Tune with "
                        "ASHA over --tune-trials ratios, the gate as the constraint; needs --ray)")
    e.add_argument("--tune-trials", type=_int_arg(2), default=None, metavar="N",
                   help=f"--search tune: pruning ratios tried per prunable student (default {DEFAULT_TUNE_TRIALS})")
    e.set_defaults(func=cmd_export)

    tr = sub.add_parser("train", help="train one model family on a dataset into a run folder")
    tr.add_argument("--data", required=True, help="BeamDataset .npz or shard folder")
    tr.add_argument("--model", required=True, help="family: " + ", ".join(family_names()))
    tr.add_argument("--out", required=True, help="run folder to write")
    tr.add_argument("--epochs", type=_int_arg(1), default=40)
    tr.add_argument("--seed", type=_SEED, default=0)
    tr.add_argument("--lr", type=_float_arg(0.0), default=2e-3)
    tr.add_argument("--batch-size", type=_int_arg(1), default=256)
    tr.add_argument("--patience", type=_int_arg(1), default=8, help="early-stopping patience, epochs")
    tr.add_argument("--loss", choices=("ce", "focal"), default="ce", help="hard-label loss")
    tr.add_argument("--soft-labels", type=_float_arg(0.0, 0.5, lo_open=False), default=0.0, metavar="LAMBDA",
                    help="weight of beam-power soft labels (seed 003 eq. 9), 0..0.5")
    tr.add_argument("--temperature", type=_float_arg(0.0), default=2.0, help="soft-label temperature T")
    tr.add_argument("--distil-from", default=None, metavar="RUN", help="teacher run folder for knowledge distillation")
    tr.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="model hyper-parameter (repeatable)")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="metrics of a run or bundle next to the baselines")
    ev.add_argument("source", help="run folder (edgebm train) or bundle folder (edgebm export)")
    ev.add_argument("--data", required=True, help="BeamDataset .npz or shard folder to evaluate on")
    ev.add_argument("--train-data", default=None, help="training dataset for the nearest-position baseline")
    ev.add_argument("--cycle-ms", type=_float_arg(0.0), default=20.0, help="beam cycle for effective SE after overhead (default 20)")
    ev.add_argument("--split", choices=("auto", "all", "test"), default="auto",
                    help="auto (default): the held-out test split when the data is the run's own training data, else all rows; "
                         "test: the test split with --seed; all: every row")
    ev.add_argument("--seed", type=_SEED, default=0, help="seed of the baselines' measurement noise (and the split seed for --split test)")
    ev.add_argument("--json", action="store_true", help="machine-readable output")
    _add_trusted_key(ev)
    ev.set_defaults(func=cmd_evaluate)

    em = sub.add_parser("emulate", help="run a bundle in the UE emulator over simulated trajectories")
    em.add_argument("bundle", help="bundle folder (edgebm export), or a folder of bundles (all registered; the first by name is "
                                   "active at the start and sets the scenario)")
    em.add_argument("--bundle", dest="extra_bundle", action="append", default=[], metavar="BUNDLE",
                    help="another bundle life-cycle management may switch to (repeatable; turns --monitor on)")
    em.add_argument("--monitor", action="store_true",
                    help="life-cycle management: monitor the model on periodic full sweeps, keep / adapt / switch / deactivate / reactivate")
    em.add_argument("--monitor-every", type=_int_arg(1), default=None, metavar="N",
                    help="cycles between monitoring sweeps (full Set A) per UE (default 25)")
    em.add_argument("--monitor-metric", choices=("top1", "topk"), default=None,
                    help="alarm on the top-1 (default) or the top-K (K = --k) beam missing the best by more than 1 dB")
    em.add_argument("--monitor-arl0", type=_float_arg(1.0), default=None, metavar="LABELS",
                    help="in-control average run length of the alarm: labels between false alarms (default 5000)")
    em.add_argument("--monitor-reference", type=_reference_arg, default=None, metavar="activation|validated|P",
                    help="in-control miss rate: calibrated on the first labels (activation, default), the bundle's held-out "
                         "metrics (validated), or a rate P")
    em.add_argument("--scenario", default=None, metavar="CITY",
                    help="city the UEs move in: city0..city3 (as in data generate), or rand-<seed>-<k> of a bundle trained on "
                         "randomised cities (default: the bundle's own city; city0 for a bundle trained on randomised cities)")
    em.add_argument("--ues", type=_int_arg(1), default=16, help="UEs (default 16)")
    em.add_argument("--duration", type=_float_arg(0.0), default=10.0, help="seconds of simulated time (default 10)")
    em.add_argument("--ssb-period", type=_float_arg(0.0), default=None, help="SSB period, ms: 5, 10, 20, 40, 80 or 160 (default: the profile's)")
    em.add_argument("--k", type=_int_arg(1), default=3, help="narrow beams measured after prediction (default 3)")
    em.add_argument("--confidence", type=_float_arg(0.0, 1.0, lo_open=False), default=0.2,
                    help="top-1 probability below which the UE falls back to hierarchical search")
    em.add_argument("--drop-db", type=_float_arg(0.0, lo_open=False), default=6.0, help="serving-beam RSRP drop that triggers fallback, dB")
    em.add_argument("--full-sweep-every", type=_int_arg(0), default=25, help="cycles between full sweeps per UE (labels); 0 = never")
    em.add_argument("--max-labels", type=_int_arg(0), default=200, help="labelled samples used for adaptation after each shift")
    em.add_argument("--shift", action="append", default=[], metavar="KIND:VALUE[@S]", help="domain shift: array:8x8, codebook:random64, city:city2 (repeatable; default at half time)")
    em.add_argument("--no-adapt", action="store_true", help="disable the on-device head update")
    em.add_argument("--seed", type=_SEED, default=0)
    em.add_argument("--out", default=None, help="report folder (default runs/emulate/<bundle>)")
    _add_trusted_key(em)
    em.set_defaults(func=cmd_emulate)

    c = sub.add_parser("check", help="run the budget gate on any ONNX file")
    c.add_argument("model", help="model .onnx")
    c.add_argument("--profile", required=True)
    c.add_argument("--runs", type=_int_arg(1, 1_000_000), default=500, help="timed single-sample runs (default 500)")
    c.set_defaults(func=cmd_check)

    kg = sub.add_parser("keygen", help="make an ed25519 key pair for signing bundles (extra: edgebm[sign])")
    kg.add_argument("--out", required=True, metavar="KEY.pem", help="private key file to create; the public key goes to KEY.pub.pem")
    kg.set_defaults(func=cmd_keygen)
    sg = sub.add_parser("sign", help="sign an existing bundle with an ed25519 private key (extra: edgebm[sign])")
    sg.add_argument("bundle", help="bundle folder")
    sg.add_argument("--key", required=True, metavar="KEY.pem", help="private key (edgebm keygen)")
    sg.set_defaults(func=cmd_sign)
    vf = sub.add_parser("verify", help="check a bundle's manifest, digest, file hashes and (with --trusted-key) signature")
    vf.add_argument("bundle", help="bundle folder")
    _add_trusted_key(vf)
    vf.set_defaults(func=cmd_verify)
    return p


def _one_line(text: Any) -> str:
    return " ".join(str(text).split("\n")).strip()


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    print(f"edgebm: warning: {_one_line(message)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``edgebm`` command; returns the exit code (see the module docstring)."""
    import threading

    in_main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    old_show = warnings.showwarning
    warnings.showwarning = _show_warning  # warnings a user should see, as one line each
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except EdgebmError as e:
        print(f"edgebm: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # missing, unreadable or unwritable files; disk full
        where = f"{e.filename}: " if e.filename else ""
        print(f"edgebm: error: {where}{e.strerror or _one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("edgebm: interrupted; temp files removed, nothing half-written left behind", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _Terminated:
        print("edgebm: terminated (SIGTERM); temp files removed, nothing half-written left behind", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        warnings.showwarning = old_show
        if in_main:
            signal.signal(signal.SIGTERM, old_term if old_term is not None else signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
