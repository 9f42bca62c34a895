"""Smoke tests for ``python -m parfill demo`` at a tiny size (no timing assertions)."""
from __future__ import annotations

import numpy as np

from parfill import demo
from parfill.demo import make_mandelbrot


def _reference(width, height, max_iter):
    pixel = make_mandelbrot(width, height, max_iter)
    a = np.empty((height, width), dtype=np.uint8)
    for idx in np.ndindex(a.shape):
        a[idx] = pixel(*idx)
    return a


def test_demo_images_equal_the_sequential_reference():
    result = demo.run_demo(23, 17, 40, 2, queue_max=100)  # 391 pixels: approach 3 sampled
    ref = _reference(23, 17, 40)
    assert np.array_equal(result.image, ref)
    assert [r.equal for r in result.rows] == [None, True, True, True, True, True]
    assert "translate='never'" in result.rows[4].method
    assert result.rows[3].n_run < result.rows[3].n  # the queue ran on a sample
    assert result.all_equal
    assert ref.max() == 40 and ref.min() < 5  # both inside and outside the set


def test_demo_main_writes_png(tmp_path, capsys):
    png = tmp_path / "m.png"
    assert demo.main(["--size", "32x24", "--max-iter", "30", "--workers", "2",
                      "--png", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    for label in ("sequential loop", "article 1", "article 2", "article 3",
                  "parfill, translate='never'", "parfill.populate"):
        assert label in out
    assert "MISMATCH" not in out


def test_fallback_png_writer(tmp_path):
    gray = (np.arange(12 * 5) % 256).astype(np.uint8).reshape(5, 12)
    path = tmp_path / "g.png"
    demo._write_png_gray(str(path), gray)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    import zlib
    idat_len = int.from_bytes(data[33:37], "big")
    raw = zlib.decompress(data[41:41 + idat_len])
    rows = [raw[r * 13 + 1:(r + 1) * 13] for r in range(5)]
    assert b"".join(rows) == gray.tobytes()
