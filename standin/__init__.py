"""The local stand-in for AWS (moto on 127.0.0.1, Lambda played in-process) and the demo.

Used by ``make demo``, the tests and the benchmarks; not part of what an operator installs.
"""
