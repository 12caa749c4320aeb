"""Shared fixtures: small datasets in torchvision's on-disk formats, a folder for small notebooks, and every test's
own build folder, checksums and seed (the helpers they use are in helpers.py)."""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import torch

from grlib.continual import datasets
from helpers import write_mnist_like


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> tuple[Path, dict]:
    return tmp_path, write_mnist_like(tmp_path, "MNIST")


@pytest.fixture(autouse=True)
def _isolated_build(tmp_path_factory, monkeypatch):
    """Unit tests write results and checkpoints to a fresh folder, never to the repository's build/."""
    monkeypatch.setenv("GRLIB_BUILD", str(tmp_path_factory.mktemp("build")))


@pytest.fixture(autouse=True)
def _known_checksums() -> Iterator[None]:
    """The tests write small datasets in MNIST's format; each test's checksums are known for that test only, so real
    MNIST is checked against the published ones everywhere else. The one dict is restored in place, not replaced:
    `grlib.continual.data` re-exports it, and both names must stay the same dict."""
    published = dict(datasets.KNOWN_MD5)
    yield
    datasets.KNOWN_MD5.clear()
    datasets.KNOWN_MD5.update(published)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


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


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An empty tmp_path/notebooks, for a test's own small course (see `write_notebook`)."""
    (tmp_path / "notebooks").mkdir()
    return tmp_path / "notebooks"
