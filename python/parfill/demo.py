"""``python -m parfill demo``: a Mandelbrot image, one Python call per pixel.

Populates the image with a plain per-pixel Python function (escape-time
iteration, :func:`make_mandelbrot`) six ways --
the sequential loop, the article's three multiprocessing approaches,
``parfill.populate`` calling the function on worker processes
(``translate="never"``) and with its defaults (translated into the native VM)
-- prints the time of each, its speedup
over the sequential loop and whether its image equals the sequential one, and
saves the image as a PNG. One run of each; the benchmarks of a checkout
(``python -m benchmarks python``) are the careful measurement.

The article's approach 3 sends every pixel through two queues (~25 us per
pixel on a small machine, more than the pixel itself costs), so above
``--queue-max`` pixels it runs on an evenly strided sample of that many pixels
and its time is scaled linearly to the full image (shown with '~').
"""
from __future__ import annotations

import argparse
import os
import struct
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from parfill import _article as article

__all__ = ["DemoRow", "DemoResult", "main", "make_mandelbrot", "run_demo", "save_png"]


def make_mandelbrot(width: int, height: int, max_iter: int = 200,
                    x_range: tuple[float, float] = (-2.2, 1.0),
                    y_range: tuple[float, float] = (-1.2, 1.2)) -> Callable[[int, int], int]:
    """A per-pixel Mandelbrot function ``pixel(i, j)`` for a ``height x width`` image.

    Row ``i``, column ``j``; returns the escape iteration (0..max_iter-1), or
    ``max_iter`` for points that stay bounded. Pure Python, one pixel per call.
    The benchmarks' "mandelbrot" workload times this same function.
    """
    x0, x1 = x_range
    y0, y1 = y_range
    dx = (x1 - x0) / width
    dy = (y1 - y0) / height

    def pixel(i: int, j: int) -> int:
        c = complex(x0 + (j + 0.5) * dx, y0 + (i + 0.5) * dy)
        z = 0j
        for n in range(max_iter):
            z = z * z + c
            if abs(z) > 2.0:
                return n
        return max_iter
    return pixel


@dataclass
class DemoRow:
    """One method: wall seconds (scaled to the full image if ``n_run`` < ``n``)."""

    method: str
    seconds: float
    equal: bool | None  # None: this is the reference
    n: int
    n_run: int
    error: str | None = None


@dataclass
class DemoResult:
    width: int
    height: int
    max_iter: int
    workers: int
    image: np.ndarray  # the sequential loop's image
    rows: list[DemoRow] = field(default_factory=list)

    @property
    def all_equal(self) -> bool:
        return all(r.equal is not False for r in self.rows)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _timed(fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray | None, str | None]:
    t0 = time.perf_counter()
    try:
        out = fn()
    except Exception as exc:  # show it in the table; the demo goes on
        return time.perf_counter() - t0, None, f"{type(exc).__name__}: {exc}".splitlines()[0]
    return time.perf_counter() - t0, out, None


def run_demo(width: int, height: int, max_iter: int, workers: int, *,
             queue_max: int = 50_000, report: Callable[[DemoRow], None] | None = None,
             ) -> DemoResult:
    """Populate the image every way, checking each against the sequential loop.

    ``report(row)`` is called after each method (to print as it goes).
    """
    import parfill

    dtype = np.dtype(np.uint8 if max_iter <= 255 else np.uint16)
    pixel = make_mandelbrot(width, height, max_iter)
    shape = (height, width)
    n = width * height

    def flat(k: int) -> int:
        i, j = divmod(k, width)
        return pixel(i, j)

    def sequential() -> np.ndarray:
        image = np.empty(shape, dtype=dtype)
        for i in range(height):
            for j in range(width):
                image[i, j] = pixel(i, j)
        return image

    seconds, reference, error = _timed(sequential)
    if reference is None:
        raise RuntimeError(f"the sequential loop failed: {error}")
    result = DemoResult(width, height, max_iter, workers, reference)

    def add(row: DemoRow) -> None:
        result.rows.append(row)
        if report is not None:
            report(row)

    add(DemoRow("sequential loop", seconds, None, n, n))

    stride = max(1, -(-n // queue_max))
    sample = range(0, n, stride)
    for key, label, fn in article.APPROACHES:
        if key == "article3" and stride > 1:
            seconds, out, error = _timed(
                lambda: fn(flat, n, workers, dtype, indices=sample))
            equal = out is not None and np.array_equal(out[::stride], reference.reshape(-1)[::stride])
            add(DemoRow(label, seconds * n / len(sample), equal, n, len(sample), error))
            continue
        seconds, out, error = _timed(lambda: fn(flat, n, workers, dtype).reshape(shape))
        add(DemoRow(label, seconds, out is not None and np.array_equal(out, reference),
                    n, n, error))

    # parfill twice: calling the Python function on worker processes, and
    # by default, where the function is translated into its native VM.
    runs: list[tuple[str, Callable[[], np.ndarray]]] = [
        ("parfill, translate='never' (processes)",
         lambda: parfill.populate(pixel, shape, dtype, workers=workers,
                                  backend="processes", translate="never")),
        ("parfill.populate(pixel, shape, dtype)",
         lambda: parfill.populate(pixel, shape, dtype, workers=workers))]
    for label, run in runs:
        seconds, out, error = _timed(run)
        add(DemoRow(label, seconds,
                    out is not None and out.dtype == dtype and np.array_equal(out, reference),
                    n, n, error))
    return result


# ---------------------------------------------------------------------------
# The picture.

def _shade(image: np.ndarray, max_iter: int) -> np.ndarray:
    """Escape counts -> 0..1 brightness; points inside the set are black."""
    v = np.sqrt(image.astype(np.float64) / max_iter)
    v[image >= max_iter] = 0.0
    return v


def _write_png_gray(path: str, gray: np.ndarray) -> None:
    """An 8-bit grayscale PNG, written with zlib (when matplotlib is missing)."""
    height, width = gray.shape

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + gray[r].tobytes() for r in range(height))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)))
        f.write(chunk(b"IEND", b""))


def save_png(path: str, image: np.ndarray, max_iter: int) -> str:
    """Save the escape-count image as a PNG (colour with matplotlib, else gray)."""
    shade = _shade(image, max_iter)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _write_png_gray(path, np.ascontiguousarray((shade * 255).round().astype(np.uint8)))
        return "grayscale, zlib"
    plt.imsave(path, shade, cmap="magma", vmin=0.0, vmax=1.0)
    return "matplotlib, magma"


# ---------------------------------------------------------------------------

def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError("width and height must be >= 1")
    return w, h


def _fmt_row(row: DemoRow, seq: float, width: int) -> str:
    scaled = row.n_run < row.n
    t = f"{'~' if scaled else ''}{row.seconds:.2f} s"
    if row.error:
        return f"{row.method:<{width}}  {t:>9}  {'-':>8}  ERROR: {row.error}"
    speedup = f"{seq / row.seconds:.2f}x" if row.seconds > 0 else "-"
    equal = "(reference)" if row.equal is None else ("yes" if row.equal else "NO  <<< MISMATCH")
    extra = f"  (ran {row.n_run:,} of {row.n:,} pixels, time scaled)" if scaled else ""
    return f"{row.method:<{width}}  {t:>9}  {speedup:>8}  {equal}{extra}"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m parfill demo``; returns 0 when every method's image equals the reference."""
    p = argparse.ArgumentParser(
        prog="python -m parfill demo",
        description="Populate a Mandelbrot image with a per-pixel Python function: the "
                    "sequential loop vs the article's three multiprocessing approaches vs "
                    "parfill, with speedups and an equality check; saves a PNG.")
    p.add_argument("--size", type=_size, default=(1200, 900), metavar="WxH",
                   help="image size in pixels (default 1200x900)")
    p.add_argument("--max-iter", type=int, default=200, help="iteration limit (default 200)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes for every parallel method (default: the usable CPUs)")
    p.add_argument("--queue-max", type=int, default=50_000, metavar="N",
                   help="article approach 3 runs on at most N pixels, time scaled (default 50000)")
    p.add_argument("--png", default="mandelbrot.png", metavar="FILE",
                   help="where to save the image (default ./mandelbrot.png)")
    p.add_argument("--no-png", action="store_true", help="do not save the image")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.max_iter < 1 or args.max_iter > 65535:
        p.error("--max-iter must be between 1 and 65535")
    if args.workers is not None and args.workers < 1:
        p.error("--workers must be >= 1")
    if args.queue_max < 1:
        p.error("--queue-max must be >= 1")

    import parfill

    workers = args.workers or int(getattr(parfill, "cpu_count", _usable_cpus)())
    width, height = args.size
    label_width = 40
    print(f"parfill demo: Mandelbrot {width}x{height} ({width * height:,} pixels, at most "
          f"{args.max_iter} iterations), one Python call per pixel")
    print(f"{workers} worker(s) on {_usable_cpus()} usable CPU(s); parfill "
          f"{getattr(parfill, '__version__', '?')}; one run of each method\n")
    print(f"{'method':<{label_width}}  {'time':>9}  {'speedup':>8}  equal")

    t_start = time.perf_counter()
    seq_time: list[float] = []

    def report(row: DemoRow) -> None:
        if not seq_time:
            seq_time.append(row.seconds)
        print(_fmt_row(row, seq_time[0], label_width), flush=True)

    result = run_demo(width, height, args.max_iter, workers, queue_max=args.queue_max,
                      report=report)
    print()
    if not args.no_png:
        how = save_png(args.png, result.image, args.max_iter)
        print(f"wrote {args.png} ({width}x{height}, {how})")
    print(f"total {time.perf_counter() - t_start:.1f} s")
    if not result.all_equal:
        print("!!! some method's image differs from the sequential loop's", file=sys.stderr)
        return 1
    return 0
