"""Datasets as uint8 tensors, and the task streams of continual learning (notebook 00)."""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torchvision
from torch import Tensor

REPO_ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("task", "domain", "class")


@dataclass(frozen=True)
class DatasetSpec:
    """How torchvision stores one dataset under the data root."""
    loader: type
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    n_classes: int


_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
_MNIST_TEST = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(torchvision.datasets.MNIST, "MNIST/raw", _MNIST_FILES, _MNIST_TEST, 10),
    "fashion-mnist": DatasetSpec(torchvision.datasets.FashionMNIST, "FashionMNIST/raw", _MNIST_FILES, _MNIST_TEST, 10),
    "svhn": DatasetSpec(torchvision.datasets.SVHN, "SVHN", ("train_32x32.mat",), ("test_32x32.mat",), 10),
    "cifar10": DatasetSpec(torchvision.datasets.CIFAR10, "cifar-10-batches-py",
                           tuple(f"data_batch_{i}" for i in range(1, 6)) + ("batches.meta",), ("test_batch", "batches.meta"), 10),
    "cifar100": DatasetSpec(torchvision.datasets.CIFAR100, "cifar-100-python", ("train", "meta"), ("test", "meta"), 100),
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing or corrupt, and could not be downloaded."""


# MD5 of the uncompressed files torchvision reads (the published datasets; data/README.md). SVHN and CIFAR are
# checked by torchvision itself when it loads them.
KNOWN_MD5 = {
    "MNIST/raw/train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "MNIST/raw/train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "MNIST/raw/t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "MNIST/raw/t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    "FashionMNIST/raw/train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "FashionMNIST/raw/train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "FashionMNIST/raw/t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "FashionMNIST/raw/t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}


def verify(name: str, train: bool, root: Path) -> None:
    """Check the files of a known dataset against their published MD5 (fast enough to run on every load); a mismatch raises
    DatasetNotFoundError naming the file, what was expected, and how to fix it."""
    spec = dataset_spec(name)
    for file in spec.train_files if train else spec.test_files:
        expected, path = KNOWN_MD5.get(f"{spec.folder}/{file}"), data_root(root) / spec.folder / file
        if expected is None:
            continue
        actual = hashlib.md5(path.read_bytes()).hexdigest()
        if actual != expected:
            raise DatasetNotFoundError(
                f"{path} is corrupt: its MD5 is {actual}, the published file's is {expected}. Delete it and rerun "
                f"with a network (torchvision downloads it again), or copy a good copy there (see data/README.md).")


SHARED_DATA = REPO_ROOT.parent / "shared" / "data"  # an offline copy beside the clone (lab machines, CI)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: `root` if given, else $GRLIB_DATA, else the repository's data/."""
    if root is not None:
        return Path(root).expanduser().resolve()
    if os.environ.get("GRLIB_DATA"):
        return Path(os.environ["GRLIB_DATA"]).expanduser().resolve()
    return REPO_ROOT / "data"


def find_root(name: str, train: bool, root: str | os.PathLike | None = None) -> Path:
    """Where `name` is read from: `data_root(root)`; with neither `root` nor $GRLIB_DATA set, the repository's
    data/ unless only a shared copy beside the clone (../shared/data) holds the files."""
    if root is not None or os.environ.get("GRLIB_DATA"):
        return data_root(root)
    for candidate in (REPO_ROOT / "data", SHARED_DATA):
        if all(p.is_file() for p in expected_files(name, train, candidate)):
            return candidate
    return REPO_ROOT / "data"


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def expected_files(name: str, train: bool, root: str | os.PathLike | None = None) -> list[Path]:
    """The files torchvision reads for one split of `name`."""
    spec = dataset_spec(name)
    files = spec.train_files if train else spec.test_files
    return [data_root(root) / spec.folder / f for f in files]


def _torchvision_root(name: str, root: Path) -> Path:
    # SVHN reads its .mat files straight from the root it is given; the others add their own folder.
    return root / "SVHN" if name == "svhn" else root


def _not_found(name: str, train: bool, root: Path, reason: str) -> DatasetNotFoundError:
    files = "\n".join(f"  {p}" for p in expected_files(name, train, root))
    return DatasetNotFoundError(
        f"{name} ({'train' if train else 'test'} split) is not usable in {root}: {reason}\n"
        f"torchvision reads these files:\n{files}\n"
        f"Supply them in one of two ways:\n"
        f"  1. with a network, rerun with download=True (the default) and torchvision fetches them into {root};\n"
        f"     offline, copy torchvision's files for {name} into that folder (uncompressed, same names);\n"
        f"  2. point grlib at a folder that already holds them: export GRLIB_DATA=/path/to/data or pass root=...\n"
        f"(With neither set, grlib reads the repository's data/, or {SHARED_DATA} when only it holds the files.)"
    )


@functools.lru_cache(maxsize=16)
def _load_cpu(name: str, train: bool, root: Path, download: bool) -> tuple[Tensor, Tensor]:
    spec = dataset_spec(name)
    missing = [p for p in expected_files(name, train, root) if not p.is_file()]
    tv_root = _torchvision_root(name, root)
    split = {"split": "train" if train else "test"} if name == "svhn" else {"train": train}
    if name == "svhn":
        try:
            import scipy.io  # noqa: F401  (torchvision reads SVHN's .mat files with scipy)
        except ImportError as e:
            raise ImportError("SVHN needs scipy: pip install scipy (or pip install -e '.[svhn]')") from e
    if missing:
        if not download:
            raise _not_found(name, train, root, f"missing {', '.join(p.name for p in missing)} (download=False)")
        try:
            spec.loader(str(tv_root), download=True, **split)
        except Exception as e:  # torchvision raises URLError, RuntimeError, ... when offline
            raise _not_found(name, train, root, f"missing {', '.join(p.name for p in missing)}, and the download failed ({e})") from e
    verify(name, train, root)
    try:
        ds = spec.loader(str(tv_root), download=False, **split)
    except Exception as e:
        raise _not_found(name, train, root, f"the files exist but could not be read, so they may be corrupt ({e})") from e
    return _as_uint8_nchw(name, ds)


def _as_uint8_nchw(name: str, ds) -> tuple[Tensor, Tensor]:
    if name in ("mnist", "fashion-mnist"):
        x = ds.data.unsqueeze(1)  # N×28×28 -> N×1×28×28
        y = ds.targets
    elif name == "svhn":
        x = torch.as_tensor(ds.data)  # already N×3×32×32
        y = torch.as_tensor(ds.labels)
    else:
        x = torch.as_tensor(ds.data).permute(0, 3, 1, 2)  # N×32×32×3 -> N×3×32×32
        y = torch.as_tensor(ds.targets)
    return x.contiguous().to(torch.uint8), y.to(torch.int64)


def load(name: str, train: bool = True, root: str | os.PathLike | None = None,
         device: torch.device | str = "cpu", download: bool = True) -> tuple[Tensor, Tensor]:
    """Images (uint8, N×C×H×W) and labels (int64) of one split, on `device`."""
    x, y = _load_cpu(name, train, find_root(name, train, root), download)
    return x.to(device), y.to(device)


@functools.lru_cache(maxsize=16)
def _fingerprint_cpu(name: str, train: bool, root: Path, download: bool) -> str:
    x, y = _load_cpu(name, train, root, download)
    h = hashlib.blake2b(digest_size=8)
    for tensor in (x, y):
        h.update(tensor.contiguous().numpy())
    return h.hexdigest()


def fingerprint(name: str, train: bool = True, root: str | os.PathLike | None = None, download: bool = True) -> str:
    """A short hash of one split's images and labels as loaded: models trained on other data never share a cache
    key with these (`grlib.continual.run` puts it in the key)."""
    return _fingerprint_cpu(name, train, find_root(name, train, root), download)


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
