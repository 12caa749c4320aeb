"""Trained models cached under build/checkpoints/, keyed by a hash of their settings."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .results import build_dir

# Bump when a change to the training code makes old checkpoints wrong.
CACHE_VERSION = 3


def settings_key(settings: dict) -> str:
    """A short, stable hash of JSON-able settings."""
    text = json.dumps({"cache_version": CACHE_VERSION, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(state: Any) -> str:
    """A short hash of every tensor (and plain value) in a nested state: two states share it only if they hold the
    same numbers."""
    h = hashlib.sha256()

    def feed(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            h.update(f"{value.dtype}{tuple(value.shape)}".encode())
            h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            for k in sorted(value, key=str):
                h.update(str(k).encode())
                feed(value[k])
        elif isinstance(value, (list, tuple)):
            for v in value:
                feed(v)
        else:
            h.update(repr(value).encode())
    feed(state)
    return h.hexdigest()[:16]


def checkpoint_folder(folder: str | os.PathLike | None = None) -> Path:
    """Where checkpoints live: `folder` if given, else $GRLIB_CHECKPOINTS (a sweep's runs share the course's), else
    build/checkpoints/ (see `grlib.results.build_dir`)."""
    if folder is not None:
        return Path(folder)
    if os.environ.get("GRLIB_CHECKPOINTS"):
        return Path(os.environ["GRLIB_CHECKPOINTS"]).expanduser().resolve()
    return build_dir() / "checkpoints"


def checkpoint_path(name: str, settings: dict, folder: str | os.PathLike | None = None) -> Path:
    return checkpoint_folder(folder) / f"{name}-{settings_key(settings)}.pt"


def save_checkpoint(path: Path, settings: dict, state: dict) -> None:
    """Write atomically: a temporary file of this writer's own in the same folder, then a rename, so a crash never
    leaves half a checkpoint and two processes saving the same one never mix their bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"settings_key": settings_key(settings), "state": state}, f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private; others sharing the folder should read it as usual
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, settings: dict) -> dict | None:
    """The cached state, or None if absent; a corrupt or mismatched file is reported, set aside, and not trusted."""
    identity = None
    try:
        with open(path, "rb") as f:
            identity = os.fstat(f.fileno())
            saved = torch.load(f, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except Exception as e:
        return _set_aside(path, identity, f"it could not be read ({e})")
    if not isinstance(saved, dict) or saved.get("settings_key") != settings_key(settings):
        return _set_aside(path, identity, "its settings do not match the ones requested")
    return saved["state"]


def _set_aside(path: Path, identity: os.stat_result | None, reason: str) -> None:
    """Move the unusable file that was read to <name>.corrupt and warn; if another process has meanwhile replaced or
    moved it, leave its file alone."""
    bad = path.with_suffix(".corrupt")
    try:
        now = os.stat(path)
        if identity is not None and (now.st_ino, now.st_dev) == (identity.st_ino, identity.st_dev):
            os.replace(path, bad)
    except FileNotFoundError:
        pass
    warnings.warn(f"checkpoint {path} could not be used: {reason}; moved it to {bad.name} and retraining.",
                  stacklevel=3)
    return None


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Held by one process at a time for one checkpoint, so that of the processes asking for the same model at once
    (notebooks run side by side, a sweep's jobs, a class sharing one cache) the first trains it and the others wait,
    then load what it saved. Where no lock can be taken (an unwritable folder, no fcntl) it holds nothing: each
    process then trains its own copy, as it would alone."""
    try:
        import fcntl

        lock = path.with_name(f".{path.name}.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # read-only locks too; O_CREAT only if missing: a sticky shared folder refuses it on others' files
            fd = os.open(lock, os.O_RDONLY)
        except FileNotFoundError:
            fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o666)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"another process is training {path.stem}; waiting for it, to load its checkpoint", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when the fd closes, also if this process dies
        yield
    finally:
        os.close(fd)


def cached(name: str, settings: dict, compute: Callable[[], dict], folder: str | os.PathLike | None = None) -> dict:
    """The state saved under `name` for these settings if there is one, else `compute()`, saved for next time (by
    one process: others asking at the same time wait for it)."""
    path = checkpoint_path(name, settings, folder)
    with exclusive(path):
        state = load_checkpoint(path, settings)
        if state is None:
            state = compute()
            save_checkpoint(path, settings, state)
    return state
