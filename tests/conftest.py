"""Shared fixtures: small datasets in torchvision's on-disk formats, written by the tests themselves."""
from __future__ import annotations

import errno
import hashlib
import os
import pickle
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from grlib import data, threads

threads.leave()  # the test process does not count among those training: the notebooks nbval runs keep every core


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an IDX file (the MNIST format): magic (0, 0, dtype 0x08 = uint8, ndim), big-endian sizes, data; its
    checksum is registered as the known one for the current test (see `_known_checksums`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())
    data.KNOWN_MD5[f"{path.parent.parent.name}/raw/{path.name}"] = hashlib.md5(path.read_bytes()).hexdigest()


def write_mnist_like(root: Path, folder: str, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict:
    """A tiny MNIST-format dataset where image i is filled with (label * 20 + i % 7); returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = (labels[:, None, None] * 20 + (np.arange(n) % 7)[:, None, None]) * np.ones((1, 28, 28))
        write_idx(root / folder / "raw" / f"{split}-images-idx3-ubyte", images)
        write_idx(root / folder / "raw" / f"{split}-labels-idx1-ubyte", labels)
        arrays[split] = (images.astype(np.uint8), labels)
    return arrays


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> tuple[Path, dict]:
    return tmp_path, write_mnist_like(tmp_path, "MNIST")


def pickle_file(path: Path, obj) -> str:
    """Pickle `obj` to `path`; returns the file's MD5 (torchvision checks it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def _isolated_build(tmp_path_factory, monkeypatch):
    """Unit tests write results and checkpoints to a fresh folder, never to the repository's build/."""
    monkeypatch.setenv("GRLIB_BUILD", str(tmp_path_factory.mktemp("build")))


@pytest.fixture(autouse=True)
def _known_checksums(monkeypatch):
    """The tests write small datasets in MNIST's format; each test's checksums are known for that test only, so real
    MNIST is checked against the published ones everywhere else."""
    monkeypatch.setattr(data, "KNOWN_MD5", dict(data.KNOWN_MD5))


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def processes() -> dict[int, tuple[int, str]]:
    """Every process as pid -> (parent pid, state), from ps (Linux and macOS alike)."""
    table = subprocess.run(["ps", "-A", "-o", "pid=,ppid=,stat="], capture_output=True, text=True).stdout
    return {int(pid): (int(ppid), stat) for pid, ppid, stat in (line.split()[:3] for line in table.splitlines())}


def descendants(pid: int) -> set[int]:
    """The processes `pid` started, directly or through others (papermill, its kernel)."""
    table, found, todo = processes(), set(), [pid]
    while todo:
        parent = todo.pop()
        for child in [c for c, (p, _) in table.items() if p == parent and c not in found]:
            found.add(child)
            todo.append(child)
    return found


def running(pids: set[int]) -> set[int]:
    """Those of `pids` still running (a zombie has ended)."""
    return {pid for pid, (_, stat) in processes().items() if pid in pids and not stat.startswith("Z")}


@pytest.fixture
def unwritable(monkeypatch):
    """`unwritable(folder)`: from now on this process cannot create files in `folder`, as in another user's folder
    or a read-only one (the tests may run as root, whom permissions do not stop)."""
    folders: set[Path] = set()

    def refuse(real):
        def guarded(*args, **kw):
            if kw.get("dir") is not None and Path(kw["dir"]).resolve() in folders:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(kw["dir"]))
            return real(*args, **kw)
        return guarded

    monkeypatch.setattr(tempfile, "mkstemp", refuse(tempfile.mkstemp))
    monkeypatch.setattr(tempfile, "TemporaryFile", refuse(tempfile.TemporaryFile))
    return lambda folder: folders.add(Path(folder).resolve())
