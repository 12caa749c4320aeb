"""Checks of a notebook's parameters, run in the cell right after the parameters cell: a wrong value stops the
notebook with one line naming the parameter, before anything is trained or cached."""
from __future__ import annotations

import json
import math
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from grlib.continual import data
from grlib.continual.profiles import get_profile

# Where relative paths are read from when not the working directory: a notebook's kernel runs in the notebook's
# folder, and `python -m grlib run` checks the notebooks' parameters from elsewhere before starting them.
base_folder: ContextVar[Path | None] = ContextVar("base_folder", default=None)

# What the notebook's last `check` accepted: {"profile": name, "parameters": {name: value}}. `grlib.course.results` stores
# it with the notebook's results, so a notebook reading them can tell which run made them.
last: dict | None = None


class ParameterError(ValueError):
    """A notebook parameter has a value the notebook cannot use."""


@dataclass(frozen=True)
class Rule:
    """What a parameter must be: `check(value)` returns None if the value is fine, else what it should be."""
    check: Callable[[Any], str | None]


def integer(min: int | None = None, max: int | None = None, optional: bool = False) -> Rule:
    """A whole number in [min, max] (None allowed if `optional`)."""
    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            return "a whole number"
        if (min is not None and v < min) or (max is not None and v > max):
            return f"a whole number in [{min if min is not None else '-∞'}, {max if max is not None else '∞'}]"
        return None
    return Rule(check)


def number(min: float | None = None, max: float | None = None, below: float | None = None,
           optional: bool = False) -> Rule:
    """A finite number in [min, max] (or below `below`); None allowed if `optional`."""
    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return "a finite number"
        if (min is not None and v < min) or (max is not None and v > max) or (below is not None and v >= below):
            bounds = [f"≥ {min:g}" if min is not None else "", f"≤ {max:g}" if max is not None else "",
                      f"< {below:g}" if below is not None else ""]
            return "a number " + " and ".join(b for b in bounds if b)
        return None
    return Rule(check)


def choice(*options: Any) -> Rule:
    """One of `options`."""
    return Rule(lambda v: None if v in options else "one of " + ", ".join(map(repr, options)))


def json_file(*keys: str, optional: bool = False) -> Rule:
    """The path of a readable JSON object holding `keys` ("" allowed if `optional`)."""
    def check(v: Any) -> str | None:
        if v == "" and optional:
            return None
        if not isinstance(v, str):
            return "the path of a JSON file, as a string"
        try:
            content = json.loads((base_folder.get() or Path()).joinpath(v).read_text())
        except (OSError, ValueError) as e:
            return f"a readable JSON file ({type(e).__name__}: {e})"
        missing = [k for k in keys if not isinstance(content, dict) or k not in content]
        return f"a JSON file with the keys {', '.join(keys)}; it lacks {', '.join(missing)}" if missing else None
    return Rule(check)


def datasets(count: int | None = None) -> Rule:
    """Comma-separated dataset names (e.g. "mnist,fashion-mnist"), each known and loadable (read from disk, or
    downloaded where there is a network)."""
    def check(v: Any) -> str | None:
        if not isinstance(v, str):
            return "dataset names separated by commas"
        names = [n.strip() for n in v.split(",")]
        if count is not None and len(names) != count:
            return f"{count} dataset names separated by commas"
        unknown = [n for n in names if n not in data.DATASETS]
        if unknown:
            return f"known datasets ({', '.join(data.DATASETS)}); {', '.join(map(repr, unknown))} is not"
        for name in names:
            for train in (True, False):
                try:
                    data.load(name, train)
                except (data.DatasetNotFoundError, ImportError) as e:
                    return f"datasets that can be loaded; {str(e).splitlines()[0]} (see data/README.md)"
        return None
    return Rule(check)


def check(namespace: dict, **rules: Rule) -> None:
    """Check the parameters named in `rules` (values from `namespace`, usually `globals()`), and the profile, and
    remember them (`last`) for the results. Raises ParameterError naming the first bad parameter."""
    global last
    profile = get_profile(namespace.get("profile")).name  # an unknown profile is a ValueError listing the profiles
    for name, rule in rules.items():
        if name not in namespace:
            raise ParameterError(f"the notebook has no parameter {name!r}")
        problem = rule.check(namespace[name])
        if problem is not None:
            raise ParameterError(f"parameter {name} = {namespace[name]!r}: it must be {problem}")
    last = {"profile": profile, "parameters": {name: namespace[name] for name in rules}}
