"""parfill: populate NumPy arrays in parallel.

``a[idx] = f(idx)`` for every index of a shape, spread over every core and
written straight into the final array. See :func:`populate`.
"""
from parfill import _core
from parfill._errors import (
    ExpressionError,
    RemoteTraceback,
    TimeoutError,
    WorkerDiedError,
    WorkerError,
)
from parfill._populate import cpu_count, populate
from parfill._random import random
from parfill._translate import Kernel, TranslationError, translate

__version__: str = _core.version

__all__ = ["ExpressionError", "RemoteTraceback", "TimeoutError",
           "WorkerDiedError", "WorkerError", "cpu_count", "populate",
           "random", "__version__", "Kernel", "TranslationError",
           "translate"]
