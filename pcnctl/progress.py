"""A progress bar on stderr for work longer than a second (count, rate, time left); nothing when not a
terminal or when quiet."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


@dataclass
class _Shown:
    """The bar once shown (rich is imported only then), and the work done so far."""

    bar: Progress | None = None
    task: TaskID | None = None
    done: int = 0


@contextmanager
def progress_bar(total: int, label: str, *, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; the bar appears only once the work has lasted a second."""
    if not enabled or total <= 0 or not sys.stderr.isatty():
        yield lambda n: None
        return
    started = time.monotonic()
    state = _Shown()
    lock = threading.Lock()

    def advance(n: int) -> None:
        with lock:
            state.done += n
            if state.bar is None and time.monotonic() - started >= 1.0:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeRemainingColumn,
                )

                bar = Progress(
                    f"[bold]{label}",
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"),
                    TimeRemainingColumn(),
                    console=Console(stderr=True),
                    transient=True,
                )
                bar.start()
                state.task = bar.add_task(label, total=total, completed=state.done, rate="")
                state.bar = bar
            elif state.bar is not None and state.task is not None:
                rate = state.done / max(time.monotonic() - started, 1e-3)
                state.bar.update(state.task, completed=state.done, rate=f"{rate:.0f}/s")

    try:
        yield advance
    finally:
        if state.bar is not None:
            state.bar.stop()
