"""Command line: `python -m grlib run [--profile P] [--only 00 01] [--out build] [-p NAME VALUE ...] [--jobs N]`,
`python -m grlib sweep NB -p NAME V1 V2 ... [--jobs N] [--dry-run]`,
`python -m grlib bench [--profile P] [--seeds N] [--methods ...]`,
`python -m grlib tune METHOD --grid NAME V1 V2 ... [--set NAME V] [--stream permuted]`,
`python -m grlib student --out DIR` and `python -m grlib docs`."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Callable

from grlib.core.files import disk_message
from grlib.core.threads import processes_that_fit
from grlib.course import record
from grlib.course.bench import METHODS, run_bench
from grlib.course.notebooks import parse_value, write_student_copy
from grlib.course.runner import run_course
from grlib.course.sweep import run_sweep
from grlib.course.tune import STREAMS, run_tune


def once(names: list[str]) -> None:
    """A ValueError if a -p name is given twice: the later would silently replace the earlier."""
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"-p {', '.join(twice)} given more than once; give each parameter once (a sweep lists its "
                         f"values after one -p: -p NAME V1 V2)")


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP (a scheduler's stop, `kill`, a closed terminal) end `run` and `sweep` as Ctrl-C does: they
    stop their kernels and papermill processes, keep what was trained, and the same command resumes."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):  # Windows has no SIGHUP
            signal.signal(getattr(signal, name), interrupt)


def common_options() -> argparse.ArgumentParser:
    """--profile and --out, which run, bench, sweep and tune share: defined once, as their parent parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", help="smoke, quick, full or auto (default: $GRLIB_PROFILE, else auto)")
    common.add_argument("--out", help="build folder (default: $GRLIB_BUILD, else the repository's build/)")
    return common


def add_run_and_bench(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    run = commands.add_parser("run", parents=[common],
                              help="execute the notebooks in order with papermill, into build/")
    run.add_argument("--only", nargs="+", metavar="NB", help="notebooks to run, by number or name (e.g. 00 01)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="a notebook parameter, e.g. -p guidance_scale 1 (passed to the notebooks that declare it)")
    run.add_argument("--jobs", type=int, default=min(2, processes_that_fit()),
                     help="notebooks at a time (default: 2, or 1 where one process has every core: one core, or "
                          "OMP_NUM_THREADS / GRLIB_THREADS as large as the cores); they share the cores")
    bench = commands.add_parser("bench", parents=[common],
                                help="every method on Split-MNIST over several seeds: build/bench.md")
    bench.add_argument("--seeds", type=int, default=3, help="seeds per method (default 3)")
    bench.add_argument("--methods", nargs="+", metavar="M", help=f"a subset of: {', '.join(METHODS)}")
    bench.add_argument("--validation", type=float, default=0.0, metavar="FRACTION",
                       help="evaluate on this held-out fraction of each task's training data (e.g. 0.1), not the test set")


def add_sweep_and_tune(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sweep = commands.add_parser("sweep", parents=[common],
                                help="one notebook over a grid of parameters: build/sweeps/<name>/")
    sweep.add_argument("notebook", help="the notebook, by number or name (e.g. 06)")
    sweep.add_argument("-p", "--parameter", nargs="+", action="append", default=[], metavar="NAME V",
                       help="a parameter and its values, e.g. -p guidance_scale 0 1 3 -p seed 0 1 2")
    sweep.add_argument("--jobs", type=int, default=1, help="runs at a time (they share the cores: grlib.core.threads)")
    sweep.add_argument("--dry-run", action="store_true", help="print one papermill command a line, run nothing")
    sweep.add_argument("--name", help="the sweep's folder name (default: the notebook and the parameters)")
    tune = commands.add_parser("tune", parents=[common],
                               help="one method over a grid of a setting, on a validation split: build/tune/")
    tune.add_argument("method", help=f"one of: {', '.join(METHODS)}")
    tune.add_argument("--grid", nargs="+", required=True, metavar="NAME V",
                      help="the setting to vary and its values, e.g. --grid strength 0.1 1 10")
    tune.add_argument("--set", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                      help="a setting held fixed, e.g. --set critic_steps 2")
    tune.add_argument("--stream", choices=STREAMS, default="split", help="Split-MNIST (class-IL, the default) or "
                      "Permuted-MNIST (domain-IL)")
    tune.add_argument("--seeds", type=int, default=3, help="seeds per value (default 3)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m grlib", description="The generative-replay course.")
    commands = parser.add_subparsers(dest="command", required=True)
    common = common_options()
    add_run_and_bench(commands, common)
    add_sweep_and_tune(commands, common)
    student = commands.add_parser("student", help="write the notebooks without their worked solutions, for learners")
    student.add_argument("--out", required=True, help="folder for the learner's copy")
    commands.add_parser("docs", help="render the record's tables into README.md, docs/ and the notebooks' openings")
    return parser


def _docs(args: argparse.Namespace) -> int:
    for path in record.update(write=True):
        print(f"updated {path}")
    return 0


def _student(args: argparse.Namespace) -> int:
    for path in write_student_copy(args.out):
        print(f"wrote {path}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    if any(len(p) < 2 for p in args.parameter):
        raise ValueError("each -p takes a name and at least one value: -p NAME V1 V2 ...")
    once([p[0] for p in args.parameter])
    values = {p[0]: [parse_value(v) for v in p[1:]] for p in args.parameter}
    run_sweep(args.notebook, values, profile=args.profile, out=args.out, jobs=args.jobs, dry_run=args.dry_run,
              name=args.name)
    return 0


def _tune(args: argparse.Namespace) -> int:
    if len(args.grid) < 2:
        raise ValueError("--grid takes a setting's name and at least one value: --grid NAME V1 V2 ...")
    run_tune(args.method, args.grid[0], [parse_value(v) for v in args.grid[1:]],
             {name: parse_value(v) for name, v in args.set}, stream=args.stream, profile=args.profile,
             seeds=args.seeds, out=args.out)
    return 0


def _bench(args: argparse.Namespace) -> int:
    run_bench(profile=args.profile, seeds=args.seeds, methods=args.methods, out=args.out, validation=args.validation)
    return 0


def _run(args: argparse.Namespace) -> int:
    once([name for name, _ in args.parameter])
    parameters = {name: parse_value(value) for name, value in args.parameter}
    return run_course(profile=args.profile, only=args.only, out=args.out, parameters=parameters, jobs=args.jobs)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "docs": _docs, "student": _student, "sweep": _sweep, "tune": _tune, "bench": _bench, "run": _run}


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code: 0, 2 for bad arguments or a missing dataset (said before anything runs), 1 for
    a run that failed or a disk that refused, 130 if interrupted."""
    args = build_parser().parse_args(argv)
    if args.command in ("run", "sweep"):
        stop_on_signals()
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as e:  # bad arguments or a missing dataset: said before anything runs
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # a run failed (a benchmark worker, a sweep's run, a diverged training)
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of the output stopped early (`--dry-run | head`): end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:  # a full disk, or a folder this user may not write: where, and what to do
        print(f"error: {disk_message(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from the models already trained", file=sys.stderr)
        return 130
