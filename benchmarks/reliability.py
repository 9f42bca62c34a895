"""Trial counts for parfill's reliability guarantees (issue 5's targets).

    .venv/bin/python -m benchmarks.reliability    # from the repository root

- retries: 20 calls, each losing two workers (os._exit, SIGKILL) mid-chunk,
  with retries=2: how many return the exact result;
- death without retries: 100 calls whose worker dies: how many raise
  WorkerDiedError, and the slowest time to the exception;
- Ctrl-C: 5 runs of a long call interrupted with SIGINT: the worst latency
  to KeyboardInterrupt and whether any worker outlived it.
"""
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

import parfill


def retries_trials(trials=20):
    ok = 0
    for t in range(trials):
        with tempfile.TemporaryDirectory() as d:
            parent = os.getpid()

            def func(i, d=d):
                if os.getpid() != parent and i in (111, 333):
                    marker = os.path.join(d, str(i))
                    if not os.path.exists(marker):
                        open(marker, "w").close()
                        if i == 111:
                            os._exit(1)
                        os.kill(os.getpid(), signal.SIGKILL)
                return i * 3
            got = parfill.populate(func, 500, np.int64, backend="processes",
                                   workers=2, chunk=10, retries=2)
            ok += bool(np.array_equal(got, np.arange(500) * 3)
                       and len(os.listdir(d)) == 2)
    return ok, trials


def death_trials(trials=100):
    ok, worst = 0, 0.0
    parent = os.getpid()

    def func(i):
        if i == 40 and os.getpid() != parent:
            os._exit(9)
        time.sleep(0.0002)
        return i
    for _ in range(trials):
        start = time.monotonic()
        try:
            parfill.populate(func, 200, backend="processes", workers=2,
                             chunk=5)
        except parfill.WorkerDiedError:
            elapsed = time.monotonic() - start
            worst = max(worst, elapsed)
            ok += elapsed < 1.0
    return ok, trials, worst


CHILD = textwrap.dedent("""
    import os, signal, sys, time, parfill
    # Started from a script with SIGINT ignored, Python installs no handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    def slow(i):
        if i == 0:
            print("READY", flush=True)
        time.sleep(0.005)
        return os.getpid()
    try:
        parfill.populate(slow, 10**6, backend="processes", workers=2, chunk=1)
    except KeyboardInterrupt:
        print("INTERRUPTED", time.monotonic(), flush=True)
""")


def ctrl_c_trials(trials=5):
    worst, leftovers = 0.0, 0
    for _ in range(trials):
        p = subprocess.Popen([sys.executable, "-c", CHILD],
                             stdout=subprocess.PIPE, text=True)
        kids = []
        try:
            assert p.stdout.readline().strip() == "READY"
            time.sleep(0.3)
            kids = subprocess.run(["pgrep", "-P", str(p.pid)],
                                  capture_output=True, text=True).stdout.split()
            sent = time.monotonic()
            p.send_signal(signal.SIGINT)
            out, _ = p.communicate(timeout=10)
            worst = max(worst, float(out.split()[-1]) - sent)
            leftovers += sum(os.path.exists(f"/proc/{k}") for k in kids)
        finally:  # never leave the child or its workers running
            for k in kids:
                try:
                    os.kill(int(k), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            if p.poll() is None:
                p.kill()
            p.wait()
    return worst, leftovers, trials


if __name__ == "__main__":
    ok, n = retries_trials()
    print(f"retries=2, two worker deaths per call: {ok}/{n} exact results")
    ok, n, worst = death_trials()
    print(f"worker death, no retries: {ok}/{n} WorkerDiedError within 1 s "
          f"(slowest {worst * 1000:.1f} ms)")
    worst, leftovers, n = ctrl_c_trials()
    print(f"Ctrl-C: worst of {n} runs {worst * 1000:.1f} ms to "
          f"KeyboardInterrupt, {leftovers} workers left behind")
