"""The task streams of continual learning (notebook 00), built from the datasets of `grlib.continual.datasets`;
what callers use of that module (`load`, `fingerprint`, `KNOWN_MD5`, ...) is importable from here too."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
from torch import Tensor

from grlib.core.config import data_root
from grlib.continual.datasets import (DATASETS, KNOWN_MD5, DatasetNotFoundError, DatasetSpec, dataset_spec,
                                      expected_files, find_root, fingerprint, load, verify)

__all__ = ["SCENARIOS", "Task", "TaskStream", "batch_indices", "class_groups", "domain_stream", "holdout",
           "permuted_stream", "split_stream", "to_float",
           # re-exported from grlib.continual.datasets and grlib.core.config
           "DATASETS", "KNOWN_MD5", "DatasetNotFoundError", "DatasetSpec", "data_root",
           "dataset_spec", "expected_files", "find_root", "fingerprint", "load", "verify"]

SCENARIOS = ("task", "domain", "class")


def holdout(x: Tensor, y: Tensor, fraction: float, seed: int = 0) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Split a training set into (train, validation): a random `fraction` of it, the same for every call with this
    seed, held out to choose settings on, so that the test set is looked at only once, at the end."""
    if not 0 < fraction < 1:
        raise ValueError(f"the validation fraction must be between 0 and 1, got {fraction}")
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).to(y.device)
    n_val = round(fraction * len(y))
    keep, val = order[n_val:].sort().values, order[:n_val].sort().values
    return (x[keep], y[keep]), (x[val], y[val])


def _splits(dataset: str, validation: float, root: str | os.PathLike | None,
            device: torch.device | str) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], dict]:
    """(train, evaluation) tensors and their settings: the test set, or with `validation` > 0 a held-out part of
    the training set instead."""
    train = load(dataset, True, root, device)
    settings = {"data": fingerprint(dataset, True, root), "validation": validation}
    if validation:
        train, evaluation = holdout(*train, validation)
    else:
        evaluation = load(dataset, False, root, device)
        settings["test_data"] = fingerprint(dataset, False, root)
    return train, evaluation, settings


def to_float(x: Tensor) -> Tensor:
    """uint8 pixels in 0..255 -> float in [0, 1]."""
    return x.float().div_(255.0)


@dataclass
class Task:
    """One task of a stream: its classes and its train/test tensors (uint8 images on the device)."""
    name: str
    classes: tuple[int, ...]
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor


@dataclass
class TaskStream:
    """An ordered list of tasks and the scenario they are evaluated in."""
    name: str
    scenario: str
    tasks: list[Task]
    n_classes: int
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; choose one of {', '.join(SCENARIOS)}")

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, t: int) -> Task:
        return self.tasks[t]

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.tasks[0].train_x.shape[1:])

    def classes_up_to(self, t: int) -> tuple[int, ...]:
        """Every class of tasks 0..t, in order of first appearance."""
        return tuple(dict.fromkeys(c for task in self.tasks[: t + 1] for c in task.classes))


def class_groups(n_classes: int, first: int, per_task: int, order_seed: int | None = None) -> list[list[int]]:
    """Split classes into tasks: `first` classes, then `per_task` each (e.g. 50 + 5×10 on CIFAR-100)."""
    if first <= 0 or per_task <= 0 or (n_classes - first) % per_task:
        raise ValueError(f"cannot split {n_classes} classes into a first task of {first} and tasks of {per_task}")
    order = list(range(n_classes))
    if order_seed is not None:
        order = torch.randperm(n_classes, generator=torch.Generator().manual_seed(order_seed)).tolist()
    sizes = [first] + [per_task] * ((n_classes - first) // per_task)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [order[s:s + n] for s, n in zip(starts, sizes)]


def split_stream(dataset: str = "mnist", groups: Sequence[Sequence[int]] | None = None,
                 scenario: str = "class", root: str | os.PathLike | None = None,
                 device: torch.device | str = "cpu", validation: float = 0.0) -> TaskStream:
    """Class-split tasks: Split-MNIST (5×2 classes) by default, or any list of class groups.

    `validation` > 0: each task is evaluated on that fraction of its training data, held out, instead of the test
    set (choose settings this way; see `holdout`)."""
    n_classes = dataset_spec(dataset).n_classes
    groups = [list(g) for g in (groups if groups is not None else class_groups(n_classes, 2, 2))]
    flat = [c for g in groups for c in g]
    if not all(groups) or len(set(flat)) != len(flat) or not all(0 <= c < n_classes for c in flat):
        raise ValueError(f"class groups must be non-empty, disjoint and within 0..{n_classes - 1}; got {groups}")
    (train_x, train_y), (test_x, test_y), data_settings = _splits(dataset, validation, root, device)
    tasks = []
    for g in groups:
        keep = torch.as_tensor(g, device=train_y.device)
        tr, te = torch.isin(train_y, keep), torch.isin(test_y, keep)
        tasks.append(Task("/".join(map(str, g)), tuple(g), train_x[tr], train_y[tr], test_x[te], test_y[te]))
    name = f"split-{dataset}"
    return TaskStream(name, scenario, tasks, n_classes,
                      {"stream": name, "groups": groups, "scenario": scenario, **data_settings})


def permuted_stream(dataset: str = "mnist", n_tasks: int = 10, seed: int = 0,
                    root: str | os.PathLike | None = None, device: torch.device | str = "cpu",
                    validation: float = 0.0) -> TaskStream:
    """Permuted-MNIST: every task is the whole dataset with its pixels shuffled by a fixed permutation.

    Task 1 keeps the original order; one label space, so the scenario is domain-incremental. `validation`: as in
    `split_stream`."""
    if n_tasks < 1:
        raise ValueError(f"n_tasks must be at least 1, got {n_tasks}")
    (train_x, train_y), (test_x, test_y), data_settings = _splits(dataset, validation, root, device)
    n_pixels, n_classes = train_x[0].numel(), dataset_spec(dataset).n_classes
    gen = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(n_tasks):
        perm = torch.arange(n_pixels) if t == 0 else torch.randperm(n_pixels, generator=gen)
        perm = perm.to(train_x.device)

        def permute(x: Tensor) -> Tensor:
            return x.flatten(1)[:, perm].view_as(x)
        tasks.append(Task(f"perm{t + 1}", tuple(range(n_classes)), permute(train_x), train_y, permute(test_x), test_y))
    name = f"permuted-{dataset}"
    return TaskStream(name, "domain", tasks, n_classes,
                      {"stream": name, "n_tasks": n_tasks, "seed": seed, **data_settings})


def _as_rgb32(x: Tensor) -> Tensor:
    """1×28×28 greyscale -> 3×32×32: pad two pixels a side and repeat the channel (MNIST beside SVHN)."""
    return torch.nn.functional.pad(x, (2, 2, 2, 2)).expand(-1, 3, -1, -1).contiguous()


def domain_stream(datasets: Sequence[str] = ("mnist", "fashion-mnist"), root: str | os.PathLike | None = None,
                  device: torch.device | str = "cpu") -> TaskStream:
    """One task per dataset, all sharing one label space (domain-IL), as in the DGR paper's MNIST→SVHN.

    Greyscale 28×28 datasets beside colour 32×32 ones are padded to 32×32 and given three channels."""
    loaded = [(name, load(name, True, root, device), load(name, False, root, device)) for name in datasets]
    colour = any(train[0].shape[1] == 3 for _, train, _ in loaded)
    tasks = []
    for name, (train_x, train_y), (test_x, test_y) in loaded:
        if colour and train_x.shape[1] == 1:
            train_x, test_x = _as_rgb32(train_x), _as_rgb32(test_x)
        n_classes = dataset_spec(name).n_classes
        tasks.append(Task(name, tuple(range(n_classes)), train_x, train_y, test_x, test_y))
    if len({task.classes for task in tasks}) != 1:
        raise ValueError(f"a domain stream needs one label space; {', '.join(datasets)} differ in their classes")
    stream_name = "→".join(datasets)
    fingerprints = [fingerprint(name, train, root) for name in datasets for train in (True, False)]
    return TaskStream(stream_name, "domain", tasks, len(tasks[0].classes), {"stream": stream_name, "data": fingerprints})


def batch_indices(n: int, batch_size: int, generator: torch.Generator, device: torch.device | str) -> Tensor:
    """A random batch of indices into n samples, drawn on the device (no DataLoader, no workers)."""
    return torch.randint(n, (min(batch_size, n),), generator=generator, device=device)
