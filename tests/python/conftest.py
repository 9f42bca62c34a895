"""Shared fixtures: the sequential reference, resource accounting, Ctrl-C
that works when the suite is started with SIGINT ignored, and cleanup of
child processes."""
import os
import signal
import subprocess

import numpy as np
import pytest

from references import dev_shm_in_use


def reference(func, shape, dtype):
    """The SPEC's sequential reference: a[idx] = func(*idx) for every idx."""
    a = np.empty(shape, dtype)
    for idx in np.ndindex(*shape):
        a[idx] = func(*idx)
    return a


def children():
    """PIDs of this process's live children (and zombies), found by their
    parent pid: a child forked by a thread that has exited is reparented to
    another thread, and reading each thread's /proc children list can miss
    it while that happens."""
    me, pids = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == me:
            pids.append(int(name))
    return sorted(pids)


def shared_mappings():
    """parfill's shared memory: shared anonymous mappings (control blocks),
    and mappings of its memfds, shared while a fill runs and private once a
    result is returned (``/memfd:parfill (deleted)``)."""
    with open("/proc/self/maps") as f:
        return sorted(line.split()[0] for line in f
                      if (line.split()[1][3] == "s" and "/dev/zero" in line)
                      or "/memfd:parfill" in line)


def resources():
    return {
        "fds": sorted(os.listdir("/proc/self/fd")),
        "children": children(),
        "shared_mappings": shared_mappings(),
        "threads": len(os.listdir("/proc/self/task")),
        "dev_shm": dev_shm_in_use(),
    }


@pytest.fixture
def no_leaks():
    """Asserts the test leaves no fd, child, shared mapping, thread or /dev/shm
    entry behind. The test must drop the arrays it got (they own a mapping)."""
    import gc
    import parfill
    # The thread pool is created on first use and then persists by design;
    # OpenBLAS stops its own threads in a fork handler, so fork once first.
    # translate="never": these must really start the thread pool and fork.
    parfill.populate(lambda i: i, 10, backend="threads", workers=2,
                     translate="never")
    parfill.populate(lambda i: i, 10, backend="processes", workers=2,
                     translate="never")
    parfill.populate("i", 10, workers=2)  # the native pool (translated fills)
    gc.collect()  # arrays held by earlier tracebacks
    before = resources()
    yield
    gc.collect()
    after = resources()
    # A leak is what the test added. Pool threads above the pool's base size
    # exit after a few idle seconds (pool.c), and what an earlier test left
    # exiting (its children, their pidfds) may go meanwhile: fewer threads,
    # or an entry gone, is no leak.
    assert after["threads"] <= before["threads"], (before, after)
    added = {k: sorted(set(after[k]) - set(before[k]))
             for k in after if k != "threads"}
    assert not any(added.values()), (added, before, after)


@pytest.fixture(autouse=True)
def default_sigint():
    """Python's own SIGINT handler for every test, restored afterwards.

    A suite started with SIGINT ignored (a background job of a script,
    `nohup`, `trap "" INT`) inherits SIG_IGN, and then Python installs no
    handler: a test that sends SIGINT to itself would see nothing, and its
    children would inherit SIG_IGN too. With a handler installed here, the
    children's exec resets SIGINT to the default, so child interpreters
    install theirs (child scripts also install it explicitly)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread: nothing to do
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stop_process(proc, *pids):
    """Kills `proc` (a Popen) and the processes `pids` (its workers), then
    reaps `proc`: for `finally` blocks, so a failing test leaves nothing
    running. Safe to call on processes that already ended."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if proc is None:
        return
    if proc.poll() is None:
        proc.kill()
    try:
        proc.communicate(timeout=10)
    except (subprocess.TimeoutExpired, ValueError, OSError):
        pass
