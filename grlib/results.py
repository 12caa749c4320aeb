"""Where the course writes what it computes: build/results/<notebook>.json, read by the runner and notebook 07."""
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


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def save_results(notebook: str, headline: dict[str, float | str], details: dict | None = None) -> Path:
    """Write a notebook's headline metrics (shown in build/summary.md) and any details (matrices, curves)."""
    path = build_dir() / "results" / f"{notebook}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"notebook": notebook, "headline": headline, "details": details or {}}
    path.write_text(json.dumps(_jsonable(payload), indent=1))
    return path


def load_results(notebook: str, out: str | os.PathLike | None = None) -> dict | None:
    path = build_dir(out) / "results" / f"{notebook}.json"
    return json.loads(path.read_text()) if path.exists() else None
