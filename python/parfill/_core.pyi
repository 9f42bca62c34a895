"""Type information for the parfill._core C extension (private API).

Each signature follows the function's keyword list and format string in
python/_core/*.c (PyArg_ParseTupleAndKeywords) and its flags in module.c's
method table: METH_O functions take one positional argument, ``$`` in a
format makes the rest keyword-only, ``|`` the rest optional.
"""
from typing import Any, Callable, Mapping, Sequence, SupportsIndex

import numpy as np
import numpy.typing as npt

_Progress = Callable[[int, int], object] | None
# (whole_shape, origin): out is that box of a larger array (core.h).
_Window = tuple[Sequence[SupportsIndex], Sequence[SupportsIndex]] | None

version: str

# callable.c: "OO!|$psiOLLdOdiOO"; returns the next flat index to fill.
def fill_callable(
    func: Callable[..., object],
    out: npt.NDArray[Any],
    *,
    vectorized: bool = ...,
    backend: str = ...,
    workers: int = ...,
    schedule: str = ...,
    chunk: int = ...,
    start: int = ...,
    budget: float = ...,
    progress: _Progress = ...,
    timeout: float = ...,
    retries: int = ...,
    guard: npt.NDArray[Any] | None = ...,
    window: _Window = ...,
) -> int: ...

# expr.c: "UO!|OiOLOdO"
def fill_expr(text: str, out: npt.NDArray[Any],
              params: Mapping[str, object] | None = ..., workers: int = ...,
              schedule: str | None = ..., chunk: int = ...,
              progress: _Progress = ..., timeout: float = ...,
                window: _Window = ...) -> None: ...

# native.c: "OsO!|OiOLOdO"; address and ctx are int addresses.
def fill_native(address: int, kind: str, out: npt.NDArray[Any],
                ctx: int | None = ..., workers: int = ...,
                schedule: str | None = ..., chunk: int = ...,
                progress: _Progress = ..., timeout: float = ...,
                window: _Window = ...) -> None: ...

# random.c: "O!sOOO|iOLOdO"; key0, key1 and stream are unsigned 64-bit.
def fill_random(out: npt.NDArray[Any], dist: str, key0: int, key1: int,
                stream: int, workers: int = ..., schedule: str | None = ...,
                chunk: int = ..., progress: _Progress = ...,
                timeout: float = ..., window: _Window = ...) -> None: ...

# translated.c: "y*y*y*iOO!|$iOLOdLiO"; returns -1 or the lowest bailing index.
def fill_translated(
    code: bytes,
    iconsts: bytes,
    fconsts: bytes,
    ndim: int,
    nregs: tuple[int, ...],  # (nI, nF, nB), issue 12 adds nC
    out: npt.NDArray[Any],
    *,
    workers: int = ...,
    schedule: str | None = ...,
    chunk: int = ...,
    progress: _Progress = ...,
    timeout: float = ...,
    first: int = ...,
    _isa: int = ...,
    window: _Window = ...,
) -> int: ...

# shared.c: "O&O&" (PyArray_IntpConverter, PyArray_DescrConverter)
def shared_empty(
    shape: SupportsIndex | Sequence[SupportsIndex],
    dtype: npt.DTypeLike,
) -> npt.NDArray[Any]: ...

# METH_O
def is_shared(array: np.ndarray[Any, Any], /) -> bool: ...
def privatize(array: np.ndarray[Any, Any], /) -> bool: ...

# METH_NOARGS
def in_worker() -> bool: ...
def pyvm_opcodes() -> dict[str, int]: ...
def pyvm_functions() -> dict[str, int]: ...
def cpu_count() -> int: ...
