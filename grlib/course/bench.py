"""`python -m grlib bench`: every method on the same Split-MNIST stream and budget, over several seeds.

A benchmark, not a test: it reports mean ± std of A_T and F_T, training seconds and peak memory, and writes
build/bench.json and build/bench.md. Runs are cached like the notebooks' (seed 0 reuses theirs)."""
from __future__ import annotations

import json
import multiprocessing
import platform
import resource
import subprocess
import time
from pathlib import Path
from typing import Callable

import torch

from grlib import continual
from grlib.core import threads
from grlib.core.config import checkpoint_folder, fixed_threads
from grlib.models import nets
from grlib.continual import data, metrics, recipes
from grlib.continual.profiles import get_profile
from grlib.course.notebooks import prepare_out
from grlib.course.tables import markdown_table, mean_std

METHODS = tuple(recipes.METHODS)


def make_stream(kind: str, profile: str, seed: int, validation: float) -> data.TaskStream:
    """Split-MNIST ("split", class-IL) or Permuted-MNIST ("permuted", domain-IL, the profile's tasks, its
    permutations set by the seed), evaluated on the test set or on a held-out `validation` fraction."""
    device = nets.pick_device()
    if kind == "permuted":
        return data.permuted_stream("mnist", n_tasks=get_profile(profile).perm_tasks, seed=seed, device=device,
                                    validation=validation)
    return data.split_stream("mnist", device=device, validation=validation)


def _run_one(method: str, profile: str, seed: int, out: str, validation: float, queue, stream: str = "split",
             overrides: dict | None = None) -> None:
    """Worker (a fresh process, so its peak memory is its own): one method, one seed, the recipe's settings with
    `overrides`."""
    threads.start()
    tasks = make_stream(stream, profile, seed, validation)
    start = time.perf_counter()
    strategy = recipes.build(method, profile, tasks, seed, **(overrides or {}))
    result = continual.run(strategy, tasks, progress=False, folder=checkpoint_folder(build=out))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    if torch.cuda.is_available():
        peak_mb = torch.cuda.max_memory_allocated() / 2 ** 20
    queue.put({"method": method, "seed": seed, "A_T": result.A_T, "F_T": result.F_T,
               "train_seconds": sum(result.seconds), "wall_seconds": time.perf_counter() - start,
               "peak_memory_MB": peak_mb, "memory_MB": metrics.kept_MB(strategy), "curve": result.curve})


def run_in_worker(method: str, profile: str, seed: int, out_dir: Path, validation: float, stream: str = "split",
                  overrides: dict | None = None) -> dict:
    """One run in a fresh process (`_run_one`); its row, or a RuntimeError if it failed."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    worker = context.Process(target=_run_one, args=(method, profile, seed, str(out_dir), validation, queue, stream,
                                                    overrides))
    worker.start()
    worker.join()
    if worker.exitcode != 0:
        raise RuntimeError(f"the {method} run with seed {seed} failed (exit code {worker.exitcode}); see above")
    return queue.get()


def bench_table(rows: list[dict], methods: list[str]) -> str:
    table = []
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        table.append([m, mean_std([r["A_T"] for r in mine]), mean_std([r["F_T"] for r in mine]),
                      mean_std([r["train_seconds"] for r in mine]), f"{max(r['peak_memory_MB'] for r in mine):.0f}",
                      len(mine)])
    return markdown_table(["method", "A_T (%)", "F_T (%)", "training s", "peak memory (MB)", "seeds"], table)


def provenance(command: str) -> dict[str, str]:
    """The command that reproduces a measurement, the commit it ran at and the machine, for its record."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, text=True,
                                capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown (not a git checkout)"
    fixed = fixed_threads()
    omp = "" if fixed is None else f", {fixed} thread(s) fixed by OMP_NUM_THREADS or GRLIB_THREADS"
    return {"command": command, "commit": commit,
            "machine": f"{platform.machine()}, {threads.CORES} cores, device {nets.pick_device()}{omp}"}


def run_bench(profile: str | None = None, seeds: int = 3, methods: list[str] | None = None,
              out: str | None = None, log: Callable[[str], None] = print, validation: float = 0.0) -> dict:
    """Run the methods over `seeds` seeds; write bench.json and bench.md into the build folder. With `validation`
    (e.g. 0.1), every task is evaluated on that held-out fraction of its training data instead of the test set: for
    choosing settings."""
    P = get_profile(profile)
    methods = list(methods or METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if not 0 <= validation < 1:
        raise ValueError(f"--validation must be a fraction in [0, 1), got {validation}")
    if unknown or seeds < 1:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}" if unknown
                         else f"--seeds must be at least 1, got {seeds}")
    data.load("mnist"), data.load("mnist", train=False)  # a missing or corrupt dataset fails here, before training
    out_dir = prepare_out(out)
    rows = []
    for m in methods:
        for seed in range(seeds):
            log(f"[bench] {m}, seed {seed} ({P.name} profile) ...")
            rows.append(run_in_worker(m, P.name, seed, out_dir, validation))
            log(f"[bench] {m}, seed {seed}: A_T {rows[-1]['A_T']:.1f}, {rows[-1]['train_seconds']:.0f} s of training")
    table = bench_table(rows, methods)
    evaluated = f"validation split ({validation:.0%} of each task's training data)" if validation else "test set"
    header = (f"# Benchmark: Split-MNIST, class-IL, MLP solver, profile `{P.name}`, {seeds} seed(s), "
              f"device {nets.pick_device()}, evaluated on the {evaluated}\n\n")
    name = "bench-validation" if validation else "bench"
    (out_dir / f"{name}.md").write_text(header + table)
    command = f"python -m grlib bench --profile {P.name} --seeds {seeds} --methods {' '.join(methods)}"
    record = {**provenance(command + (f" --validation {validation}" if validation else "")),
              "profile": P.as_dict(), "seeds": seeds,
              "validation": validation, "runs": rows}
    (out_dir / f"{name}.json").write_text(json.dumps(record, indent=1))
    log(header + table)
    return {"rows": rows, "table": table}
