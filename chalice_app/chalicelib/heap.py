"""Keep the garbage collector off what an instance's cold start built.

A cold start loads botocore's service models and endpoint rules, the clients and
the templates: some 140,000 tracked objects in a fan-out instance, alive as long
as it is. CPython walks all of them in every full collection (38 ms for the
imports and clients alone on a quiet core, 110 to 150 ms in a busy instance)
holding the GIL: every send thread waits, and the sends whose slots passed
meanwhile then go out together, above the rate for a moment (``bench/fanout.py
e2e``). Frozen, they are never walked again; later full collections walk only
what came since.

Twice, each the first time it is reached in the process: once the sending stages
are built (``STAGES_BUILT``: the imports, clients and models, before any send), and
after the first invocation (``FIRST_INVOCATION``: what its first calls cached).
Only the young generations are collected first: a full collection there cost as
much as the ones avoided (85 to 150 ms in a busy instance), and the little cyclic
garbage already in the oldest is frozen with the rest, never freed, once. Only
then: freezing after every invocation would freeze the cyclic garbage of objects
dropped later (an evicted template) again and again.
"""

from __future__ import annotations

import gc

STAGES_BUILT = "the sending stages built"
FIRST_INVOCATION = "the first invocation"

_reached: set[str] = set()


def freeze_once(moment: str) -> None:
    """Collect the young generations, then freeze what is left, the first time ``moment``
    is reached."""
    if moment in _reached:
        return
    _reached.add(moment)
    gc.collect(1)
    gc.freeze()
