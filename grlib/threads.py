"""Torch threads shared fairly between the grlib processes training on one machine (docs/teaching.md, "A class on
one server").

Torch gives every process one thread per core, so several processes training at once spin on the same cores and
each waits far longer than in a queue. A grlib process says so in a folder under the system's temporary
directory and, while its loop runs (`grlib.progress.bar`), takes its share of the cores: the cores divided by the
processes that trained in the last two minutes, at least one. `OMP_NUM_THREADS` (or `GRLIB_THREADS`) fixes the
number instead."""
from __future__ import annotations

import atexit
import os
import tempfile
import time
from pathlib import Path

REGISTRY = Path(tempfile.gettempdir()) / "grlib-training"
RECENT_S = 120.0  # a process that trained this recently still counts as training
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
_counted = True  # False after `leave`
_joined = False
_last_share = -float("inf")


def fixed_by_user() -> bool:
    return "OMP_NUM_THREADS" in os.environ


def processes_that_fit() -> int:
    """How many processes can train at once without more threads than cores: the cores, or the cores divided by
    the threads the user fixed (at least 1)."""
    fixed = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, CORES // int(fixed)) if fixed.isdigit() and int(fixed) > 0 else CORES


def mark() -> None:
    """Record that this process is training now (a file named by its pid, its time the last training)."""
    global _joined
    if not _counted:
        return
    try:
        if not REGISTRY.exists():
            REGISTRY.mkdir(exist_ok=True)
            REGISTRY.chmod(0o1777)  # every user of a shared machine may add their own processes, like /tmp
        (REGISTRY / str(os.getpid())).touch()
    except OSError:
        return  # no shared folder: this process simply does not count for the others
    if not _joined:
        _joined = True
        atexit.register(leave)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def others_training() -> int:
    """How many other processes on this machine trained with grlib in the last RECENT_S seconds."""
    now, count = time.time(), 0
    for entry in REGISTRY.glob("[0-9]*") if REGISTRY.is_dir() else ():
        try:
            pid, recent = int(entry.name), now - entry.stat().st_mtime < RECENT_S
        except (ValueError, OSError):
            continue
        count += pid != os.getpid() and recent and _alive(pid)
    return count


def share(at_most_every: float = 0.0) -> int:
    """Mark this process as training and set torch's threads to its share of the cores; returns the number. Does
    nothing if it last did so less than `at_most_every` seconds ago."""
    global _last_share
    import torch  # here, so that `mark` can run before torch loads

    if fixed_by_user() or time.monotonic() - _last_share < at_most_every:
        return torch.get_num_threads()
    _last_share = time.monotonic()
    mark()
    threads = max(1, CORES // (others_training() + 1))
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


def leave() -> None:
    """Stop counting this process, for good (one that only starts others, or that has finished)."""
    global _counted
    _counted = False
    try:
        (REGISTRY / str(os.getpid())).unlink(missing_ok=True)
    except OSError:
        pass
