"""Scenario files: the seed file's outcome matrix over 16 configurations
(4 kernels x BBML 0/2 x strict/lazy), as `iommu-viz run seed --matrix
kernel=v4.20,v5.4,v6.12,v6.13 bbml=0,2 strict=yes,no` computes it,
parsing included."""

from __future__ import annotations

import statistics
import time

AXES = ["kernel=v4.20,v5.4,v6.12,v6.13", "bbml=0,2", "strict=yes,no"]


def bench_scenarios(rounds):
    from iommu_viz import scenarios
    text = scenarios.named("seed").text
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        m = scenarios.matrix(scenarios.parse(text), AXES)
        samples.append((time.perf_counter() - t0) * 1000)
    assert len(m.configurations) == 16
    return {"scenario_matrix_16_ms": statistics.median(samples)}
