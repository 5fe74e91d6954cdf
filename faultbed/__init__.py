"""Reliability test bed for retier: a fault-injecting storage proxy and an Event Grid stand-in.

Used by tests/test_faults.py, tests/test_disorder.py and bench/bench_faults.py, bench_load.py;
bench/delay_proxy.py and bench_sweep.py take its connection-string helpers.
Not part of the Function app (.funcignore leaves it out) nor of the retier wheel.
"""
