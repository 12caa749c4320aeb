"""The course's record and the text rendered from it. Measured numbers live as JSON (`docs/bench-quick.json`, the
grids and ablations in `docs/record/`); docs/record.md, the README's table, the teacher's guide's timings and each
notebook's running-time line are rendered from them, never typed by hand. `python -m grlib docs` rewrites them;
tests/test_lesson_text.py checks that they are up to date."""
from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any, Callable

from grlib.core.config import REPO_ROOT
from grlib.course.notebooks import NOTEBOOK_DIR, course_metadata
from grlib.course.tables import markdown_table, mean_std

DOCS = REPO_ROOT / "docs"
RECORD_DIR = DOCS / "record"
BENCH = DOCS / "bench-quick.json"
RUNNING_TIME = re.compile(r"\*\*Running time:\*\*[^\n]*?on smoke\.")
BLOCK = re.compile(r"(<!-- begin (\S+) -->\n).*?(<!-- end \2 -->)", re.S)


def load(name: str) -> dict:
    """A record by name: "bench-quick" (the three-seed benchmark) or a file of docs/record/ without its .json."""
    path = BENCH if name == "bench-quick" else RECORD_DIR / f"{name}.json"
    return json.loads(path.read_text())


def by_value(record: dict, key: str = "value") -> dict[Any, list[dict]]:
    """The record's runs grouped by `key` (a grid's value, a benchmark's method), in the order they ran."""
    groups: dict[Any, list[dict]] = {}
    for run in record["runs"]:
        groups.setdefault(run[key], []).append(run)
    return groups


def grid_table(record: dict) -> str:
    """A grid or an ablation as a markdown table: each value's score (A_T, or the record's "metric") over the
    seeds, per seed, and its seconds (of training, or drawing); in bold the value chosen (the record's "chosen",
    else the best)."""
    metric, label = record.get("metric", "A_T"), record.get("metric_label", "A_T (%)")
    groups = by_value(record)
    best = record.get("chosen", max(groups, key=lambda v: statistics.mean(r[metric] for r in groups[v])))
    seeds = sorted({r["seed"] for r in record["runs"]})
    rows = []
    for value, runs in groups.items():
        score = mean_std([r[metric] for r in runs])
        per_seed = ", ".join(f"{r[metric]:.1f}" for r in runs)
        seconds = [r.get("train_seconds", r.get("seconds")) for r in runs if {"train_seconds", "seconds"} & set(r)]
        rows.append([value, f"**{score}**" if value == best else score, per_seed,
                     mean_std(seconds, 0) if seconds else "—"])
    return markdown_table([record["grid"], label, f"per seed ({', '.join(map(str, seeds))})", "seconds"], rows)


def provenance_line(record: dict) -> str:
    """The line under each table: the command, commit and machine it was measured with, and where."""
    where = record.get("evaluated") or ("a validation split" if record.get("validation") else "the test set")
    note = f" {record['note']}" if record.get("note") else ""
    return f"`{record['command']}` at commit {record['commit']}; {record['machine']}; evaluated on {where}.{note}\n"


def method_table(record: dict, labels: dict[str, str]) -> str:
    """The benchmark as the README shows it: each method's A_T and F_T (mean ± std over seeds), training seconds and
    the memory it keeps between tasks."""
    rows = []
    for method, runs in by_value(record, "method").items():
        memory = runs[0].get("memory_MB")
        rows.append([labels.get(method, method), mean_std([r["A_T"] for r in runs]), mean_std([r["F_T"] for r in runs]),
                     mean_std([r["train_seconds"] for r in runs], 0),
                     "every image" if memory is None else f"{memory:.2f}"])
    return markdown_table(["method", "A_T (%)", "F_T (%)", "training s", "memory kept (MB)"], rows)


def running_time(nb: Path) -> str:
    """The running-time sentence of a notebook's opening, from the one place its time is kept: the seconds in its
    metadata (`grlib.seconds`), measured alone on a 2-core CPU, nothing of its own cached."""
    meta = course_metadata(nb)
    minutes = round(meta["seconds"] / 60)
    duration = "under a minute" if minutes < 1 else f"about {minutes} min"
    needs = [f"the {what} of {numbered(meta[key])}" for key, what in (("loads", "models"), ("reads", "results"))
             if meta.get(key)]
    given = f", with {' and '.join(needs)} in the build folder" if needs else ""
    return f"**Running time:** {duration} on the quick profile, alone on a 2-core CPU{given}; seconds on smoke."


def numbered(notebooks: list[str]) -> str:
    """"notebook 02", "notebooks 02 and 04", "notebooks 01, 02 and 04"."""
    if len(notebooks) == 1:
        return f"notebook {notebooks[0]}"
    return f"notebooks {', '.join(notebooks[:-1])} and {notebooks[-1]}"


def render_blocks(text: str, render: Callable[[str], str]) -> str:
    """`text` with each `<!-- begin NAME -->…<!-- end NAME -->` block's body replaced by render(NAME)."""
    return BLOCK.sub(lambda m: m.group(1) + render(m.group(2)) + m.group(3), text)


def cell_table(record: dict, at_least: float = 60.0) -> str:
    """The cells of an executed course that took `at_least` seconds, the slowest first, with what each begins
    with."""
    rows = [[r["notebook"], r["cell"], f"{r['seconds']:.0f}", f"`{r['code']}`"]
            for r in sorted(record["runs"], key=lambda r: -r["seconds"]) if r["seconds"] >= at_least]
    return markdown_table(["notebook", "cell", "seconds", "it begins"], rows)


def block(name: str) -> str:
    """What a block renders: "grid:FILE" a grid or ablation of docs/record/ with its provenance, "bench" the
    three-seed benchmark, "bench-short" the README's version of it, "cells:FILE" an executed course's slowest cells,
    "notebook-times" the teacher's table of running times."""
    if name.startswith("grid:"):
        record = load(name[len("grid:"):])
        return grid_table(record) + "\n" + provenance_line(record)
    if name in ("bench", "bench-short"):
        from grlib.continual.recipes import METHODS  # here: the recipes import torch-heavy modules this one does not need

        record = load("bench-quick")
        short = name == "bench-short"
        labels = {m: (f"[{spec.label}](notebooks/{notebook_stem(spec.notebook)}.ipynb)" if short else spec.label)
                  for m, spec in METHODS.items()}
        return method_table(record, labels) + ("" if short else "\n" + provenance_line(record))
    if name.startswith("cells:"):
        record = load(name[len("cells:"):])
        return cell_table(record) + "\n" + provenance_line(record)
    if name == "notebook-times":
        return notebook_times()
    if name == "course-time":
        return course_time()
    raise KeyError(f"no rendering for the block {name!r}")


def course_time() -> str:
    """The sentence on how long the course and the tests take, from the latest runs of each in
    docs/record/course-times (a course run is "the quick course, one/two notebook(s) at a time")."""
    runs = load("course-times")["runs"]
    course = [r for r in runs if r["value"].startswith("the quick course")][-1]
    tests = [r for r in runs if r["value"] == "the tests (CI)"][-1]
    how = course["value"].removeprefix("the quick course, ")
    command = "python -m grlib run" + (" --jobs 1" if how.startswith("one") else "")
    return (f"On a 2-core CPU without a GPU, `{command}` took about {round(course['seconds'] / 60)} minutes (the quick "
            f"profile, a fresh clone, {how}) and the tests about {round(tests['seconds'] / 60)}.\n")


def notebook_stem(number: str) -> str:
    return next(NOTEBOOK_DIR.glob(f"{number}_*.ipynb")).stem


def duration(seconds: float) -> str:
    return "under a minute" if seconds < 60 else f"{round(seconds / 60)} min"


def notebook_times() -> str:
    """Each notebook's time alone on a 2-core CPU, as its metadata gives it."""
    rows = []
    for nb in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb")):
        meta = course_metadata(nb)
        needs = ", ".join(sorted(set(meta.get("loads", []) + meta.get("reads", [])))) or "—"
        rerun = duration(meta["rerun_seconds"]) if "rerun_seconds" in meta else "not measured"
        rows.append([nb.stem, duration(meta["seconds"]), rerun, needs])
    return markdown_table(["notebook", "first run", "rerun, from the cache", "needs first"], rows)


def update(write: bool = False) -> list[Path]:
    """Render every block of README.md, docs/record.md and docs/teaching.md and every notebook's running-time line;
    with `write`, save what changed. Returns the files whose text is not (or was not) up to date."""
    stale = []
    for path in (REPO_ROOT / "README.md", DOCS / "record.md", DOCS / "teaching.md"):
        text = path.read_text()
        new = render_blocks(text, block)
        if new != text:
            stale.append(path)
            if write:
                path.write_text(new)
    for nb in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb")):
        content = json.loads(nb.read_text())
        opening = content["cells"][0]
        text = "".join(opening["source"])
        new = RUNNING_TIME.sub(running_time(nb), text)
        if new != text:
            stale.append(nb)
            if write:
                opening["source"] = new.splitlines(keepends=True)
                nb.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n")
    return stale
