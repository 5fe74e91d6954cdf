"""Reliability test bed for retier: a fault-injecting storage proxy and an Event Grid stand-in.

Used by tests/test_faults.py, tests/test_disorder.py and bench/bench_faults.py, bench_load.py.
Not part of the Function app (.funcignore leaves it out) nor of the retier wheel.
"""
