"""Conformance run speed for ``make bench``: sequences per second through
the kernel's io-pgtable code and the model, one process (``make
conformance`` uses every core)."""

from __future__ import annotations

import time


def bench(n=200):
    """``n`` sequences of each format against linux-source-6.12."""
    from conformance import build, run
    try:
        binary = str(build.ensure("6.12"))
    except build.Missing as e:
        return {"conformance": f"n/a: {e}"}
    t0 = time.perf_counter()
    seqs = ops = 0
    for fmt in ("lpae", "v7s"):
        st = run.run_chunk(("6.12", fmt, 424242, n, binary, "v6.12"))
        seqs += st["sequences"]
        ops += st["ops"]
    dt = time.perf_counter() - t0
    return {"conformance_seq_per_s": seqs / dt, "conformance_ops_per_s": ops / dt}
