"""`python -m grlib run`: papermill executes the notebooks in order into build/ and writes a summary."""
from __future__ import annotations

import ast
import contextlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from . import data
from .data import REPO_ROOT
from .profiles import get_profile
from .report import render_report
from .results import build_dir, load_results

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


@dataclass
class NotebookRun:
    name: str
    status: str            # "ok", "failed", "interrupted" or "not run"
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


def prepare_out(out: str | os.PathLike | None) -> Path:
    """The build folder, created and checked writable; a file or an unwritable place is a one-line ValueError."""
    out_dir = build_dir(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; give a folder for the build")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise ValueError(f"cannot write the build into {out_dir}: {e.strerror or e}; give a writable --out") from None
    return out_dir


def parse_value(text: str) -> Any:
    """A -p value as Python reads it (3, 0.5, True, None, "mnist,svhn"); anything else is a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def notebook_parameters(nb: Path) -> dict[str, Any]:
    """The notebook's parameters cell: name -> default value."""
    import papermill

    return {name: parse_value(p["default"]) for name, p in papermill.inspect_notebook(str(nb)).items()}


def check_parameters(notebooks: Sequence[Path], parameters: dict[str, Any]) -> None:
    """Every parameter must be declared by a chosen notebook, and of its default's type (None takes any value; the
    notebook's own checks then judge it). Raises ValueError naming the parameter, before anything runs."""
    declared = {nb.stem: notebook_parameters(nb) for nb in notebooks}
    for name, value in parameters.items():
        owners = {stem: params[name] for stem, params in declared.items() if name in params}
        if not owners:
            listing = "; ".join(f"{stem}: {', '.join(params)}" for stem, params in declared.items())
            raise ValueError(f"no chosen notebook has a parameter {name!r}; their parameters are {listing}")
        for stem, default in owners.items():
            kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(type(default))
            if kinds and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
                raise ValueError(f"parameter {name} = {value!r} of {stem} must be a {type(default).__name__} "
                                 f"(its default is {default!r})")


def logging_kernel_manager(log: Path) -> type:
    """A kernel manager whose kernels write their own log (stderr) to `log` instead of the terminal, so that a run
    prints only its own lines (a kernel shut down by Ctrl-C otherwise prints a traceback there)."""
    from jupyter_client.manager import AsyncKernelManager

    class LoggingKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:
            with open(log, "ab") as stderr:  # the kernel keeps its own copy of the file
                await super().start_kernel(**{"stderr": stderr, **kw})

    return LoggingKernelManager


def run_course(profile: str | None = None, only: Sequence[str] | None = None, out: str | None = None,
               folder: Path = NOTEBOOK_DIR, log: Callable[[str], None] = print,
               parameters: dict[str, Any] | None = None) -> int:
    """Execute the chosen notebooks in order, with `parameters` passed to those that declare them; stop at the
    first failure. Returns a process exit code: 0, 1 if a notebook failed, 130 if interrupted (Ctrl-C)."""
    import papermill  # imported here: it is slow, and bad arguments should fail fast

    chosen_profile = get_profile(profile).name
    notebooks = select_notebooks(only, folder)
    parameters = dict(parameters or {})
    check_parameters(notebooks, parameters)
    out_dir = prepare_out(out)
    data.load("mnist"), data.load("mnist", train=False)  # every notebook reads MNIST: missing or corrupt fails here
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    runs = [NotebookRun(nb.stem, "not run") for nb in notebooks]
    log(f"running {len(notebooks)} notebook(s) with profile {chosen_profile!r} into {out_dir}")
    environment = {"GRLIB_BUILD": str(out_dir), "GRLIB_PROFILE": chosen_profile, "GRLIB_PROGRESS": "text",
                   "GRLIB_INTERACTIVE": "0"}  # widgets would wait for a browser; a learner's own run has them
    course_start = time.perf_counter()
    with _environment(**environment):
        for nb, run in zip(notebooks, runs):
            log(f"[{nb.stem}] running ...")
            start = time.perf_counter()
            declared = notebook_parameters(nb)
            given = {k: v for k, v in {"profile": chosen_profile, **parameters}.items() if k in declared}
            try:
                papermill.execute_notebook(
                    str(nb), str(out_dir / "notebooks" / nb.name), cwd=str(nb.parent), parameters=given,
                    kernel_name="python3", progress_bar=False,
                    kernel_manager_class=logging_kernel_manager(out_dir / "notebooks" / f"{nb.stem}.kernel.log"))
                run.status = "ok"
            except papermill.PapermillExecutionError as e:
                run.status = "interrupted" if e.ename == "KeyboardInterrupt" else "failed"
                run.error = f"cell [{e.exec_count}]: {e.ename}: {e.evalue}"
            except KeyboardInterrupt:
                run.status = "interrupted"
            run.seconds = time.perf_counter() - start
            if run.status != "ok":
                break
            run.headline = (load_results(nb.stem, out_dir) or {}).get("headline")
            log(f"[{nb.stem}] ok in {run.seconds:.0f} s  {_format_headline(run.headline)}")
    finished = sum(r.status == "ok" for r in runs)
    stopped = runs[finished] if finished < len(runs) else None  # the loop stops at the first that is not ok
    summary = write_summary(runs, chosen_profile, out_dir)
    if stopped and stopped.status == "interrupted":
        log(f"interrupted; {finished} notebook(s) finished, models kept in {out_dir / 'checkpoints'}; rerun to resume")
        return 130
    if stopped:
        log(f"[{stopped.name}] FAILED after {stopped.seconds:.0f} s in {stopped.error}\n"
            f"  the executed notebook, with the traceback, is {out_dir / 'notebooks' / (stopped.name + '.ipynb')}")
    log(summary)
    minutes, seconds = divmod(round(time.perf_counter() - course_start), 60)
    log(f"{finished} notebook(s) in {minutes} min {seconds:02d} s")
    index = render_report(out_dir, [nb.name for nb, run in zip(notebooks, runs) if run.status != "not run"])
    log(f"report: {index}")
    return 1 if stopped else 0


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
