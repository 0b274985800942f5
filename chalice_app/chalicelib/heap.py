"""Keep the garbage collector off what an instance's cold start built.

A cold start loads botocore's service models and endpoint rules, the clients and
the templates: some 90,000 tracked objects that live as long as the instance.
CPython walks all of them in every full collection, about 40 ms on a quiet core
and over 100 ms on a busy one, holding the GIL: every send thread waits, and the
sends whose slots passed meanwhile then go out together, above the rate for a
moment (``bench/fanout.py e2e``). Frozen once, after the first invocation, they
are never walked again; later full collections walk only what came since.

Only the first invocation's survivors are frozen: freezing after every one would
also freeze the cyclic garbage of objects dropped later (an evicted template),
which the collector could then never free.
"""

from __future__ import annotations

import gc

_frozen = False


def freeze_cold_start() -> None:
    """Collect, then freeze what is alive; once per process, later calls do nothing."""
    global _frozen
    if _frozen:
        return
    _frozen = True
    gc.collect()
    gc.freeze()
