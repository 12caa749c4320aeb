"""`python -m grlib sweep 06 -p guidance_scale 0 1 3 -p seed 0 1 2`: one notebook over a grid of parameters, each
run an independent papermill execution, gathered into a table (mean ± std over seeds) and plots.

A run keeps its executed notebook and results under build/sweeps/<name>/<run>/ and shares the course's checkpoint
cache, so what the notebooks or earlier runs trained is not trained again; a finished run (of the same profile and
parameters) is not redone."""
from __future__ import annotations

import itertools
import json
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from grlib.core.checkpoints import writable
from grlib.core.config import checkpoint_folder
from grlib.core.files import atomic_file
from grlib.course.notebooks import (NOTEBOOK_DIR, UNATTENDED, check_parameters, kernel_env, notebook_parameters,
                                    prepare_out, select_notebooks)
from grlib.continual.profiles import get_profile
from grlib.course.report import write_index
from grlib.course.results import load_results
from grlib.course.tables import markdown_table, mean_std


def grid(values: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the parameters' values, in order."""
    names = list(values)
    return [dict(zip(names, combo)) for combo in itertools.product(*(values[n] for n in names))]


def run_name(setting: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in setting.items())


def sweep_name(notebook: str, profile: str, values: dict[str, Sequence[Any]]) -> str:
    """The default folder name: the notebook's number, the profile, each swept parameter's name and each fixed one's
    value (06-quick-guidance_scale-seed, 06-smoke-buffer_size=500-seed), so two sweeps share a folder only if they
    are the same sweep."""
    return "-".join([notebook[:2], profile] + [n if len(v) > 1 else f"{n}={v[0]}" for n, v in values.items()])


def check_values(values: dict[str, Sequence[Any]]) -> None:
    """A ValueError unless each parameter has values, each given once (a repeat would be a second run writing the
    same folder, and a table counting it twice)."""
    if not values or any(len(v) == 0 for v in values.values()):
        raise ValueError("a sweep needs at least one parameter with at least one value: -p NAME V1 V2 ...")
    for name, given in values.items():
        names = [str(v) for v in given]
        repeated = sorted({v for v in names if names.count(v) > 1})
        if repeated:
            raise ValueError(f"-p {name} gives {', '.join(repeated)} more than once; give each value once")


def invocation(nb: Path, run_dir: Path, setting: dict[str, Any], profile: str,
               checkpoints: Path) -> tuple[list[str], dict[str, str]]:
    """The papermill command that executes one run, and the environment variables it adds (where the run writes;
    its profile and settings are papermill parameters, and widgets are left out, as the runner does)."""
    env = {**kernel_env(run_dir), "GRLIB_CHECKPOINTS": str(checkpoints)}
    args = [sys.executable, "-m", "papermill", str(nb), str(run_dir / nb.name), "--cwd", str(nb.parent),
            "--no-progress-bar"]
    declared = notebook_parameters(nb)
    for name, value in {**UNATTENDED, "profile": profile, **setting}.items():
        if name in declared or name in setting:
            args += ["-p", name, str(value)]
    return args, env


def command(nb: Path, run_dir: Path, setting: dict[str, Any], profile: str, checkpoints: Path) -> str:
    """The shell line (environment and papermill command) that executes one run: what --dry-run prints."""
    args, env = invocation(nb, run_dir, setting, profile, checkpoints)
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + shlex.join(args)


class Processes:
    """The papermill processes of a sweep: `start` one unless `stop` has been called; `stop` ends them all (their
    kernels end with them: a kernel watches the process that started it)."""

    def __init__(self) -> None:
        self.lock, self.running, self.stopped = threading.Lock(), set(), False

    def start(self, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen | None:
        with self.lock, open(log, "w") as logfile:
            if self.stopped:
                return None
            process = subprocess.Popen(args, env={**os.environ, **env}, stdout=logfile, stderr=subprocess.STDOUT)
            self.running.add(process)
            return process

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to each, SIGKILL to those still running `grace` seconds later."""
        with self.lock:
            self.stopped = True
        for process in self.running:
            process.terminate()
        deadline = time.monotonic() + grace
        for process in self.running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()


def summarise(rows: list[dict], swept: list[str]) -> str:
    """A markdown table: for each setting of the swept parameters other than the seed, mean ± std of every
    headline metric over the seeds."""
    others = [p for p in swept if p != "seed"]
    metrics = sorted({m for r in rows for m, v in r["headline"].items() if isinstance(v, (int, float))})
    table = []
    for key in sorted({tuple(r["setting"][p] for p in others) for r in rows}, key=str):
        mine = [r for r in rows if tuple(r["setting"][p] for p in others) == key]
        cells = [mean_std([r["headline"][m] for r in mine if m in r["headline"]], 2) for m in metrics]
        table.append([*key, *cells, len(mine)])
    return markdown_table(others + metrics + ["runs"], table)


def plot(rows: list[dict], swept: list[str], folder: Path) -> list[Path]:
    """One figure a headline metric: its mean (± std over the other runs) against each swept parameter."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [p for p in swept if p != "seed"] or swept
    metrics = sorted({m for r in rows for m, v in r["headline"].items() if isinstance(v, (int, float))})
    paths = []
    for m in metrics:
        fig, axes = plt.subplots(1, len(others), figsize=(4.5 * len(others), 3.5), squeeze=False)
        for ax, p in zip(axes[0], others):
            xs = sorted({r["setting"][p] for r in rows}, key=lambda v: (str(type(v)), v))
            values = [[r["headline"][m] for r in rows if r["setting"][p] == x and m in r["headline"]] for x in xs]
            means = [statistics.mean(v) for v in values]
            errs = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
            ax.errorbar([str(x) for x in xs], means, yerr=errs, marker="o", capsize=3)
            ax.set(xlabel=p, ylabel=m)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        paths.append(folder / f"{m.replace('/', '_')}.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


def run_record(nb: Path, profile: str, setting: dict[str, Any]) -> dict:
    """What a finished run's run.json holds: the notebook, the profile and every parameter it ran with (as JSON reads
    them back)."""
    return json.loads(json.dumps({"notebook": nb.stem, "profile": profile, "parameters": setting}, default=str))


def finished(run_dir: Path, wanted: dict) -> bool:
    """Whether `run_dir` holds a finished run of exactly `wanted` (see `record`), results and all."""
    try:
        done = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return False
    return done == wanted and (run_dir / "results" / f"{wanted['notebook']}.json").exists()


@dataclass
class SweepPlan:
    """A checked sweep: the notebook, profile, values and their settings, and the folders it uses."""
    nb: Path
    profile: str
    values: dict[str, Sequence[Any]]
    settings: list[dict[str, Any]]
    out: Path
    folder: Path
    cache: Path

    def run_dir(self, setting: dict[str, Any]) -> Path:
        return self.folder / run_name(setting)

    def done(self, setting: dict[str, Any]) -> bool:
        """Whether this setting's run has finished, with this profile (see `finished`)."""
        return finished(self.run_dir(setting), run_record(self.nb, self.profile, setting))


def plan_sweep(notebook: str, values: dict[str, Sequence[Any]], profile: str | None, out: str | None, jobs: int,
               name: str | None, folder: Path) -> SweepPlan:
    """Check everything (a ValueError before anything runs) and prepare the build folder."""
    nb, = select_notebooks([notebook], folder)
    P = get_profile(profile)
    check_values(values)
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    if name is not None and (not name.strip() or Path(name).name != name or name in (".", "..")):
        raise ValueError(f"--name {name!r} must be a plain folder name (it goes under <out>/sweeps/)")
    settings = grid(values)
    for setting in settings:
        check_parameters([nb], setting)
    out_dir = prepare_out(out, folder)
    sweep_dir = out_dir / "sweeps" / (name or sweep_name(nb.stem, P.name, values))
    cache = checkpoint_folder(build=out_dir)
    return SweepPlan(nb, P.name, values, settings, out_dir, sweep_dir, cache)


def execute(plan: SweepPlan, todo: list[dict[str, Any]], jobs: int, log: Callable[[str], None]) -> None:
    """Run the settings in `todo`, `jobs` at a time; a run is recorded as done (run.json) only once its notebook
    has ended without error. Ctrl-C stops the papermill processes still going."""
    processes = Processes()

    def one(setting: dict[str, Any]) -> None:
        run_dir = plan.run_dir(setting)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run.json").unlink(missing_ok=True)  # not done until this run has ended without error
        process = processes.start(*invocation(plan.nb, run_dir, setting, plan.profile, plan.cache),
                                  run_dir / "log.txt")
        if process is None or process.wait() != 0:
            return
        with atomic_file(run_dir / "run.json") as f:
            f.write(json.dumps(run_record(plan.nb, plan.profile, setting)).encode())
        log(f"[{run_name(setting)}] ok")

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        list(pool.map(one, todo))
    except KeyboardInterrupt:
        processes.stop()
        raise
    finally:
        pool.shutdown(cancel_futures=True)


def gather(plan: SweepPlan, log: Callable[[str], None]) -> tuple[list[dict], str, list[str]]:
    """The finished runs' rows, the table written to table.md, runs.json and the sweep's page, and the runs that
    failed (named, and left out of the table)."""
    rows, failed = [], []
    for setting in plan.settings:
        if plan.done(setting):
            headline = load_results(plan.nb.stem, plan.run_dir(setting))["headline"]
            rows.append({"setting": setting, "headline": headline})
        else:
            failed.append(run_name(setting))
            log(f"[{run_name(setting)}] FAILED; see {plan.run_dir(setting) / 'log.txt'}")
    table = summarise(rows, list(plan.values)) if rows else "no run finished\n"
    if failed:
        table += f"\nFailed, so left out (the next sweep runs them again): {'; '.join(failed)}\n"
    figures = plot(rows, list(plan.values), plan.folder) if rows else []
    with atomic_file(plan.folder / "table.md") as f:
        f.write(f"# Sweep of {plan.nb.stem}, profile {plan.profile}\n\n{table}".encode())
    with atomic_file(plan.folder / "runs.json") as f:
        f.write(json.dumps(rows, indent=1).encode())
    write_sweep_page(plan.folder, plan.nb.stem, plan.profile, table, figures)
    write_index(plan.out)
    return rows, table, failed


def run_sweep(notebook: str, values: dict[str, Sequence[Any]], profile: str | None = None, out: str | None = None,
              jobs: int = 1, dry_run: bool = False, name: str | None = None,
              log: Callable[[str], None] = print, folder: Path = NOTEBOOK_DIR) -> dict:
    """Run (or with `dry_run`, print) every setting of `values` for one notebook; gather what finished.

    A run is done when its folder records that its notebook ended without error with this profile and setting
    (`record`), so a sweep under another profile, or a run that failed, is never taken for it: a failed run is
    named in the table, left out of it, and run again next time. Ctrl-C (or SIGTERM, see `grlib.course.cli`) stops
    the runs still going."""
    plan = plan_sweep(notebook, values, profile, out, jobs, name, folder)
    if dry_run:
        for setting in plan.settings:
            log(command(plan.nb, plan.run_dir(setting), setting, plan.profile, plan.cache))
        return {"commands": len(plan.settings)}
    todo = [setting for setting in plan.settings if not plan.done(setting)]
    if not writable(plan.cache):
        log(f"the checkpoint folder {plan.cache} cannot be written: the models it holds are loaded, new ones are "
            f"kept in each run's folder under {plan.folder}")
    log(f"sweep of {plan.nb.stem}: {len(plan.settings)} runs, {len(plan.settings) - len(todo)} already done, "
        f"{jobs} at a time, into {plan.folder}")
    execute(plan, todo, jobs, log)
    rows, table, failed = gather(plan, log)
    log(table)
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed: {'; '.join(failed)}")
    return {"rows": rows, "table": table, "folder": plan.folder, "ran": len(todo)}


def write_sweep_page(folder: Path, notebook: str, profile: str, table: str, figures: list[Path]) -> Path:
    """build/sweeps/<name>/index.html: the table and the plots, no scripts."""
    import html

    rows = [line.strip("|").split("|") for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in row) + "</tr>" for row in rows)
    images = "".join(f'<img src="{p.name}" alt="{html.escape(p.stem)}">' for p in figures)
    page = folder / "index.html"
    page.write_text("<!doctype html><meta charset='utf-8'>"
                    f"<title>Sweep of {html.escape(notebook)}</title><style>body{{font-family:sans-serif;margin:2em}}"
                    "td{border:1px solid #ccc;padding:4px}table{border-collapse:collapse}img{max-width:100%}</style>"
                    f"<h1>Sweep of {html.escape(notebook)} ({html.escape(profile)} profile)</h1><table>{cells}</table>"
                    f"{images}")
    return page
