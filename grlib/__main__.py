"""Command line: `python -m grlib run [--profile P] [--only 00 01] [--out build]`,
`python -m grlib bench [--profile P] [--seeds N] [--methods ...]` and `python -m grlib student --out DIR`."""
from __future__ import annotations

import argparse
import sys

from .bench import METHODS, run_bench
from .course import run_course, write_student_copy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grlib", description="The generative-replay course.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute the notebooks in order with papermill, into build/")
    run.add_argument("--profile", help="smoke, quick, full or auto (default: $GRLIB_PROFILE, else auto)")
    run.add_argument("--only", nargs="+", metavar="NB", help="notebooks to run, by number or name (e.g. 00 01)")
    run.add_argument("--out", help="build folder (default: $GRLIB_BUILD, else the repository's build/)")
    bench = commands.add_parser("bench", help="every method on Split-MNIST over several seeds: build/bench.md")
    bench.add_argument("--profile", help="smoke, quick, full or auto (default: $GRLIB_PROFILE, else auto)")
    bench.add_argument("--seeds", type=int, default=3, help="seeds per method (default 3)")
    bench.add_argument("--methods", nargs="+", metavar="M", help=f"a subset of: {', '.join(METHODS)}")
    bench.add_argument("--out", help="build folder (default: $GRLIB_BUILD, else the repository's build/)")
    student = commands.add_parser("student", help="write the notebooks without their worked solutions, for learners")
    student.add_argument("--out", required=True, help="folder for the learner's copy")
    args = parser.parse_args(argv)
    try:
        if args.command == "student":
            for path in write_student_copy(args.out):
                print(f"wrote {path}")
            return 0
        if args.command == "bench":
            run_bench(profile=args.profile, seeds=args.seeds, methods=args.methods, out=args.out)
            return 0
        return run_course(profile=args.profile, only=args.only, out=args.out)
    except (ValueError, FileNotFoundError) as e:  # bad arguments or a missing dataset: said before anything runs
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
