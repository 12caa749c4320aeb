"""Progress bars that suit where the course runs: live bars for someone watching, one finished line in a record.

`python -m grlib run` sets GRLIB_PROGRESS=text for the notebooks it executes, so an executed notebook (and its HTML
report) shows each bar as the line it ended on, instead of a widget frozen before its end."""
from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm as live_tqdm
from tqdm.std import tqdm as text_tqdm

from .threads import share

T = TypeVar("T")


def bar(iterable: Iterable[T], desc: str = "", disable: bool = False, total: int | None = None) -> Iterable[T]:
    """`iterable` with a progress bar: live (and gone when done) interactively; with GRLIB_PROGRESS=text, a text
    line written at the start and rewritten once at the end. Training loops run here, so while they do, this
    process keeps taking its share of the machine's cores (`grlib.threads`)."""
    if os.environ.get("GRLIB_PROGRESS") == "text":
        return sharing_cores(text_tqdm(iterable, desc=desc, total=total, disable=disable, leave=True,
                                       mininterval=float("inf"), file=sys.stdout, ascii=True, dynamic_ncols=False,
                                       ncols=100))
    return sharing_cores(live_tqdm(iterable, desc=desc, total=total, disable=disable, leave=False))


def sharing_cores(steps: Iterable[T]) -> Iterator[T]:
    """The steps, this process taking its share of the cores at the start and every few seconds (other processes
    may start or finish training meanwhile)."""
    share()
    for step in steps:
        share(at_most_every=2.0)
        yield step
