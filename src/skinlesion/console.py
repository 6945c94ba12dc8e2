"""What a command prints while it works: a progress bar on a terminal; on a log file or pipe one line when a
step starts, a line per tenth of a long step and one when it ends (no bar redraws); ``--quiet`` silences both."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable

_state = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = bool(quiet)


def step(text: str) -> None:
    """One line on stderr saying what the command does now (a long step must never look like a hang)."""
    if not _state["quiet"]:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class _Lines:
    """A tqdm stand-in for non-terminals: start, every 10% and end as plain lines."""

    def __init__(self, iterable=None, total=None, desc="", unit="it", **_):
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n, self._next, self._t0 = 0, 0.1, time.monotonic()
        step(f"{desc}: {self.total if self.total is not None else '?'} {unit}")

    def update(self, k: int = 1) -> None:
        self.n += k
        if self.total and self.n / self.total >= self._next and self.n < self.total:
            step(f"{self.desc}: {self.n}/{self.total} {self.unit}")
            while self.n / self.total >= self._next:
                self._next += 0.1

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def close(self) -> None:
        if self._t0 is not None:
            step(f"{self.desc}: done, {self.n} {self.unit} in {time.monotonic() - self._t0:.1f} s")
            self._t0 = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()


def bar(iterable=None, total=None, desc: str = "", unit: str = "it", disable: bool = False, **kw):
    """tqdm on a terminal, plain lines elsewhere, nothing when ``disable`` or quiet."""
    from tqdm.auto import tqdm
    if disable or _state["quiet"]:
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=True, **kw)
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, **kw)
    return _Lines(iterable, total=total, desc=desc, unit=unit)


@dataclass(frozen=True)
class Console:
    """Where a stage reports: ``progress`` bars (and Lightning's INFO lines) on or off, ``echo`` for step lines."""

    progress: bool = True
    echo: Callable[[str], object] = print
