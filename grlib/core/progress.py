"""Progress bars that suit where the course runs: live bars for someone watching, one finished line in a record.

`python -m grlib run` and `sweep` set GRLIB_PROGRESS=text for the notebooks they execute, so an executed notebook (and its HTML
report) shows each bar as the line it ended on, instead of a widget frozen before its end."""
from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm as live_tqdm
from tqdm.std import tqdm as text_tqdm

from grlib.core.config import text_progress

T = TypeVar("T")


def bar(iterable: Iterable[T], desc: str = "", disable: bool = False, total: int | None = None) -> Iterable[T]:
    """`iterable` with a progress bar: live (and gone when done) interactively; with GRLIB_PROGRESS=text, a text
    line written at the start and rewritten once at the end."""
    if text_progress():
        return text_tqdm(iterable, desc=desc, total=total, disable=disable, leave=True,
                                       mininterval=float("inf"), file=sys.stdout, ascii=True, dynamic_ncols=False,
                                       ncols=100)
    return live_tqdm(iterable, desc=desc, total=total, disable=disable, leave=False)
