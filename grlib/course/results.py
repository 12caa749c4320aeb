"""Where the course writes what it computes: build/results/<notebook>.json, with the profile and parameters that
made it, read by the runner and by the notebooks that gather others' results."""
from __future__ import annotations

import json
import math
import os
import shlex
from pathlib import Path

from grlib.core.config import REPO_ROOT, build_dir
from grlib.core.files import atomic_file
from grlib.continual.profiles import get_profile
from grlib.course import params


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
    """Write a notebook's headline metrics (shown in build/summary.md) and any details (matrices, curves), with the
    profile and parameters that made them (what the notebook's `grlib.course.params.check` accepted), whole or not at all."""
    made = params.last or {"profile": get_profile(None).name, "parameters": {}}
    path = build_dir() / "results" / f"{notebook}.json"
    payload = _jsonable({"notebook": notebook, **made, "headline": headline, "details": details or {}}, notebook)
    with atomic_file(path) as f:
        f.write(json.dumps(payload, indent=1).encode())
    return path


class ResultsMismatch(ValueError):
    """Another notebook's results were made with another profile or other parameters than the reader expects."""


def load_results(notebook: str, out: str | os.PathLike | None = None, expect: dict | None = None) -> dict | None:
    """A notebook's saved results, or None if it has not saved any; a file that cannot be read is an error naming it
    and the notebook to rerun. With `expect` (e.g. {"profile": "quick", "seed": 0}), results made with another
    profile or other values of those parameters are a ResultsMismatch saying how to rerun the notebook."""
    path = build_dir(out) / "results" / f"{notebook}.json"
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"the results file {path} cannot be read ({e}); rerun notebook {notebook} to write it "
                         f"again (python -m grlib run --only {notebook[:2]})") from None
    problem = _differences(notebook, saved, expect or {}, out)
    if problem:
        raise ResultsMismatch(problem)
    return saved


def mismatch(notebook: str, expect: dict, out: str | os.PathLike | None = None) -> str | None:
    """None if `notebook` has saved results made with `expect` (as `load_results` checks them), else one line saying
    what is wrong and the command that makes the right ones: for a reader that marks, skips or reruns them."""
    try:
        found = load_results(notebook, out, expect)
    except ValueError as e:
        return str(e)
    return None if found else f"{notebook} has no results yet; run it: {_rerun(notebook, expect, out)}"


def _differences(notebook: str, saved: dict, expect: dict, out: str | os.PathLike | None) -> str | None:
    """What in `expect` the saved results were not made with, and how to rerun them; None if nothing."""
    made = {**{k: saved[k] for k in ("profile",) if k in saved}, **saved.get("parameters", {})}
    wrong = {k: v for k, v in expect.items() if k not in made or made[k] != v}
    if not wrong:
        return None
    had = ", ".join(f"{k}={made[k]!r}" if k in made else f"{k} unknown" for k in wrong)
    wanted = ", ".join(f"{k}={v!r}" for k, v in wrong.items())
    return f"{notebook}'s results were made with {had}, not {wanted}; rerun it: {_rerun(notebook, expect, out)}"


def _rerun(notebook: str, expect: dict, out: str | os.PathLike | None) -> str:
    """The command that makes `notebook`'s results with the profile and parameters of `expect`."""
    words = ["python -m grlib run --only", notebook[:2]]
    if "profile" in expect:
        words += ["--profile", str(expect["profile"])]
    words += [f"-p {k} {shlex.quote(str(v))}" for k, v in expect.items() if k != "profile"]
    if build_dir(out) != REPO_ROOT / "build":
        words += ["--out", shlex.quote(str(build_dir(out)))]
    return " ".join(words)
