"""Keep a stand-in server's garbage collections short while it holds a big heap.

A server holding a 100,000-recipient job's records (moto's ledger items, the
fake SES's events and mails: millions of objects) stops for a full collection
each time its heap grows by a quarter, longer as it grows: 0.24 s for 300,000
ledger items on a quiet core. Requests wait meanwhile and are then read in a
burst, which ``bench/fanout.py e2e`` counted as a second without a send at SES
followed by 699 in one second at R = 500. SES does not stop like that.

Every ``interval_s`` the young generations are collected and everything left
alive is frozen (``gc.freeze``): never scanned again, so a full collection
walks only what came since. The cost is cyclic garbage that had already reached
the oldest generation: frozen, never freed, for a server that lives as long as
one test or benchmark.
"""

from __future__ import annotations

import gc
import threading


def freeze_long_lived(interval_s: float = 5.0) -> threading.Event:
    """Start freezing what is alive every ``interval_s`` in a daemon thread; set the
    returned event to stop."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval_s):
            gc.collect(1)
            gc.freeze()

    threading.Thread(target=run, name="freeze-long-lived", daemon=True).start()
    return stop
