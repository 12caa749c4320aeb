"""Datasets on disk: where torchvision's files are (`find_root`), whether they are the published ones (`verify`,
`KNOWN_MD5`), and loading one split as uint8 tensors (`load`) with a short hash of what was loaded (`fingerprint`).
Kept apart from the task streams (`grlib.continual.data`), which build on `load`."""
from __future__ import annotations

import functools
import hashlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor

from grlib.core import config
from grlib.core.config import data_folders, data_root


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


def find_root(name: str, train: bool, root: str | os.PathLike | None = None) -> Path:
    """Where `name` is read from: the first of `grlib.core.config.data_folders(root)` that holds its files, else
    the first (where a download would put them)."""
    folders = data_folders(root)
    return next((f for f in folders if all(p.is_file() for p in expected_files(name, train, f))), folders[0])


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
        f"(With neither set, grlib reads the repository's data/, or {config.SHARED_DATA} when only it holds the files.)"
    )


@functools.lru_cache(maxsize=16)
def _load_cpu(name: str, train: bool, root: Path, download: bool) -> tuple[Tensor, Tensor]:
    spec = dataset_spec(name)
    missing = [p for p in expected_files(name, train, root) if not p.is_file()]
    tv_root = _torchvision_root(name, root)
    split = {"split": "train" if train else "test"} if name == "svhn" else {"train": train}
    if name == "svhn":
        try:
            importlib.import_module("scipy.io")  # torchvision reads SVHN's .mat files with scipy
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


def _as_uint8_nchw(name: str, ds: Any) -> tuple[Tensor, Tensor]:
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
