"""Type information for the parfill._core C extension (private API)."""
from typing import Callable, Mapping, Optional

import numpy as np

version: str

def fill_callable(
    func: Callable[..., object],
    out: np.ndarray,
    *,
    vectorized: bool = ...,
    backend: str = ...,
    workers: int = ...,
    schedule: str = ...,
    chunk: int = ...,
    start: int = ...,
    budget: float = ...,
    progress: Optional[Callable[[int, int], object]] = ...,
    timeout: float = ...,
    retries: int = ...,
    guard: Optional[np.ndarray] = ...,
) -> int: ...
def fill_expr(
    text: str,
    out: np.ndarray,
    params: Mapping[str, int | float | bool],
    workers: int,
    schedule: str,
    chunk: int,
    progress: Optional[Callable[[int, int], object]],
    timeout: float = ...,
) -> None: ...
def fill_native(
    address: int,
    kind: str,
    out: np.ndarray,
    ctx: Optional[int] = ...,
    workers: int = ...,
    schedule: Optional[str] = ...,
    chunk: int = ...,
    progress: Optional[Callable[[int, int], object]] = ...,
    timeout: float = ...,
) -> None: ...
def fill_random(
    out: np.ndarray,
    dist: str,
    key0: int,
    key1: int,
    stream: int,
    workers: int = ...,
    schedule: Optional[str] = ...,
    chunk: int = ...,
    progress: Optional[Callable[[int, int], object]] = ...,
    timeout: float = ...,
) -> None: ...
def shared_empty(shape: int | tuple[int, ...], dtype: object) -> np.ndarray: ...
def is_shared(array: np.ndarray) -> bool: ...
def privatize(array: np.ndarray) -> bool: ...
def in_worker() -> bool: ...
def cpu_count() -> int: ...
