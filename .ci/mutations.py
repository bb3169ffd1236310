"""Mutation check (issue 11): apply each mutation to a fresh copy of the checkout, run the tests that must catch
it, print which failed. Nothing in the checkout is changed.

    .venv/bin/python .ci/mutations.py            # every mutation (~3 min on 2 cores)
    .venv/bin/python .ci/mutations.py a c e      # only those whose label starts with these
"""
import pathlib, re, shutil, subprocess, sys, tempfile

SRC = pathlib.Path(__file__).resolve().parents[1]
MUT = [
    ("a: device_ms = 0.0 in the gate", "edgebm/budget/gate.py",
     "    device_ms, decided_by = device_latency_ms(host.p99_ms, c.slowdown_vs_host, roof)\n",
     "    device_ms, decided_by = device_latency_ms(host.p99_ms, c.slowdown_vs_host, roof)\n    device_ms = 0.0\n", "fast"),
    ("b: liveness returns 1 byte", "edgebm/budget/graph.py", "            del live[name]\n    return peak\n", "            del live[name]\n    return 1\n", "fast"),
    ("c: late decisions no longer keep the previous beam", "edgebm/emulator/cycle.py",
     "    stale = ~sweep & ~fallback & late & has\n", "    stale = np.zeros(n_ues, dtype=bool)\n", "fast+emu"),
    ("d1: Set B overhead 0 in the emulator", "edgebm/emulator/cycle.py", '    beams["set_b"][:] = n_b\n', '    beams["set_b"][:] = 0\n', "fast+emu"),
    ("d2: every edgebm beam charged 0", "edgebm/emulator/loop.py", "                parts[c][t] = out.beams[c]\n", "                parts[c][t] = 0\n", "fast+emu"),
    ("d3: serving-beam re-measurement not charged", "edgebm/emulator/cycle.py", '    beams["serving"][remeasure] = 1\n', '    beams["serving"][remeasure] = 0\n', "fast+emu"),
    ("e: fallback disabled", "edgebm/emulator/cycle.py", "    fallback = fb_conf | fb_drop | (legacy & ~sweep)\n",
     "    fb_conf = fb_drop = np.zeros(n_ues, dtype=bool)\n    fallback = fb_conf | fb_drop | (legacy & ~sweep)\n", "fast+emu"),
    ("f1: roofline without the 2x activations", "edgebm/budget/gate.py", "    bytes_moved = stats.weight_bytes + 2 * stats.peak_activation_bytes\n",
     "    bytes_moved = stats.weight_bytes + stats.peak_activation_bytes\n", "fast"),
    ("f2: roofline min instead of max", "edgebm/budget/gate.py",
     "    return 1e3 * max(stats.flops / (peak_gflops * 1e9), bytes_moved / (mem_bandwidth_gbs * 1e9))\n",
     "    return 1e3 * min(stats.flops / (peak_gflops * 1e9), bytes_moved / (mem_bandwidth_gbs * 1e9))\n", "fast"),
    ("g: slowdown_vs_host ignored", "edgebm/budget/gate.py", "    scaled = host_p99_ms * slowdown_vs_host\n", "    scaled = host_p99_ms\n", "fast"),
    ("h1: beam_cycle_margin = beam cycle", "edgebm/budget/gate.py",
     'limit_line("beam_cycle_margin", tim.beam_cycle_ms - device_ms,', 'limit_line("beam_cycle_margin", tim.beam_cycle_ms,', "fast"),
    ("h2: beam_cycle_margin never fails", "edgebm/budget/gate.py",
     'minus device p99", bound="min")', 'minus device p99", bound="max")', "fast"),
    ("i: unknown ops only warn", "edgebm/budget/gate.py", '"fail" if unk else "pass",', '"warn" if unk else "pass",', "fast"),
    ("j: labels counted from before the shift", "edgebm/emulator/loop.py",
     "        self.active = self.adapter is not None and n_a == self.adapter.n_classes\n",
     "        self.active = self.adapter is not None and n_a == self.adapter.n_classes\n        self.gathered[phase] = self.gathered[phase - 1]\n", "fast+emu"),
    ("k: HeadAdapter starts steps without checking the budget", "edgebm/runtime/adapt.py",
     "                if not fits(est_step + closing):\n", "                if False:\n", "adapt"),
    ("l: HeadAdapter guard never rolls back", "edgebm/runtime/adapt.py", "                accepted = loss_after <= loss_before\n", "                accepted = True\n", "adapt"),
]
TESTS = {
    "fast": ["tests/test_gate_math.py"],
    "fast+emu": ["tests/test_emulator_accounting.py"],
    "adapt": ["tests/test_head_adapter.py"],
}
only = sys.argv[1:] or None
py = sys.executable
tmp = pathlib.Path(tempfile.mkdtemp(prefix="edgebm-mutations-"))
results = []
for name, path, old, new, kind in MUT:
    if only and not any(name.startswith(o) for o in only):
        continue
    work = tmp / "tree"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(SRC, work, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache", "runs", "export"))
    f = work / path
    s = f.read_text()
    assert s.count(old) == 1, (name, s.count(old))
    f.write_text(s.replace(old, new))
    tests = TESTS[kind]
    r = subprocess.run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=work, capture_output=True, text=True,
                       env={"PYTHONPATH": str(work), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    # a mutation no listed test catches is a hole in the tests
    failed = sorted(set(re.findall(r"^FAILED (\S+?)(?: - |$)", r.stdout, re.M)))
    summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-300:]
    results.append((name, failed, summary))
    print(f"## {name}\n   {summary}\n   " + "\n   ".join(failed or ["(no test failed)"]), flush=True)
shutil.rmtree(tmp, ignore_errors=True)
missed = [name for name, failed, _ in results if not failed]
print("every mutation was caught" if not missed else f"NOT caught: {', '.join(missed)}")
sys.exit(1 if missed else 0)
