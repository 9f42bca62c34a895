"""A bounded run of the translator's differential fuzzer
(tests/python/translate_fuzz.py; ``make fuzz-translate`` runs a long one):
thousands of random functions, translated, against the sequential loop.
In a child process, so that a crash is a failure, not the end of the suite;
killed in ``finally`` whatever happens."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import stop_process

FUZZ = os.path.join(os.path.dirname(__file__), "translate_fuzz.py")
SECONDS = float(os.environ.get("PARFILL_TRANSLATE_FUZZ_SECONDS", "45"))


def test_translate_fuzz_bounded_run():
    proc = subprocess.Popen(
        [sys.executable, FUZZ, "--seconds", str(SECONDS), "--cases", "20000",
         "--seed", "20251"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=SECONDS + 120)
    finally:
        stop_process(proc)
    assert proc.returncode == 0, out[-6000:]
    counts = json.loads(out.strip().splitlines()[-1])
    assert counts["differences"] == 0, out[-6000:]
    # Not a speed bound: that the run did real work of each kind.
    assert counts["cases"] >= 500, counts
    assert counts["translated"] >= counts["cases"] // 2, counts
    assert counts["bails"] > 0 and counts["values"] > 0, counts
