"""grlib: the thin library behind the generative-replay course (see the notebooks for the story).

Threads: `GRLIB_THREADS=N` sets torch's threads for every process grlib starts (notebook kernels, benchmark
workers); see docs/teaching.md, "A class on one server"."""
import os

if os.environ.get("GRLIB_THREADS"):
    os.environ["OMP_NUM_THREADS"] = os.environ["GRLIB_THREADS"]  # before torch starts its thread pool

from . import checkpoints, continual, data, metrics, nets, plots, profiles, results, strategies  # noqa: E402

__all__ = ["checkpoints", "continual", "data", "metrics", "nets", "plots", "profiles", "results", "strategies"]
