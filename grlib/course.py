"""`python -m grlib run`: papermill executes the notebooks (in order, or up to --jobs at once, the longest chain
first) into build/ and writes a summary."""
from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import os
import signal
import tempfile
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from . import checkpoints, data
from .data import REPO_ROOT
from .profiles import get_profile
from .report import render_report
from .results import atomic_file, build_dir, load_results

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
    with atomic_file(out / "summary.md") as f:
        f.write(text.encode())
    return text


def outside_sources(out: str | os.PathLike, sources: Path = NOTEBOOK_DIR) -> Path:
    """`out` as a folder to write into, refused (a one-line ValueError) if empty or if writing there could overwrite
    the course's own files: the repository's root, the notebooks' folder or a folder inside it, or any folder whose
    notebooks/ is the notebooks' folder (a build writes its executed notebooks into <out>/notebooks/)."""
    if not str(out).strip():
        raise ValueError("--out is empty; give a folder for what is written, e.g. --out build")
    out_dir = Path(out).expanduser().resolve()
    sources = sources.resolve()
    if out_dir == REPO_ROOT or out_dir.is_relative_to(sources) or (out_dir / "notebooks").resolve() == sources:
        raise ValueError(f"--out {out_dir} would write over the course's own notebooks in {sources}; give a folder "
                         f"of its own, e.g. --out build")
    return out_dir


def prepare_out(out: str | os.PathLike | None, sources: Path = NOTEBOOK_DIR) -> Path:
    """The build folder, created and checked writable, with the folders a run writes into that exist already (a
    build folder another learner made is theirs); an empty --out, one that would overwrite the course's own
    notebooks (`outside_sources`), a file or an unwritable place is a one-line ValueError."""
    out_dir = outside_sources(build_dir() if out is None else out, sources)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; give a folder for the build")
    written = [out_dir / f for f in ("notebooks", "results", "report", "sweeps") if (out_dir / f).is_dir()]
    for folder in [out_dir, *written]:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as e:
            raise ValueError(f"cannot write the build into {folder}: {e.strerror or e}; give a --out of your own") \
                from None
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


def parameter_checks(nb: Path) -> str | None:
    """The source of the cell that checks the notebook's parameters: the code cell right after the parameters cell,
    when it calls `params.check(globals(), ...)` (see `grlib.params`); None if the notebook has none."""
    cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    for cell, after in zip(cells, cells[1:]):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(after["source"])
            return source if "params.check(" in source else None
    return None


def check_ranges(nb: Path, given: dict[str, Any]) -> None:
    """Run the notebook's own parameter checks (`parameter_checks`) on its defaults updated with `given`, in this
    process, so that a value out of range is one line before any kernel starts; the rules live in the notebook
    alone. Relative paths are read from the notebook's folder, as its kernel reads them."""
    from . import params

    checks = parameter_checks(nb)
    if checks is None:
        return
    folder, last = params.base_folder.set(nb.parent), params.last
    try:
        exec(compile(checks, f"{nb.name}: its parameter checks", "exec"), {**notebook_parameters(nb), **given})
    except params.ParameterError as e:
        raise ValueError(f"{nb.stem}: {e}") from None
    finally:
        params.base_folder.reset(folder)
        params.last = last  # what this process's own notebook checked, if it is one (09 runs others)


def check_parameters(notebooks: Sequence[Path], parameters: dict[str, Any]) -> None:
    """Every parameter must be declared by a chosen notebook, of its default's type (None takes any value), and
    within the notebook's own checks (`check_ranges`); the profile is not one (it has its own --profile). Raises
    ValueError naming the parameter, before anything runs."""
    if "profile" in parameters:
        raise ValueError("the profile is chosen with --profile (e.g. --profile quick), not with -p profile")
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
    for nb in notebooks:
        given = {name: value for name, value in parameters.items() if name in declared[nb.stem]}
        if given:
            check_ranges(nb, given)


def course_metadata(nb: Path) -> dict:
    """What the runner reads from a notebook's metadata (its "grlib" entry)."""
    return json.loads(nb.read_text()).get("metadata", {}).get("grlib", {})


def notebook_reads(nb: Path) -> list[str]:
    """The notebooks (by number) whose saved results `nb` reads: its metadata's grlib.reads. The runner starts it
    only after those of them it runs have finished."""
    return course_metadata(nb).get("reads", [])


def notebook_loads(nb: Path) -> list[str]:
    """The notebooks (by number) whose cached models `nb` loads, or trains itself if they have not run yet: its
    metadata's grlib.loads. The runner starts those before it, so that they, not `nb`, train the models."""
    return course_metadata(nb).get("loads", [])


def course_seconds(nb: Path) -> int:
    """The seconds `nb` took alone in a measured course run (its metadata's grlib.seconds; 0 if none)."""
    return course_metadata(nb).get("seconds", 0)


def queue_order(notebooks: Sequence[Path]) -> list[Path]:
    """The notebooks, those heading the longest chain first: a notebook's chain is its own seconds plus the longest
    chain among the notebooks that read its results or load its models. So what others wait for, or would train
    themselves, starts early, and the last ones end together. A stable sort keeps ties in the course's order."""
    numbers = {nb.stem[:2]: nb for nb in notebooks}
    users = {n: [u for u in notebooks if n in notebook_reads(u) + notebook_loads(u)] for n in numbers}
    chain: dict[Path, int] = {}

    def chain_seconds(nb: Path) -> int:
        if nb not in chain:
            chain[nb] = course_seconds(nb) + max(map(chain_seconds, users[nb.stem[:2]]), default=0)
        return chain[nb]

    return sorted(notebooks, key=chain_seconds, reverse=True)


def logging_kernel_manager(log: Path, cwd: Path, live: set | None = None) -> type:
    """A kernel manager whose kernels start in `cwd` and write their own log (stderr) to `log` instead of the
    terminal, so that a run prints only its own lines (a kernel shut down by Ctrl-C otherwise prints a traceback
    there); each one started is added to `live`, for `interrupt`. The folder is given to the kernel, not set with
    papermill's `cwd`, which changes the working directory of the whole process, shared by the runner's threads."""
    from jupyter_client.manager import AsyncKernelManager

    class LoggingKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:
            with open(log, "ab") as stderr:  # the kernel keeps its own copy of the file
                await super().start_kernel(**{"stderr": stderr, **kw, "cwd": str(cwd)})
            if live is not None:
                live.add(self)

    return LoggingKernelManager


def interrupt(kernels: set) -> None:
    """Ctrl-C for the kernels: each runs in its own session, so the terminal's signal reaches only this process."""
    for manager in list(kernels):
        if manager.provisioner is not None:
            asyncio.run(manager.provisioner.send_signal(signal.SIGINT))


def cache_notice(folder: Path, own: Path, log: Callable[[str], None]) -> None:
    """Say at the start, once, if the checkpoint folder the notebooks will use cannot be written (a class's
    read-only shared cache): its models are loaded, new ones kept in `own` (`grlib.checkpoints.keeper`)."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        checkpoints.keeper(folder, own)
    for warning in said:
        log(str(warning.message))


def run_course(profile: str | None = None, only: Sequence[str] | None = None, out: str | None = None,
               folder: Path = NOTEBOOK_DIR, log: Callable[[str], None] = print,
               parameters: dict[str, Any] | None = None, jobs: int = 1) -> int:
    """Execute the chosen notebooks in order, or up to `jobs` at once (they share the cores: grlib.threads), the
    longest chain first (`queue_order`) so that the last ones end together, and one that reads another's results
    after it; pass `parameters` to those that declare them; start none after the first failure.
    Returns a process exit code: 0, 1 if a notebook failed, 130 if interrupted (Ctrl-C)."""
    import papermill  # imported here: it is slow, and bad arguments should fail fast

    chosen_profile = get_profile(profile).name
    notebooks = select_notebooks(only, folder)
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be a whole number of at least 1, got {jobs!r}")
    parameters = dict(parameters or {})
    check_parameters(notebooks, parameters)
    out_dir = prepare_out(out, folder)
    data.load("mnist"), data.load("mnist", train=False)  # every notebook reads MNIST: missing or corrupt fails here
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    cache_notice(checkpoints.checkpoint_folder() if os.environ.get("GRLIB_CHECKPOINTS") else out_dir / "checkpoints",
                 out_dir / "checkpoints", log)
    runs = {nb: NotebookRun(nb.stem, "not run") for nb in notebooks}
    by_number = {nb.stem[:2]: run for nb, run in runs.items()}
    order = f"{jobs} at a time (the longest chain first)" if jobs > 1 else "one at a time"
    log(f"running {len(notebooks)} notebook(s) with profile {chosen_profile!r}, {order}, into {out_dir}")
    environment = {"GRLIB_BUILD": str(out_dir), "GRLIB_PROFILE": chosen_profile, "GRLIB_PROGRESS": "text",
                   "GRLIB_INTERACTIVE": "0"}  # widgets would wait for a browser; a learner's own run has them
    kernels: set = set()

    def execute(nb: Path, run: NotebookRun) -> None:
        log(f"[{nb.stem}] running ...")
        start = time.perf_counter()
        declared = notebook_parameters(nb)
        given = {k: v for k, v in {"profile": chosen_profile, **parameters}.items() if k in declared}
        try:
            papermill.execute_notebook(
                str(nb), str(out_dir / "notebooks" / nb.name), parameters=given, kernel_name="python3",
                progress_bar=False,
                kernel_manager_class=logging_kernel_manager(out_dir / "notebooks" / f"{nb.stem}.kernel.log",
                                                            nb.parent, kernels))
            run.status = "ok"
        except papermill.PapermillExecutionError as e:
            run.status = "interrupted" if e.ename == "KeyboardInterrupt" else "failed"
            run.error = f"cell [{e.exec_count}]: {e.ename}: {e.evalue}"
        except Exception:
            if not interrupted:
                raise
            run.status = "interrupted"  # a kernel that was still starting when Ctrl-C came dies of it
        run.seconds = time.perf_counter() - start
        if run.status == "ok":
            run.headline = (load_results(nb.stem, out_dir) or {}).get("headline")
            log(f"[{nb.stem}] ok in {run.seconds:.0f} s  {_format_headline(run.headline)}")

    course_start = time.perf_counter()
    waiting, running, interrupted = (queue_order(notebooks) if jobs > 1 else list(notebooks)), {}, False
    with _environment(**environment), ThreadPoolExecutor(jobs) as pool:
        while waiting or running:
            stopping = interrupted or any(r.status in ("failed", "interrupted") for r in runs.values())
            for nb in [] if stopping else list(waiting):
                ready = all(by_number[n].status == "ok" for n in notebook_reads(nb) if n in by_number)
                if len(running) < jobs and ready:
                    waiting.remove(nb)
                    running[pool.submit(execute, nb, runs[nb])] = nb
            if not running:
                break
            try:
                done, _ = wait(running, timeout=1.0 if interrupted else None, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                interrupted, done = True, set()
            if interrupted:
                interrupt(kernels)  # again each second: a kernel between two cells ignores it
            for future in done:
                running.pop(future)
                future.result()  # an error of the runner itself, not of a notebook, is raised here
    ended = list(runs.values())
    summary = write_summary(ended, chosen_profile, out_dir)
    finished = sum(r.status == "ok" for r in ended)
    if interrupted or any(r.status == "interrupted" for r in ended):
        log(f"interrupted; {finished} notebook(s) finished, models kept in {out_dir / 'checkpoints'}; rerun to resume")
        return 130
    failed = [r for r in ended if r.status == "failed"]
    for run in failed:
        log(f"[{run.name}] FAILED after {run.seconds:.0f} s in {run.error}\n"
            f"  the executed notebook, with the traceback, is {out_dir / 'notebooks' / (run.name + '.ipynb')}")
    log(summary)
    minutes, seconds = divmod(round(time.perf_counter() - course_start), 60)
    log(f"{finished} notebook(s) in {minutes} min {seconds:02d} s")
    index = render_report(out_dir, [nb.name for nb, run in runs.items() if run.status != "not run"])
    log(f"report: {index}")
    return 1 if failed else 0


def write_student_copy(out: str | os.PathLike, folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The notebooks without their worked solutions (every cell tagged `solution`), for learners, written to `out`
    (never over the notebooks themselves: `outside_sources`)."""
    from nbconvert.exporters import NotebookExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    out_dir = outside_sources(out, folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    exporter = NotebookExporter()
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={"solution"}), enabled=True)
    written = []
    for nb in list_notebooks(folder):
        body, _ = exporter.from_filename(str(nb))
        (out_dir / nb.name).write_text(body)
        written.append(out_dir / nb.name)
    return written
