"""How long operations report progress without knowing who shows it.

Backups, restores, migrations and reconciles take a ``progress`` wrapper: they iterate over what
they process through it, and the caller decides what that shows. The CLI passes a bar drawn on a
terminal; the server and the library pass nothing. Nothing here draws anything, so the lower
layers need no progress-bar library and never write to a terminal themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")


class Progress(Protocol):
    """Yields ``items`` unchanged, advancing one step per item; ``total`` may be unknown (None)."""

    def __call__(self, items: Iterable[_T], *, total: int | None = None, desc: str = "") -> Iterable[_T]: ...


def no_progress(items: Iterable[_T], *, total: int | None = None, desc: str = "") -> Iterable[_T]:
    """The default: shows nothing."""
    return items


def one_step(progress: Progress, desc: str, work: Callable[[], _R]) -> _R:
    """``work()``, reported as a single step: for a long call with no parts of its own to count
    (a database dump), so that a bar at least says what is running."""
    return [run() for run in progress([work], total=1, desc=desc)][0]
