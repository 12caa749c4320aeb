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
from pathlib import Path
from typing import Any, Callable, Sequence

from .checkpoints import checkpoint_folder, writable
from .course import NOTEBOOK_DIR, check_parameters, prepare_out, select_notebooks
from .profiles import get_profile
from .report import write_index
from .results import atomic_file, load_results


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
    """The papermill command that executes one run, and the environment variables it adds."""
    env = {"GRLIB_BUILD": str(run_dir), "GRLIB_CHECKPOINTS": str(checkpoints), "GRLIB_PROFILE": profile,
           "GRLIB_PROGRESS": "text", "GRLIB_INTERACTIVE": "0"}
    args = [sys.executable, "-m", "papermill", str(nb), str(run_dir / nb.name), "--cwd", str(nb.parent),
            "--no-progress-bar", "-p", "profile", profile]
    for name, value in setting.items():
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
    lines = ["| " + " | ".join(others + metrics + ["runs"]) + " |", "|" + " --- |" * (len(others) + len(metrics) + 1)]
    for key in sorted({tuple(r["setting"][p] for p in others) for r in rows}, key=str):
        mine = [r for r in rows if tuple(r["setting"][p] for p in others) == key]
        cells = []
        for m in metrics:
            values = [r["headline"][m] for r in mine if m in r["headline"]]
            cells.append(f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1
                         else f"{values[0]:.2f}")
        lines.append("| " + " | ".join([str(k) for k in key] + cells + [str(len(mine))]) + " |")
    return "\n".join(lines) + "\n"


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


def record(nb: Path, profile: str, setting: dict[str, Any]) -> dict:
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


def run_sweep(notebook: str, values: dict[str, Sequence[Any]], profile: str | None = None, out: str | None = None,
              jobs: int = 1, dry_run: bool = False, name: str | None = None,
              log: Callable[[str], None] = print, folder: Path = NOTEBOOK_DIR) -> dict:
    """Run (or with `dry_run`, print) every setting of `values` for one notebook; gather what finished.

    A run is done when its folder records that its notebook ended without error with this profile and setting
    (`record`), so a sweep under another profile, or a run that failed, is never taken for it: a failed run is
    named in the table, left out of it, and run again next time. Ctrl-C (or SIGTERM, see `grlib.__main__`) stops
    the runs still going."""
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
    cache = checkpoint_folder() if os.environ.get("GRLIB_CHECKPOINTS") else out_dir / "checkpoints"
    todo = []
    for setting in settings:
        run_dir = sweep_dir / run_name(setting)
        if dry_run:
            log(command(nb, run_dir, setting, P.name, cache))
        elif not finished(run_dir, record(nb, P.name, setting)):
            todo.append((setting, run_dir))
    if dry_run:
        return {"commands": len(settings)}
    if not writable(cache):
        log(f"the checkpoint folder {cache} cannot be written: the models it holds are loaded, new ones are kept in "
            f"each run's folder under {sweep_dir}")
    log(f"sweep of {nb.stem}: {len(settings)} runs, {len(settings) - len(todo)} already done, {jobs} at a time, "
        f"into {sweep_dir}")
    processes = Processes()

    def execute(item: tuple[dict, Path]) -> None:
        setting, run_dir = item
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run.json").unlink(missing_ok=True)  # not done until this run has ended without error
        process = processes.start(*invocation(nb, run_dir, setting, P.name, cache), run_dir / "log.txt")
        if process is None or process.wait() != 0:
            return
        with atomic_file(run_dir / "run.json") as f:
            f.write(json.dumps(record(nb, P.name, setting)).encode())
        log(f"[{run_name(setting)}] ok")

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        list(pool.map(execute, todo))
    except KeyboardInterrupt:
        processes.stop()
        raise
    finally:
        pool.shutdown(cancel_futures=True)
    rows, failed = [], []
    for setting in settings:
        run_dir = sweep_dir / run_name(setting)
        if finished(run_dir, record(nb, P.name, setting)):
            rows.append({"setting": setting, "headline": load_results(nb.stem, run_dir)["headline"]})
        else:
            failed.append(run_name(setting))
            log(f"[{run_name(setting)}] FAILED; see {run_dir / 'log.txt'}")
    table = summarise(rows, list(values)) if rows else "no run finished\n"
    if failed:
        table += f"\nFailed, so left out (the next sweep runs them again): {'; '.join(failed)}\n"
    figures = plot(rows, list(values), sweep_dir) if rows else []
    with atomic_file(sweep_dir / "table.md") as f:
        f.write(f"# Sweep of {nb.stem}, profile {P.name}\n\n{table}".encode())
    with atomic_file(sweep_dir / "runs.json") as f:
        f.write(json.dumps(rows, indent=1).encode())
    write_sweep_page(sweep_dir, nb.stem, P.name, table, figures)
    write_index(out_dir)
    log(table)
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed: {'; '.join(failed)}")
    return {"rows": rows, "table": table, "folder": sweep_dir, "ran": len(todo)}


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
