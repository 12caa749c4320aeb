"""Where the course writes what it computes: build/results/<notebook>.json, read by the runner and notebook 08."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .data import REPO_ROOT


def build_dir(out: str | os.PathLike | None = None) -> Path:
    """The build folder: `out` if given, else $GRLIB_BUILD, else the repository's build/ (never the working directory)."""
    if out is not None:
        return Path(out).expanduser().resolve()
    if os.environ.get("GRLIB_BUILD"):
        return Path(os.environ["GRLIB_BUILD"]).expanduser().resolve()
    return REPO_ROOT / "build"


def _jsonable(value, where: str = "results"):
    """`value` as JSON-able data; a NaN or infinite number is an error naming where it is, never written silently."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}: a non-finite number is not written to the results; check what "
                         f"computed it (a diverged run, or a metric with nothing to measure)")
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def save_results(notebook: str, headline: dict[str, float | str], details: dict | None = None) -> Path:
    """Write a notebook's headline metrics (shown in build/summary.md) and any details (matrices, curves)."""
    path = build_dir() / "results" / f"{notebook}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = _jsonable({"notebook": notebook, "headline": headline, "details": details or {}}, notebook)
    path.write_text(json.dumps(payload, indent=1))
    return path


def load_results(notebook: str, out: str | os.PathLike | None = None) -> dict | None:
    path = build_dir(out) / "results" / f"{notebook}.json"
    return json.loads(path.read_text()) if path.exists() else None
