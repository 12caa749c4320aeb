"""grlib: the thin library behind the generative-replay course (see the notebooks for the story).

Threads: processes training at once on one machine share its cores (`grlib.threads`); `GRLIB_THREADS=N` fixes
torch's threads for every process grlib starts instead (notebook kernels, benchmark workers). See
docs/teaching.md, "A class on one server"."""
import os

if os.environ.get("GRLIB_THREADS"):
    os.environ["OMP_NUM_THREADS"] = os.environ["GRLIB_THREADS"]  # before torch starts its thread pool

from . import threads  # noqa: E402

threads.mark()  # counted from the first import, before torch loads: processes started together see each other

from . import checkpoints, continual, data, metrics, nets, plots, profiles, results, strategies  # noqa: E402

threads.share()

__all__ = ["checkpoints", "continual", "data", "metrics", "nets", "plots", "profiles", "results", "strategies",
           "threads"]
