"""The one place grlib decides where its files live and reads its environment variables.

Each folder is an explicit argument, else an environment variable, else a folder found from the package's own
location, never from the working directory (Jupyter and nbval run in notebooks/, papermill in the caller's folder).
The variables carry a value into a notebook's kernel: GRLIB_DATA, GRLIB_CHECKPOINTS, GRLIB_PROFILE and
GRLIB_THREADS into one the user starts (Jupyter, nbval, a JupyterHub spawner), GRLIB_BUILD and GRLIB_PROGRESS into
those the runner and the sweep start. Each is read here alone:"""
# GRLIB_DATA         the datasets (default: data/, or ../shared/data beside the clone when only it has them)
# GRLIB_BUILD        what executed notebooks write (default: build/)
# GRLIB_CHECKPOINTS  trained models (default: the build folder's checkpoints/); a sweep's runs share the course's
# GRLIB_PROFILE      the profile when a notebook's `profile` is None (the tests set smoke)
# GRLIB_PROGRESS     "text": progress bars as the line they ended on (the runner sets it for its kernels)
# GRLIB_THREADS      torch's threads in every process grlib starts, instead of a share of the cores
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"  # an offline copy beside the clone (lab machines, CI)


def _chosen(argument: str | os.PathLike | None, variable: str, default: Path) -> Path:
    """`argument` if given, else the environment variable if set, else `default`."""
    if argument is not None:
        return Path(argument).expanduser().resolve()
    if os.environ.get(variable):
        return Path(os.environ[variable]).expanduser().resolve()
    return default


def data_root(root: str | os.PathLike | None = None) -> Path:
    return _chosen(root, "GRLIB_DATA", REPO_ROOT / "data")


def data_folders(root: str | os.PathLike | None = None) -> list[Path]:
    """Where datasets are looked for, in order: the folder chosen (`root` or $GRLIB_DATA) alone, else the
    repository's data/ and then an offline copy beside the clone (../shared/data)."""
    if root is not None or os.environ.get("GRLIB_DATA"):
        return [data_root(root)]
    return [REPO_ROOT / "data", SHARED_DATA]


def build_dir(out: str | os.PathLike | None = None) -> Path:
    return _chosen(out, "GRLIB_BUILD", REPO_ROOT / "build")


def checkpoint_folder(folder: str | os.PathLike | None = None, build: str | os.PathLike | None = None) -> Path:
    """`folder`, else $GRLIB_CHECKPOINTS, else the build folder's checkpoints/ (`build`, else `build_dir()`'s)."""
    return _chosen(folder, "GRLIB_CHECKPOINTS", build_dir(build) / "checkpoints")


def profile_name(name: str | None = None) -> str:
    """`name`, else $GRLIB_PROFILE, else "auto"."""
    return name or os.environ.get("GRLIB_PROFILE") or "auto"


def text_progress() -> bool:
    return os.environ.get("GRLIB_PROGRESS") == "text"


def fixed_threads() -> int | None:
    """The threads the user fixed for every process ($GRLIB_THREADS, else $OMP_NUM_THREADS), or None."""
    for variable in ("GRLIB_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(variable, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None
