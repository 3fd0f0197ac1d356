"""Terminal output shared by every command: one rich console, progress that --quiet silences."""

from __future__ import annotations

import contextlib
import sys
import time

_state = {"quiet": False, "timings": []}


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = bool(quiet)


def is_quiet() -> bool:
    return _state["quiet"]


def console():
    from rich.console import Console

    return Console(stderr=False, quiet=_state["quiet"], highlight=False)


def err_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def info(message: str) -> None:
    """A progress/diagnostic line on stderr (silenced by --quiet)."""
    if not _state["quiet"]:
        err_console().print(message)


class Progress:
    """A thin wrapper over rich.progress: `with progress() as p: t = p.task("x", total); p.advance(t)`.

    With --quiet (or when stderr is not a terminal and no total is known) it does nothing visible.
    """

    def __init__(self):
        self._p = None

    def __enter__(self):
        if not _state["quiet"]:
            from rich.progress import (BarColumn, Progress as RP, SpinnerColumn, TextColumn,
                                       TimeElapsedColumn)

            self._p = RP(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                         TextColumn("{task.completed:,.0f}/{task.total:,.0f}"), TimeElapsedColumn(),
                         console=err_console(), transient=True, disable=not sys.stderr.isatty())
            self._p.__enter__()
        return self

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.__exit__(*exc)
        return False

    def task(self, description: str, total: float | None = None):
        return self._p.add_task(description, total=total) if self._p is not None else None

    def advance(self, task, amount: float = 1.0) -> None:
        if self._p is not None and task is not None:
            self._p.advance(task, amount)

    def update(self, task, **kw) -> None:
        if self._p is not None and task is not None:
            self._p.update(task, **kw)


def progress() -> Progress:
    return Progress()


@contextlib.contextmanager
def stage(description: str):
    """A named stage: a spinner while it runs (stderr), nothing with --quiet; its wall time is
    kept for the report (`timings()`)."""
    t0 = time.perf_counter()
    try:
        if _state["quiet"] or not sys.stderr.isatty():
            yield
        else:
            with err_console().status(description):
                yield
    finally:
        _state["timings"].append((description, time.perf_counter() - t0))


def timings(reset: bool = False) -> list[tuple[str, float]]:
    """(stage, seconds) of the stages run in this process so far, in order."""
    out = list(_state["timings"])
    if reset:
        _state["timings"].clear()
    return out
