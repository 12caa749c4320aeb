"""Markdown tables and their "mean ± std" cells: what the runner, the sweep, the benchmark, tuning and the record
write."""
from __future__ import annotations

import statistics
from typing import Any, Iterable, Sequence


def mean_std(values: Sequence[float], digits: int = 1) -> str:
    """"mean ± std" over seeds (the value alone for one seed)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table with this header row and these rows (each cell written with `str`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"
