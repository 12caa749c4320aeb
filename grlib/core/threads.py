"""Torch threads shared fairly between the grlib processes training on one machine (docs/teaching.md, "A class on
one server").

Torch gives every process one thread per core, so several processes training at once spin on the same cores and
each waits far longer than in a queue. A process that calls `start` (every notebook, in the cell that imports
grlib; each benchmark and tuning run) says so in a folder under the system's temporary directory and, while its
training loops run (`paced`), takes its share of the cores: the cores divided by the processes that trained in the
last two minutes, at least one. `OMP_NUM_THREADS` or `GRLIB_THREADS` fixes the number instead. Importing grlib
starts nothing."""
from __future__ import annotations

import atexit
import os
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

import torch

from grlib.core.config import fixed_threads

T = TypeVar("T")

REGISTRY: Path | None = None  # grlib-training/ in the temporary directory, found when first needed (`registry`)
RECENT_S = 120.0  # a process that trained this recently still counts as training
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
_started = False  # True after `start`
_counted = True  # False after `leave`
_joined = False
_last_share = -float("inf")


def registry() -> Path:
    """The folder where training processes leave their marks."""
    return REGISTRY or Path(tempfile.gettempdir()) / "grlib-training"


def processes_that_fit() -> int:
    """How many processes can train at once without more threads than cores: the cores, or the cores divided by
    the threads the user fixed (at least 1)."""
    fixed = fixed_threads()
    return CORES if fixed is None else max(1, CORES // fixed)


def start() -> int:
    """Begin sharing the cores from now on (or take the threads the user fixed); returns torch's threads."""
    global _started, _counted
    _started, _counted = True, True
    fixed = fixed_threads()
    if fixed is not None:
        torch.set_num_threads(fixed)
        return fixed
    return share()


def mark() -> None:
    """Record that this process is training now (a file named by its pid, its time the last training)."""
    global _joined
    if not _counted:
        return
    try:
        if not registry().exists():
            registry().mkdir(exist_ok=True)
            registry().chmod(0o1777)  # every user of a shared machine may add their own processes, like /tmp
        (registry() / str(os.getpid())).touch()
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
    for entry in registry().glob("[0-9]*") if registry().is_dir() else ():
        try:
            pid, recent = int(entry.name), now - entry.stat().st_mtime < RECENT_S
        except (ValueError, OSError):
            continue
        count += pid != os.getpid() and recent and _alive(pid)
    return count


def share(at_most_every: float = 0.0) -> int:
    """Mark this process as training and set torch's threads to its share of the cores; returns the number. Does
    nothing before `start`, or if it last did so less than `at_most_every` seconds ago."""
    global _last_share
    if not _started or fixed_threads() is not None or time.monotonic() - _last_share < at_most_every:
        return torch.get_num_threads()
    _last_share = time.monotonic()
    mark()
    threads = max(1, CORES // (others_training() + 1))
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


def leave() -> None:
    """Stop counting this process (one that only starts others, or that has finished), until `start` again."""
    global _counted
    _counted = False
    try:
        (registry() / str(os.getpid())).unlink(missing_ok=True)
    except OSError:
        pass


def paced(steps: Iterable[T]) -> Iterator[T]:
    """A training loop's steps, this process taking its share of the cores at the start and every few seconds
    (others may start or finish training meanwhile); only counting steps before `start`."""
    share()
    for step in steps:
        share(at_most_every=2.0)
        yield step
