"""A bounded adversarial run (tests/python/adversarial.py): random hostile
calls, each checked against the sequential loop, NumPy or the documented
error, in a child process watched for crashes, hangs and leaks. The long run
is `make adversarial`."""
import adversarial


def test_adversarial_run_finds_no_crash_hang_leak_or_mismatch():
    messages = []
    counts, failures = adversarial.run(cases=250, seed=20261201,
                                       log=messages.append)
    assert sum(counts.values()) == 250
    assert not failures, "\n\n".join(messages)
