"""pytest plugin of `make coverage` (tools/coverage): tests/python/test_cli.py
runs the instrumented command (PARFILL_COVERAGE_BIN) instead of build/parfill,
so the command's calls into libparfill are measured too, without replacing the
normal build. test_cli reads its module global PARFILL at every call.

Tests that run the command as another user (nobody) keep build/parfill: that
user cannot write the .gcda counters, and gcov then prints one complaint per
file on the command's stderr, which those tests read (this libgcov ignores
GCOV_ERROR_FILE)."""
import os
import sys
from pathlib import Path

AS_ANOTHER_USER = {"test_no_permission"}


def _test_cli():
    suffix = os.path.join("tests", "python", "test_cli.py")
    for module in list(sys.modules.values()):
        if (getattr(module, "__file__", None) or "").endswith(suffix):
            return module
    return None


def pytest_collection_finish(session):
    binary = os.environ.get("PARFILL_COVERAGE_BIN")
    module = _test_cli()
    if binary and module is not None:
        module.PARFILL_NORMAL = module.PARFILL
        module.PARFILL = Path(binary)


def pytest_runtest_setup(item):
    module = _test_cli()
    if item.name in AS_ANOTHER_USER and hasattr(module, "PARFILL_NORMAL"):
        module.PARFILL_INSTRUMENTED = module.PARFILL
        module.PARFILL = module.PARFILL_NORMAL


def pytest_runtest_teardown(item):
    module = _test_cli()
    if item.name in AS_ANOTHER_USER and hasattr(module, "PARFILL_INSTRUMENTED"):
        module.PARFILL = module.PARFILL_INSTRUMENTED
