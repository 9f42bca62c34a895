"""Progress reporting for long fills: tqdm when installed, else a plain bar."""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, Protocol

__all__ = ["Reporter", "make_progress", "reporting"]


class Reporter(Protocol):
    """What a fill calls as ``progress(done, total)``, closed at its end."""

    def __call__(self, done: int, total: int) -> None: ...

    def close(self) -> None: ...


class _Callback:
    """A user's ``progress(done, total)`` callable."""

    def __init__(self, fn: Callable[[int, int], object]) -> None:
        self._fn = fn

    def __call__(self, done: int, total: int) -> None:
        self._fn(done, total)

    def close(self) -> None:
        pass


class _Tqdm:
    def __init__(self, tqdm: Callable[..., Any], total: int) -> None:
        self._bar = tqdm(total=total, unit="el", unit_scale=True,
                         file=sys.stderr, desc="parfill")
        self._done = 0

    def __call__(self, done: int, total: int) -> None:
        if done > self._done:
            self._bar.update(done - self._done)
            self._done = done

    def close(self) -> None:
        self._bar.close()


class _PlainBar:
    """``[#####-----]  50%  1.2M el/s  ETA 3s`` on stderr, ten times a second."""

    WIDTH = 30

    def __init__(self, total: int) -> None:
        self._total = total
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._done = 0

    def __call__(self, done: int, total: int) -> None:
        self._done = done
        now = time.monotonic()
        if now - self._last_draw >= 0.1 or done >= total:
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        stream = sys.stderr
        if stream is None:  # closed since the bar started: stop drawing
            return
        total = max(self._total, 1)
        fraction = min(self._done / total, 1.0)
        filled = int(fraction * self.WIDTH)
        elapsed = now - self._start
        rate = self._done / elapsed if elapsed > 0 else 0.0
        eta = (self._total - self._done) / rate if rate > 0 else float("inf")
        eta_text = f"{eta:.0f}s" if eta != float("inf") else "?"
        try:
            stream.write(
                f"\r[{'#' * filled}{'-' * (self.WIDTH - filled)}] "
                f"{fraction * 100:5.1f}%  {_si(rate)} el/s  ETA {eta_text} ")
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass  # a closed or odd stream: the fill matters, not the bar

    def close(self) -> None:
        self._draw(time.monotonic())
        stream = sys.stderr
        try:
            if stream is not None:
                stream.write("\n")
                stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


def _si(x: float) -> str:
    for unit in ("", "k", "M", "G"):
        if abs(x) < 1000:
            return f"{x:.1f}{unit}"
        x /= 1000
    return f"{x:.1f}T"


def make_progress(progress: object, total: int) -> Reporter | None:
    """A reporter for populate's ``progress`` argument, or None for off."""
    if progress is None or progress is False:
        return None
    if progress is True:
        if sys.stderr is None:  # pythonw, a daemon: nowhere to draw a bar
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            return _PlainBar(total)
        return _Tqdm(tqdm, total)
    if callable(progress):
        return _Callback(progress)
    raise TypeError(
        f"progress must be True, False or a callable(done, total), not "
        f"{progress!r}")


class reporting:
    """make_progress() for the length of a ``with`` block, which closes the
    reporter (ends the bar) however the fill ends. A class, not a
    contextlib generator: every populate call enters one."""

    __slots__ = ("reporter",)

    def __init__(self, progress: object, total: int) -> None:
        self.reporter = make_progress(progress, total)

    def __enter__(self) -> Reporter | None:
        return self.reporter

    def __exit__(self, *exc: object) -> None:
        if self.reporter is not None:
            self.reporter.close()
