"""The continual-learning loop: learn task t, evaluate on every task, fill the accuracy matrix (notebook 01)."""
from __future__ import annotations

import contextlib
import copy
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn

from grlib.core.checkpoints import checkpoint_path, exclusive, load_checkpoint, save_checkpoint
from grlib.continual import metrics
from grlib.continual.data import TaskStream
from grlib.continual.scenarios import predict


def evaluate(solver: nn.Module, stream: TaskStream) -> tuple[list[float], list[float]]:
    """Accuracy (%) on every task's test set, and per class over all test sets."""
    n = stream.n_classes
    correct, total = torch.zeros(n), torch.zeros(n)
    task_acc = []
    for task in stream:
        classes = task.classes if stream.scenario == "task" else None
        hit = (predict(solver, task.test_x, classes) == task.test_y).float().cpu()
        task_acc.append(100.0 * float(hit.mean()))
        y = task.test_y.cpu()
        correct += torch.bincount(y, weights=hit, minlength=n)
        total += torch.bincount(y, minlength=n).float()
    class_acc = (100.0 * correct / total.clamp(min=1)).masked_fill(total == 0, float("nan"))
    return task_acc, class_acc.tolist()


@dataclass
class RunResult:
    """What one method did on one stream; R[i][j] = accuracy (%) on task j after training task i."""
    method: str
    stream: str
    R: list[list[float]] = field(default_factory=list)
    class_acc: list[list[float]] = field(default_factory=list)
    test_sizes: list[int] = field(default_factory=list)
    first_seen: list[int] = field(default_factory=list)
    losses: list[list[float]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    trace: list[dict] = field(default_factory=list)  # with eval_every: {"task", "step", "accuracy"} while training

    @property
    def A_T(self) -> float:
        return metrics.average_accuracy(self.R, self.test_sizes)

    @property
    def F_T(self) -> float:
        """Per-class forgetting when each class belongs to one task (class splits), else per task."""
        if self.first_seen:
            return metrics.forgetting(self.class_acc, self.first_seen)
        return metrics.forgetting(self.R, list(range(len(self.R))))

    @property
    def BWT(self) -> float:
        return metrics.backward_transfer(self.R)

    @property
    def curve(self) -> list[float]:
        return metrics.accuracy_curve(self.R, self.test_sizes)

    def summary(self) -> dict[str, float]:
        return {"A_T": self.A_T, "F_T": self.F_T, "BWT": self.BWT, "train_seconds": sum(self.seconds)}

    def to_dict(self) -> dict:
        return {**asdict(self), **self.summary(), "curve": self.curve}


def _first_seen(stream: TaskStream) -> list[int]:
    """Task index where each class is learned, if each class belongs to exactly one task; else []."""
    owner: dict[int, int] = {}
    for t, task in enumerate(stream):
        for c in task.classes:
            if c in owner:
                return []
            owner[c] = t
    return [owner.get(c, len(stream)) for c in range(stream.n_classes)]


def _restore(strategy, saved: dict) -> None:
    """Continue from a task's cached state (loaded from disk: nobody else holds it). One that does not fit the code
    (a state_dict changed without a CACHE_VERSION bump) leaves the strategy as it was, to train the task again, and
    raises for `load_checkpoint` to set the file aside."""
    missing = sorted({"strategy", "losses", "seconds", "trace"} - set(saved))
    if missing:
        raise KeyError(f"it lacks {', '.join(missing)}")
    before = copy.deepcopy(strategy.state_dict())
    try:
        strategy.restore(saved["strategy"])
    except Exception:
        strategy.restore(before)
        raise


def run(strategy, stream: TaskStream, cache: bool = True, progress: bool = True,
        eval_every: int | None = None, folder: str | os.PathLike | None = None,
        after_each_task: Callable[[int], None] | None = None) -> RunResult:
    """Train `strategy` task by task on `stream`, evaluating on all tasks after each one
    (and every `eval_every` steps within a task, into `result.trace`); `after_each_task(t)` then sees the strategy
    as it is after task t, trained or loaded (for snapshots).

    With `cache`, the strategy's state after each task is saved in `folder` (default: build/checkpoints/) and reused
    by a later run with the same settings and data (so a crash loses at most one task)."""
    result = RunResult(strategy.name, stream.name, test_sizes=[len(task.test_y) for task in stream],
                       first_seen=_first_seen(stream))
    for t in range(len(stream)):
        settings = {**strategy.settings(), **stream.settings, "task": t, "eval_every": eval_every}
        path = checkpoint_path(f"{strategy.name}-{stream.name}-task{t + 1}", settings, folder)
        with exclusive(path) if cache else contextlib.nullcontext():  # one process trains it; others load it
            saved = load_checkpoint(path, settings, restore=lambda state: _restore(strategy, state)) if cache else None
            if saved is not None:
                losses, seconds, trace = saved["losses"], saved["seconds"], saved["trace"]
            else:
                trace = []

                def monitor(step: int) -> None:
                    if eval_every and step % eval_every == 0:
                        trace.append({"task": t, "step": step, "accuracy": evaluate(strategy.solver, stream)[0]})
                start = time.perf_counter()
                losses = strategy.learn(stream, t, progress=progress, monitor=monitor if eval_every else None)
                seconds = time.perf_counter() - start
                if cache:
                    save_checkpoint(path, settings, {"strategy": strategy.state_dict(), "losses": losses,
                                                     "seconds": seconds, "trace": trace})
        task_acc, class_acc = evaluate(strategy.solver, stream)
        result.R.append(task_acc)
        result.class_acc.append(class_acc)
        result.losses.append(losses)
        result.seconds.append(seconds)
        result.trace += trace
        if after_each_task is not None:
            after_each_task(t)
    return result
