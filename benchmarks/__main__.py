"""``python -m benchmarks [SUITE] [options]`` (from the repository root)."""
import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
