"""`python -m grlib sweep 06 -p guidance_scale 0 1 3 -p seed 0 1 2`: one notebook over a grid of parameters, each
run an independent papermill execution, gathered into a table (mean ± std over seeds) and plots.

A run keeps its executed notebook and results under build/sweeps/<name>/<run>/ and shares the course's checkpoint
cache, so what the notebooks or earlier runs trained is not trained again; a finished run is not redone."""
from __future__ import annotations

import itertools
import json
import shlex
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

from .course import NOTEBOOK_DIR, check_parameters, prepare_out, select_notebooks
from .profiles import get_profile
from .report import write_index


def grid(values: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the parameters' values, in order."""
    names = list(values)
    return [dict(zip(names, combo)) for combo in itertools.product(*(values[n] for n in names))]


def run_name(setting: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in setting.items())


def command(nb: Path, run_dir: Path, setting: dict[str, Any], profile: str, checkpoints: Path) -> str:
    """The papermill command line (with its environment) that executes one run: what --dry-run prints."""
    env = {"GRLIB_BUILD": run_dir, "GRLIB_CHECKPOINTS": checkpoints, "GRLIB_PROFILE": profile,
           "GRLIB_PROGRESS": "text", "GRLIB_INTERACTIVE": "0"}
    args = [sys.executable, "-m", "papermill", str(nb), str(run_dir / nb.name), "--cwd", str(nb.parent),
            "--no-progress-bar", "-p", "profile", profile]
    for name, value in setting.items():
        args += ["-p", name, str(value)]
    return " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items()) + " " + shlex.join(args)


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


def run_sweep(notebook: str, values: dict[str, Sequence[Any]], profile: str | None = None, out: str | None = None,
              jobs: int = 1, dry_run: bool = False, name: str | None = None,
              log: Callable[[str], None] = print, folder: Path = NOTEBOOK_DIR) -> dict:
    """Run (or with `dry_run`, print) every setting of `values` for one notebook; gather what finished."""
    nb, = select_notebooks([notebook], folder)
    P = get_profile(profile)
    if not values or any(len(v) == 0 for v in values.values()):
        raise ValueError("a sweep needs at least one parameter with at least one value: -p NAME V1 V2 ...")
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    settings = grid(values)
    for setting in settings:
        check_parameters([nb], setting)
    out_dir = prepare_out(out)
    sweep_dir = out_dir / "sweeps" / (name or f"{nb.stem[:2]}-" + "-".join(values))
    todo = []
    for setting in settings:
        run_dir = sweep_dir / run_name(setting)
        cmd = command(nb, run_dir, setting, P.name, out_dir / "checkpoints")
        if dry_run:
            log(cmd)
        elif not (run_dir / "results" / f"{nb.stem}.json").exists():
            todo.append((setting, run_dir, cmd))
    if dry_run:
        return {"commands": len(settings)}
    log(f"sweep of {nb.stem}: {len(settings)} runs, {len(settings) - len(todo)} already done, {jobs} at a time, "
        f"into {sweep_dir}")

    def execute(item: tuple[dict, Path, str]) -> tuple[dict, int]:
        setting, run_dir, cmd = item
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "log.txt", "w") as logfile:
            code = subprocess.run(cmd, shell=True, stdout=logfile, stderr=subprocess.STDOUT).returncode
        outcome = "ok" if code == 0 else f"FAILED (exit {code}); see {run_dir / 'log.txt'}"
        log(f"[{run_name(setting)}] {outcome}")
        return setting, code

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        failed = [s for s, code in pool.map(execute, todo) if code != 0]
    rows = []
    for setting in settings:
        path = sweep_dir / run_name(setting) / "results" / f"{nb.stem}.json"
        if path.exists():
            rows.append({"setting": setting, "headline": json.loads(path.read_text())["headline"]})
    table = summarise(rows, list(values)) if rows else "no run finished\n"
    figures = plot(rows, list(values), sweep_dir) if rows else []
    (sweep_dir / "table.md").write_text(f"# Sweep of {nb.stem}, profile {P.name}\n\n{table}")
    (sweep_dir / "runs.json").write_text(json.dumps(rows, indent=1))
    write_sweep_page(sweep_dir, nb.stem, P.name, table, figures)
    write_index(out_dir)
    log(table)
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed: {', '.join(run_name(s) for s in failed)}")
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
