"""`python -m grlib tune METHOD --grid NAME V1 V2 ... [--set NAME V] [--stream permuted] [--seeds N]`: one method
over a grid of one of its settings, evaluated on a validation split (a tenth of each task's training data held
out, never the test set), over seeds. Writes build/tune/<name>.json, the format of the record's evidence
(docs/record.md), and prints the mean ± std of A_T for each value."""
from __future__ import annotations

import json
import shlex
import statistics
from typing import Any, Callable, Sequence

from grlib.continual import recipes, tuned
from grlib.continual.profiles import get_profile
from grlib.course.bench import provenance, run_in_worker
from grlib.course.notebooks import prepare_out
from grlib.course.tables import markdown_table, mean_std

VALIDATION = 0.1  # the held-out fraction of each task's training data that settings are chosen on
STREAMS = ("split", "permuted")


def tune_name(method: str, stream: str, grid_name: str, fixed: dict[str, Any]) -> str:
    """The record's file name for a grid: method, stream, the swept setting and the fixed ones."""
    return "-".join([method, stream, grid_name, *(f"{k}={v}" for k, v in fixed.items())])


def summary_table(runs: list[dict], grid_name: str) -> str:
    """A markdown table: each value of the grid, mean ± std of A_T over the seeds; the best mean in bold."""
    values = list(dict.fromkeys(r["value"] for r in runs))
    means = {v: statistics.mean(r["A_T"] for r in runs if r["value"] == v) for v in values}
    best = max(means, key=means.get)
    rows = []
    for v in values:
        cell = mean_std([r["A_T"] for r in runs if r["value"] == v])
        rows.append([v, f"**{cell}**" if v == best else cell, sum(r["value"] == v for r in runs)])
    return markdown_table([grid_name, "validation A_T (%)", "seeds"], rows)


def run_tune(method: str, grid_name: str, values: Sequence[Any], fixed: dict[str, Any] | None = None,
             stream: str = "split", profile: str | None = None, seeds: int = 3, out: str | None = None,
             log: Callable[[str], None] = print) -> dict:
    """Run `method` with `grid_name` set to each of `values` (and the `fixed` overrides) over `seeds` seeds, each
    run in a fresh process on the validation split; write build/tune/<name>.json and return its record."""
    P = get_profile(profile)
    fixed = dict(fixed or {})
    known = recipes.options(method)  # an unknown method is a ValueError here
    unknown = [n for n in [grid_name, *fixed] if n not in known]
    if unknown:
        raise ValueError(f"{method} has no setting {', '.join(unknown)}; it takes {', '.join(known)}")
    if stream not in STREAMS or seeds < 1 or not values:
        raise ValueError(f"--stream is one of {', '.join(STREAMS)}, --seeds at least 1 and --grid needs values; "
                         f"got {stream!r}, {seeds}, {list(values)}")
    out_dir = prepare_out(out)
    runs = []
    for value in values:
        for seed in range(seeds):
            overrides = {**fixed, grid_name: value}
            log(f"[tune] {method} on {stream}, {grid_name} = {value}, seed {seed} ...")
            row = run_in_worker(method, P.name, seed, out_dir, VALIDATION, stream, overrides)
            runs.append({"value": value, "seed": seed, **{k: row[k] for k in ("A_T", "F_T", "train_seconds")}})
            log(f"[tune] A_T {row['A_T']:.1f} in {row['train_seconds']:.0f} s of training")
    argv = ["python", "-m", "grlib", "tune", method, "--stream", stream, "--profile", P.name, "--seeds", str(seeds),
            *[a for k, v in fixed.items() for a in ("--set", k, str(v))], "--grid", grid_name, *map(str, values)]
    in_effect = {**tuned.tuned(method, "domain" if stream == "permuted" else "class"), **fixed}  # the recipe's, as run
    in_effect.pop(grid_name, None)
    record = {**provenance(shlex.join(argv)), "profile": P.name, "method": method, "stream": stream,
              "validation": VALIDATION, "fixed": fixed, "settings": in_effect, "grid": grid_name, "runs": runs}
    path = out_dir / "tune" / f"{tune_name(method, stream, grid_name, fixed)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    log(summary_table(runs, grid_name) + f"written to {path}")
    return record
