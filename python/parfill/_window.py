"""Blocks of a larger array (SPEC section 8): what parfill.dask computes in
each task.

A block is the box of ``block_shape`` at ``origin`` of an array of
``whole_shape``. It is filled by the native engine with the whole's indices
-- an expression's ``i j ... idx`` and ``n0 ... size``, a Python function's
arguments, a native function's index, the random generator's element -- so
it equals ``populate(func, whole_shape, ...)[box]`` bit for bit, and an
exception's note names the element of the whole.
"""
from __future__ import annotations

from typing import Any, Callable, Literal

import numpy as np
import numpy.typing as npt

from parfill import _populate, _random
from parfill._args import resolve_shape
from parfill._native import NativeFunctionLike


def _window(whole_shape: object, origin: object,
            block_shape: object) -> tuple[tuple[int, ...], tuple[int, ...],
                                          tuple[int, ...]]:
    for name, value in (("whole shape", whole_shape), ("origin", origin),
                        ("block shape", block_shape)):
        if isinstance(value, (bool, np.bool_)) or (
                isinstance(value, tuple) and
                any(isinstance(v, (bool, np.bool_)) for v in value)):
            raise TypeError(f"{name} must hold ints, not bools")
    whole = resolve_shape(whole_shape)
    block = resolve_shape(block_shape)
    start = resolve_shape(origin)
    if not len(whole) == len(block) == len(start):
        raise ValueError(
            f"whole shape {whole}, origin {start} and block shape {block} "
            f"must have the same number of dimensions")
    for d, (n, o, b) in enumerate(zip(whole, start, block)):
        if o + b > n:
            raise ValueError(
                f"block [{o}, {o + b}) outside axis {d} of length {n}")
    return whole, start, block


def populate_block(func: str | Callable[..., object] | NativeFunctionLike,
                   whole_shape: object, origin: object, block_shape: object,
                   dtype: npt.DTypeLike | None = None,
                   **options: Any) -> npt.NDArray[Any]:
    """``populate(func, whole_shape, dtype, **options)[box]``, computing
    only the box of ``block_shape`` at ``origin``."""
    whole, start, block = _window(whole_shape, origin, block_shape)
    return _populate.fill(func, block, dtype, (whole, start), **options)


def random_block(whole_shape: object, origin: object, block_shape: object,
                 dist: Literal["uniform", "normal"] = "uniform",
                 seed: int = 0, dtype: npt.DTypeLike | None = None,
                 **options: Any) -> npt.NDArray[Any]:
    """``random(whole_shape, dist, seed, dtype, **options)[box]``,
    computing only the box of ``block_shape`` at ``origin``."""
    whole, start, block = _window(whole_shape, origin, block_shape)
    return _random.fill(block, dist, seed, dtype, (whole, start), **options)
