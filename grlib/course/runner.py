"""`python -m grlib run`: papermill executes the notebooks (in order, or up to --jobs at once, the longest chain
first) into build/ and writes a summary."""
from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

from grlib.core import checkpoints
from grlib.core.config import checkpoint_folder
from grlib.core.files import atomic_file
from grlib.continual import data
from grlib.continual.profiles import get_profile
from grlib.course.report import render_report
from grlib.course.notebooks import (NOTEBOOK_DIR, UNATTENDED, check_parameters, kernel_env, notebook_parameters,
                                    notebook_reads, prepare_out, queue_order, select_notebooks)
from grlib.course.results import load_results
from grlib.course.tables import markdown_table

@dataclass
class NotebookRun:
    name: str
    status: str            # "ok", "failed", "interrupted" or "not run"
    seconds: float = 0.0
    headline: dict | None = None
    error: str = ""


def _format_headline(headline: dict | None) -> str:
    if not headline:
        return ""
    return ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in headline.items())


def write_summary(runs: list[NotebookRun], profile: str, out: Path) -> str:
    text = f"# Course run, profile `{profile}`\n\n" + markdown_table(
        ["notebook", "status", "seconds", "headline metrics"],
        [[r.name, r.status, f"{r.seconds:.0f}", _format_headline(r.headline) or r.error] for r in runs])
    with atomic_file(out / "summary.md") as f:
        f.write(text.encode())
    return text


def logging_kernel_manager(log: Path, cwd: Path, env: dict[str, str], live: set | None = None) -> type:
    """A kernel manager whose kernels start in `cwd` with the variables `env` added to this process's, and write
    their own log (stderr) to `log` instead of the terminal, so that a run prints only its own lines (a kernel shut
    down by Ctrl-C otherwise prints a traceback there); each one started is added to `live`, for `interrupt`. The
    folder and variables are given to the kernel, never set in this process, whose threads run several kernels."""
    from jupyter_client.manager import AsyncKernelManager

    class LoggingKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:
            variables = {**(kw.get("env") or os.environ), **env}
            with open(log, "ab") as stderr:  # the kernel keeps its own copy of the file
                await super().start_kernel(**{"stderr": stderr, **kw, "cwd": str(cwd), "env": variables})
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
    read-only shared cache): its models are loaded, new ones kept in `own` (`grlib.core.checkpoints.keeper`)."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        checkpoints.keeper(folder, own)
    for warning in said:
        log(str(warning.message))


@dataclass
class CoursePlan:
    """What a course run will do, checked before any kernel starts: the profile's name, the notebooks in the order
    given, the parameters, the build folder and how many notebooks run at a time."""
    profile: str
    notebooks: list[Path]
    parameters: dict[str, Any]
    out: Path
    jobs: int


def plan_course(profile: str | None = None, only: Sequence[str] | None = None, out: str | None = None,
                folder: Path = NOTEBOOK_DIR, log: Callable[[str], None] = print,
                parameters: dict[str, Any] | None = None, jobs: int = 1) -> CoursePlan:
    """Check the arguments, the build folder and the data, so that a mistake is one error before anything runs
    (a ValueError, or a FileNotFoundError for missing MNIST), and say once if the checkpoint cache is read-only."""
    chosen_profile = get_profile(profile).name
    notebooks = select_notebooks(only, folder)
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be a whole number of at least 1, got {jobs!r}")
    parameters = dict(parameters or {})
    check_parameters(notebooks, parameters)
    out_dir = prepare_out(out, folder)
    data.load("mnist"), data.load("mnist", train=False)  # every notebook reads MNIST: missing or corrupt fails here
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    cache_notice(checkpoint_folder(build=out_dir), out_dir / "checkpoints", log)
    return CoursePlan(chosen_profile, notebooks, parameters, out_dir, jobs)


class CourseExecution:
    """Executes a `CoursePlan`: up to `jobs` notebooks at once, one that reads another's results after it, none
    started after the first failure or Ctrl-C; then the summary and the report."""

    def __init__(self, plan: CoursePlan, log: Callable[[str], None], papermill: ModuleType) -> None:
        self.plan, self.papermill, self.lock = plan, papermill, threading.Lock()
        self.say = log
        self.runs = {nb: NotebookRun(nb.stem, "not run") for nb in plan.notebooks}
        self.kernels: set = set()  # those started, for `interrupt`
        self.interrupted = False

    def log(self, line: str) -> None:
        """One line of the run's log, whole: notebooks that end together do not mix their lines."""
        with self.lock:
            self.say(line)

    def execute(self, nb: Path, run: NotebookRun) -> None:
        """Run one notebook with papermill, recording in `run` how it ended."""
        papermill = self.papermill
        self.log(f"[{nb.stem}] running ...")
        start, out_dir = time.perf_counter(), self.plan.out
        declared = notebook_parameters(nb)
        given = {k: v for k, v in {**UNATTENDED, "profile": self.plan.profile, **self.plan.parameters}.items()
                 if k in declared}
        try:
            papermill.execute_notebook(
                str(nb), str(out_dir / "notebooks" / nb.name), parameters=given, kernel_name="python3",
                progress_bar=False,
                kernel_manager_class=logging_kernel_manager(out_dir / "notebooks" / f"{nb.stem}.kernel.log",
                                                            nb.parent, kernel_env(out_dir), self.kernels))
            run.status = "ok"
        except papermill.PapermillExecutionError as e:
            run.status = "interrupted" if e.ename == "KeyboardInterrupt" else "failed"
            run.error = f"cell [{e.exec_count}]: {e.ename}: {e.evalue}"
        except Exception:
            if not self.interrupted:
                raise
            run.status = "interrupted"  # a kernel that was still starting when Ctrl-C came dies of it
        run.seconds = time.perf_counter() - start
        if run.status == "ok":
            run.headline = (load_results(nb.stem, out_dir) or {}).get("headline")
            self.log(f"[{nb.stem}] ok in {run.seconds:.0f} s  {_format_headline(run.headline)}")

    def schedule(self) -> None:
        """Start each notebook once those it reads have ended well, the longest chain first (`queue_order`), until
        all have ended, one has failed or Ctrl-C came (then the kernels are interrupted, every second)."""
        jobs, runs = self.plan.jobs, self.runs
        by_number = {nb.stem[:2]: run for nb, run in runs.items()}
        waiting, running = (queue_order(self.plan.notebooks) if jobs > 1 else list(self.plan.notebooks)), {}
        with ThreadPoolExecutor(jobs) as pool:
            while waiting or running:
                stopping = self.interrupted or any(r.status in ("failed", "interrupted") for r in runs.values())
                for nb in [] if stopping else list(waiting):
                    ready = all(by_number[n].status == "ok" for n in notebook_reads(nb) if n in by_number)
                    if len(running) < jobs and ready:
                        waiting.remove(nb)
                        running[pool.submit(self.execute, nb, runs[nb])] = nb
                if not running:
                    break
                try:
                    done, _ = wait(running, timeout=1.0 if self.interrupted else None, return_when=FIRST_COMPLETED)
                except KeyboardInterrupt:
                    self.interrupted, done = True, set()
                if self.interrupted:
                    interrupt(self.kernels)  # again each second: a kernel between two cells ignores it
                for future in done:
                    running.pop(future)
                    future.result()  # an error of the runner itself, not of a notebook, is raised here

    def finish(self, seconds: float) -> int:
        """Write the summary and the report, say what failed; the exit code: 0, 1 if a notebook failed, 130 if
        interrupted."""
        out_dir, log = self.plan.out, self.log
        ended = list(self.runs.values())
        summary = write_summary(ended, self.plan.profile, out_dir)
        finished = sum(r.status == "ok" for r in ended)
        if self.interrupted or any(r.status == "interrupted" for r in ended):
            log(f"interrupted; {finished} notebook(s) finished, models kept in {checkpoint_folder(build=out_dir)}; "
                f"rerun to resume")
            return 130
        failed = [r for r in ended if r.status == "failed"]
        for run in failed:
            log(f"[{run.name}] FAILED after {run.seconds:.0f} s in {run.error}\n"
                f"  the executed notebook, with the traceback, is {out_dir / 'notebooks' / (run.name + '.ipynb')}")
        log(summary)
        minutes, whole = divmod(round(seconds), 60)
        log(f"{finished} notebook(s) in {minutes} min {whole:02d} s")
        index = render_report(out_dir, [nb.name for nb, run in self.runs.items() if run.status != "not run"])
        log(f"report: {index}")
        return 1 if failed else 0


def run_course(profile: str | None = None, only: Sequence[str] | None = None, out: str | None = None,
               folder: Path = NOTEBOOK_DIR, log: Callable[[str], None] = print,
               parameters: dict[str, Any] | None = None, jobs: int = 1) -> int:
    """Execute the chosen notebooks in order, or up to `jobs` at once (they share the cores: grlib.core.threads), the
    longest chain first (`queue_order`) so that the last ones end together, and one that reads another's results
    after it; pass `parameters` to those that declare them; start none after the first failure.
    Returns a process exit code: 0, 1 if a notebook failed, 130 if interrupted (Ctrl-C)."""
    import papermill  # imported here: it is slow, and bad arguments should fail fast

    plan = plan_course(profile, only, out, folder, log, parameters, jobs)
    order = f"{jobs} at a time (the longest chain first)" if jobs > 1 else "one at a time"
    log(f"running {len(plan.notebooks)} notebook(s) with profile {plan.profile!r}, {order}, into {plan.out}")
    execution = CourseExecution(plan, log, papermill)
    start = time.perf_counter()
    execution.schedule()
    return execution.finish(time.perf_counter() - start)
