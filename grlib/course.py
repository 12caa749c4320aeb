"""`python -m grlib run`: papermill executes the notebooks in order into build/ and writes a summary."""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .data import REPO_ROOT
from .profiles import get_profile
from .results import build_dir, load_results

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


@dataclass
class NotebookRun:
    name: str
    status: str            # "ok", "failed" or "not run"
    seconds: float = 0.0
    headline: dict | None = None
    error: str = ""


def list_notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def select_notebooks(only: Sequence[str] | None, folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """Notebooks named by number ("01") or stem ("01_catastrophic_forgetting"); all when `only` is empty."""
    available = list_notebooks(folder)
    if not only:
        return available
    chosen = []
    for name in only:
        matches = [p for p in available if name in (p.stem, p.stem[:2], p.name)]
        if not matches:
            raise ValueError(f"unknown notebook {name!r}; choose from: {', '.join(p.stem for p in available)}")
        chosen += [p for p in matches if p not in chosen]
    return sorted(chosen)


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the notebook kernels, restoring them afterwards."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _format_headline(headline: dict | None) -> str:
    if not headline:
        return ""
    return ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in headline.items())


def write_summary(runs: list[NotebookRun], profile: str, out: Path) -> str:
    lines = [f"# Course run, profile `{profile}`", "", "| notebook | status | seconds | headline metrics |",
             "| --- | --- | --- | --- |"]
    lines += [f"| {r.name} | {r.status} | {r.seconds:.0f} | {_format_headline(r.headline) or r.error} |" for r in runs]
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    return text


def run_course(profile: str | None = None, only: Sequence[str] | None = None, out: str | None = None,
               folder: Path = NOTEBOOK_DIR, log: Callable[[str], None] = print) -> int:
    """Execute the chosen notebooks in order; stop at the first failure. Returns a process exit code."""
    import papermill  # imported here: it is slow, and bad arguments should fail fast

    chosen_profile = get_profile(profile).name
    notebooks = select_notebooks(only, folder)
    out_dir = build_dir(out)
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    runs = [NotebookRun(nb.stem, "not run") for nb in notebooks]
    log(f"running {len(notebooks)} notebook(s) with profile {chosen_profile!r} into {out_dir}")
    with _environment(GRLIB_BUILD=str(out_dir), GRLIB_PROFILE=chosen_profile, GRLIB_PROGRESS="text"):
        for nb, run in zip(notebooks, runs):
            log(f"[{nb.stem}] running ...")
            start = time.perf_counter()
            # interactive=False: widgets would wait forever for a browser; pass only what a notebook declares
            wanted = {"profile": chosen_profile, "interactive": False}
            declared = papermill.inspect_notebook(str(nb))
            try:
                papermill.execute_notebook(str(nb), str(out_dir / "notebooks" / nb.name), cwd=str(nb.parent),
                                           parameters={k: v for k, v in wanted.items() if k in declared},
                                           kernel_name="python3",
                                           progress_bar=False)
            except papermill.PapermillExecutionError as e:
                run.status, run.error = "failed", f"cell [{e.exec_count}]: {e.ename}: {e.evalue}"
            run.seconds = time.perf_counter() - start
            if run.status == "failed":
                log(f"[{nb.stem}] FAILED after {run.seconds:.0f} s in {run.error}\n"
                    f"  the executed notebook, with the traceback, is {out_dir / 'notebooks' / nb.name}")
                break
            run.status = "ok"
            run.headline = (load_results(nb.stem, out_dir) or {}).get("headline")
            log(f"[{nb.stem}] ok in {run.seconds:.0f} s  {_format_headline(run.headline)}")
    summary = write_summary(runs, chosen_profile, out_dir)
    log(summary)
    index = render_report(out_dir, [nb.name for nb, run in zip(notebooks, runs) if run.status != "not run"], summary)
    log(f"report: {index}")
    return 1 if any(r.status == "failed" for r in runs) else 0


def render_report(out_dir: Path, names: list[str], summary: str) -> Path:
    """Executed notebooks as HTML (figures embedded) under build/report/, with an index page."""
    import html

    import nbconvert
    import nbformat

    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    report = out_dir / "report"
    report.mkdir(parents=True, exist_ok=True)
    exporter = nbconvert.HTMLExporter()
    exporter.register_preprocessor(CoalesceStreamsPreprocessor(), enabled=True)  # a progress bar shows as its last line
    links = []
    for name in names:
        body, _ = exporter.from_notebook_node(nbformat.read(out_dir / "notebooks" / name, as_version=4))
        page = report / name.replace(".ipynb", ".html")
        page.write_text(body)
        links.append(f'<li><a href="{page.name}">{html.escape(page.stem)}</a></li>')
    rows = [line.strip("|").split("|") for line in summary.splitlines() if line.startswith("| ") and "---" not in line]
    table = "".join("<tr>" + "".join(f"<td>{html.escape(cell.strip())}</td>" for cell in row) + "</tr>" for row in rows)
    (report / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>Generative replay: course report</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td{border:1px solid #ccc;padding:4px}"
        "table{border-collapse:collapse}</style>"
        f"<h1>Generative replay for continual learning: course report</h1><h2>Summary</h2><table>{table}</table>"
        f"<h2>Notebooks</h2><ul>{''.join(links)}</ul>")
    return report / "index.html"


def write_student_copy(out: str | os.PathLike, folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The notebooks without their worked solutions (every cell tagged `solution`), for learners, written to `out`."""
    from nbconvert.exporters import NotebookExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    out_dir = Path(out).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    exporter = NotebookExporter()
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={"solution"}), enabled=True)
    written = []
    for nb in list_notebooks(folder):
        body, _ = exporter.from_filename(str(nb))
        (out_dir / nb.name).write_text(body)
        written.append(out_dir / nb.name)
    return written
