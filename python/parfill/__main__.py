"""python -m parfill {demo,bench} ..."""
import os
import sys

USAGE = """usage: python -m parfill COMMAND [ARGS]

commands:
  demo    populate a Mandelbrot image with a per-pixel Python function and
          compare the sequential loop, the article's three multiprocessing
          approaches and parfill (python -m parfill demo --help)

  bench   run a benchmark suite (python -m parfill bench SUITE [options]):
          only where parfill is the development install of a checkout, whose
          benchmarks/ it runs (the same as `python -m benchmarks SUITE`)

Benchmarks are not installed: run `python -m benchmarks` (or `make bench`)
from a checkout of parfill's repository.
"""

# The benchmarks left the package (they run from a checkout): an installed
# parfill says where they went rather than failing with an unknown command.
BENCH_MOVED = ("parfill: the benchmarks are not part of the installed package; from a "
               "checkout of the repository run `python -m benchmarks [SUITE]` (or "
               "`make bench SUITE=...`)\n")


def _checkout():
    """The repository root when this parfill is a checkout's development
    install (python/parfill beside benchmarks/), else None."""
    package = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(package))
    if (os.path.basename(os.path.dirname(package)) == "python"
            and os.path.isfile(os.path.join(root, "benchmarks", "harness.py"))):
        return root
    return None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        from parfill import demo
        return demo.main(rest)
    if command == "bench":
        root = _checkout()
        if root is None:
            sys.stderr.write(BENCH_MOVED)
            return 2
        if root not in sys.path:
            sys.path.insert(0, root)
        # By name: the checkout's benchmarks are no part of the package
        # (nor of its type check).
        import importlib
        return int(importlib.import_module("benchmarks").main(rest))
    if command in ("-V", "--version"):
        import parfill
        print(parfill.__version__)
        return 0
    sys.stderr.write(f"unknown command {command!r}\n\n{USAGE}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
