"""What the tests share that is not a fixture: toy streams and solvers small enough that a whole continual run takes
a fraction of a second, datasets written in torchvision's formats, notebooks written for the runner, and watching
the processes a run starts."""
from __future__ import annotations

import hashlib
import pickle
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import nbformat
import numpy as np
import torch
from torch import nn

from grlib.continual import data, datasets
from grlib.continual.strategies import Finetune
from grlib.models import nets


def synthetic_stream(scenario: str = "class", n_per_class: int = 40) -> data.TaskStream:
    """Four classes on 1×4×4 images (class c lights up pixel c and pixel c + 8), split into tasks (0, 1) and (2, 3)."""
    gen = torch.Generator().manual_seed(0)

    def images(classes, n):
        y = torch.tensor(classes).repeat_interleave(n)
        x = torch.randint(0, 40, (len(y), 1, 4, 4), generator=gen, dtype=torch.uint8)
        x.view(len(y), -1)[torch.arange(len(y)), y] = 255
        x.view(len(y), -1)[torch.arange(len(y)), y + 8] = 255
        return x, y

    tasks = []
    for classes in ((0, 1), (2, 3)):
        (tx, ty), (vx, vy) = images(classes, n_per_class), images(classes, n_per_class // 2)
        tasks.append(data.Task(str(classes), classes, tx, ty, vx, vy))
    return data.TaskStream("synthetic", scenario, tasks, 4, {"stream": "synthetic", "scenario": scenario})


def small_solver(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nets.MLP((1, 4, 4), hidden=(32,), n_classes=4)


class Untrainable(Finetune):
    def learn(self, stream, t, progress=True, monitor=None):
        raise AssertionError("should have been loaded from the cache")


def untrainable(strategy):
    """`strategy`, its class and cache key unchanged, failing the test if it trains instead of loading."""
    strategy.learn = Untrainable.learn.__get__(strategy)
    return strategy


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an IDX file (the MNIST format): magic (0, 0, dtype 0x08 = uint8, ndim), big-endian sizes, data; its
    checksum is registered as the known one for the current test (see `_known_checksums`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())
    datasets.KNOWN_MD5[f"{path.parent.parent.name}/raw/{path.name}"] = hashlib.md5(path.read_bytes()).hexdigest()


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


def pickle_file(path: Path, obj) -> str:
    """Pickle `obj` to `path`; returns the file's MD5 (torchvision checks it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))
    return hashlib.md5(path.read_bytes()).hexdigest()


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


def wait_until(done: Callable[[], bool], seconds: float) -> bool:
    """Poll `done` every half second until it holds or `seconds` have passed; whether it holds."""
    deadline = time.time() + seconds
    while not done() and time.time() < deadline:
        time.sleep(0.5)
    return done()


def sigterm_when(script: str, ready: Callable[[], bool], seconds: float) -> tuple[int, str, str, set[int]]:
    """Run `script` in a new Python process and, once `ready()` holds (or `seconds` have passed), send it alone
    SIGTERM, as a scheduler or `kill` does. Returns its exit code, stdout, stderr and the processes it had started."""
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(ready, seconds)
    children = descendants(run.pid)
    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=60)
    return run.returncode, stdout, stderr, children


def write_notebook(path: Path, *sources: str, parameters: str = "profile = None", **grlib_metadata: object) -> None:
    """A notebook of these code cells; `grlib_metadata` (reads=, loads=, seconds=) is what the runner reads."""
    cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})]
    cells += [nbformat.v4.new_code_cell(s) for s in sources]
    metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={**metadata, "grlib": grlib_metadata}), path)
