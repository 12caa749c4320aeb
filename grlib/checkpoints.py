"""Trained models cached under build/checkpoints/, keyed by a hash of their settings."""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable

import torch

from .results import build_dir

# Bump when a change to the training code makes old checkpoints wrong.
CACHE_VERSION = 1


def settings_key(settings: dict) -> str:
    """A short, stable hash of JSON-able settings."""
    text = json.dumps({"cache_version": CACHE_VERSION, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def checkpoint_path(name: str, settings: dict) -> Path:
    return build_dir() / "checkpoints" / f"{name}-{settings_key(settings)}.pt"


def save_checkpoint(path: Path, settings: dict, state: dict) -> None:
    """Write atomically (temp file + rename), so a crash never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"settings_key": settings_key(settings), "state": state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, settings: dict) -> dict | None:
    """The cached state, or None if absent; a corrupt or mismatched file is reported, set aside, and not trusted."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(saved, dict) or saved.get("settings_key") != settings_key(settings):
            raise ValueError("its settings do not match the ones requested")
        return saved["state"]
    except Exception as e:
        bad = path.with_suffix(".corrupt")
        os.replace(path, bad)
        warnings.warn(f"checkpoint {path} could not be used ({e}); moved it to {bad.name} and retraining.",
                      stacklevel=2)
        return None


def cached(name: str, settings: dict, compute: Callable[[], dict]) -> dict:
    """The state saved under `name` for these settings if there is one, else `compute()`, saved for next time."""
    path = checkpoint_path(name, settings)
    state = load_checkpoint(path, settings)
    if state is None:
        state = compute()
        save_checkpoint(path, settings, state)
    return state
