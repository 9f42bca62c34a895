"""parfill's benchmarks: ``python -m benchmarks [SUITE] ...`` from the repository root.

Not part of the installed package: they run from a checkout, against the
development install that ``make`` puts in ``.venv`` (``make bench SUITE=...``).
Suites are modules of this package registered in
:data:`benchmarks.harness.SUITES`; see benchmarks/README.md for the
convention. :func:`main` is the command-line entry point.
"""
from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m benchmarks`` with ``argv``; return the exit status."""
    from .harness import main as harness_main

    return harness_main(argv)
