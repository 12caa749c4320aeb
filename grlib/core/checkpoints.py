"""Trained models cached under build/checkpoints/, keyed by a hash of their settings."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from grlib.core.config import build_dir, checkpoint_folder
from grlib.core.files import atomic_file
from grlib.core.guards import TrainingDivergedError

# Bump when a change to the training code makes old checkpoints wrong.
CACHE_VERSION = 3


def settings_key(settings: dict) -> str:
    """A short, stable hash of JSON-able settings."""
    text = json.dumps({"cache_version": CACHE_VERSION, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def arguments(init_locals: dict[str, Any], leave_out: tuple[str, ...] = ("self", "__class__", "device")) -> dict[str, Any]:
    """A constructor's arguments as settings for a cache key (`key_of` each): call it first thing in `__init__` with
    `locals()`, so that every argument, one added later included, is part of the key, as a strategy's fields are."""
    return {name: key_of(value) for name, value in init_locals.items() if name not in leave_out}


def key_of(value: Any) -> Any:
    """What identifies a hyperparameter in the cache key: plain values as they are; a network, generator or buffer
    by its type, its settings (or repr) and a fingerprint of its initial state."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [key_of(v) for v in value]
    if isinstance(value, dict):
        return {str(k): key_of(v) for k, v in value.items()}
    key = {"type": type(value).__qualname__}
    key["settings" if hasattr(value, "settings") else "repr"] = getattr(value, "settings", None) or repr(value)
    if hasattr(value, "state_dict"):
        key["state"] = fingerprint(value.state_dict())
    return key


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


def checkpoint_path(name: str, settings: dict, folder: str | os.PathLike | None = None) -> Path:
    return checkpoint_folder(folder) / f"{name}-{settings_key(settings)}.pt"


def tensors(state: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a nested state of dicts, lists and tuples."""
    if isinstance(state, torch.Tensor):
        yield state
    elif isinstance(state, dict):
        for value in state.values():
            yield from tensors(value)
    elif isinstance(state, (list, tuple)):
        for value in state:
            yield from tensors(value)


def finite(state: Any) -> bool:
    """Whether every floating-point tensor in a nested state holds only finite numbers."""
    return all(not t.is_floating_point() or bool(torch.isfinite(t).all()) for t in tensors(state))


def own_folder() -> Path:
    """Where this user keeps the models that the checkpoint folder will not take (a class's shared cache that is
    read-only, or holds another user's file of that name): the build folder's checkpoints/."""
    return build_dir() / "checkpoints"


def _places(path: Path) -> list[Path]:
    """Where the checkpoint `path` is looked for and kept: its folder, then this user's own (`own_folder`)."""
    own = own_folder() / path.name
    return [path] if own.parent.resolve() == path.parent.resolve() else [path, own]


def writable(folder: Path) -> bool:
    """Whether this process can create files in `folder` (created if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def keeper(folder: Path, own: Path | None = None) -> Path | None:
    """The folder where models trained for the checkpoint folder `folder` are kept: `folder` itself if this user can
    write it, else `own` (default: the build folder's checkpoints/), else None (trained, used, not kept). A `folder`
    that cannot be written is said, as a warning (Python shows it once where it is asked from)."""
    if writable(folder):
        return folder
    own = own or own_folder()
    place = own if own.resolve() != folder.resolve() and writable(own) else None
    warnings.warn(f"the checkpoint folder {folder} cannot be written: the models it holds are loaded, new ones "
                  + (f"are kept in {own}" if place else "are trained but not kept; set GRLIB_CHECKPOINTS to a folder "
                     "of your own to keep them"), stacklevel=3)
    return place


def save_checkpoint(path: Path, settings: dict, state: dict) -> Path | None:
    """Write atomically (`grlib.course.results.atomic_file`), so a crash never leaves half a checkpoint and two processes
    saving the same one never mix their bytes; returns where it went. A state holding NaN or infinite numbers is
    never saved. Where the folder will not take it (read-only, full, another user's file in a shared folder) it goes
    to this user's own folder (`own_folder`), and failing that, the model is used but not kept, with a warning: the
    training that made it is never lost to a failed save."""
    if not finite(state):
        raise TrainingDivergedError(f"{path.stem}: the trained model holds NaN or infinite numbers, so it is not "
                                    f"cached; lower the learning rate")
    buffer = io.BytesIO()  # serialised first, so that a failed write is the file's OSError, not torch's
    torch.save({"settings_key": settings_key(settings), "state": state}, buffer)
    errors = []
    for place in _places(path):
        try:
            with atomic_file(place) as f:
                f.write(buffer.getbuffer())
            return place
        except OSError as e:
            errors.append(f"{place.parent}: {e.strerror or e}")
    warnings.warn(f"could not keep the checkpoint {path.name} ({'; '.join(errors)}): the model is used but not kept; "
                  f"free some space there or set GRLIB_CHECKPOINTS to a folder of your own", stacklevel=2)
    return None


def load_checkpoint(path: Path, settings: dict, restore: Callable[[dict], None] | None = None) -> dict | None:
    """The cached state from `path`, or from this user's own copy (`own_folder`), or None if neither has one. A file
    that is corrupt, made for other settings, holds NaN or infinite numbers, or that `restore` cannot take (a state
    whose structure no longer matches the code) is reported, set aside, and not trusted; one this user may not read
    (another's, in a shared folder) is passed over. The caller then trains again."""
    keeper(path.parent)  # before a model may be trained: say now if it could not be kept there
    for place in _places(path):
        state = _load(place, settings, restore)
        if state is not None:
            return state
    return None


def _load(path: Path, settings: dict, restore: Callable[[dict], None] | None) -> dict | None:
    identity = None
    try:
        with open(path, "rb") as f:
            identity = os.fstat(f.fileno())
            saved = torch.load(f, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except PermissionError as e:
        warnings.warn(f"checkpoint {path} cannot be read by this user ({e.strerror}): passing it over", stacklevel=3)
        return None
    except Exception as e:
        return _set_aside(path, identity, f"it could not be read ({e})")
    if not isinstance(saved, dict) or saved.get("settings_key") != settings_key(settings) or "state" not in saved:
        return _set_aside(path, identity, "its settings do not match the ones requested")
    if not finite(saved["state"]):
        return _set_aside(path, identity, "it holds NaN or infinite numbers")
    if restore is not None:
        try:
            restore(saved["state"])
        except Exception as e:  # a state_dict changed without a CACHE_VERSION bump: KeyError, size mismatch, ...
            return _set_aside(path, identity, f"its contents do not fit the code ({type(e).__name__}: {e})")
    return saved["state"]


def _set_aside(path: Path, identity: os.stat_result | None, reason: str) -> None:
    """Move the unusable file that was read to <name>.corrupt and warn; if another process has meanwhile replaced or
    moved it, leave its file alone; if it may not be moved (another user's file in a shared folder), ignore it."""
    bad = path.with_suffix(".corrupt")
    what = "left it where it is"
    try:
        now = os.stat(path)
        if identity is not None and (now.st_ino, now.st_dev) == (identity.st_ino, identity.st_dev):
            os.replace(path, bad)
            what = f"moved it to {bad.name}"
    except FileNotFoundError:
        pass
    except OSError as e:
        what = f"could not move it aside ({e.strerror or e}), so ignoring it"
    warnings.warn(f"checkpoint {path} could not be used: {reason}; {what} and retraining.", stacklevel=4)
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


def cached(name: str, settings: dict, compute: Callable[[], dict], folder: str | os.PathLike | None = None,
           restore: Callable[[dict], None] | None = None) -> dict:
    """The state saved under `name` for these settings if there is one, else `compute()`, saved for next time (by
    one process: others asking at the same time wait for it). `restore`, if given, takes a loaded state (a model's
    load_state_dict): one it cannot take is set aside and computed again, as a corrupt file is."""
    path = checkpoint_path(name, settings, folder)
    with exclusive(path):
        state = load_checkpoint(path, settings, restore)
        if state is None:
            state = compute()
            save_checkpoint(path, settings, state)
    return state
