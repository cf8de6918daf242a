"""iommu-viz benchmarks: ``make bench`` (or ``python benchmarks/run.py``).

Prints a table of figures against the budgets of the performance issue and
writes them to ``benchmarks/results.json``. These are measurements, not
tests: nothing here fails the build. ``--quick`` uses smaller sizes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from iommu_viz import LpaeTable, SZ_4K, SZ_2M  # noqa: E402
from bench_scenarios import bench_scenarios  # noqa: E402
from benchmarks import bench_conformance  # noqa: E402
from bench_browser import BUDGETS as BROWSER, bench_browser  # noqa: E402


def _median_p95(samples):
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def bench_pgtable(n):
    """Map ``n`` 4K pages then unmap them, straight into the LPAE model."""
    pt = LpaeTable(kernel="v5.4")
    base = 0x100000000
    gc.collect()
    t0 = time.perf_counter()
    for i in range(n):
        pt.map(i * SZ_4K, base + i * SZ_4K, SZ_4K)
    t1 = time.perf_counter()
    for i in range(n):
        pt.unmap(i * SZ_4K, SZ_4K)
    t2 = time.perf_counter()
    # memory per mapped page, measured on a second table
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    pt2 = LpaeTable(kernel="v5.4")
    for i in range(n):
        pt2.map(i * SZ_4K, base + i * SZ_4K, SZ_4K)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del pt2
    return {
        "pgtable_map_per_s": n / (t1 - t0),
        "pgtable_unmap_per_s": n / (t2 - t1),
        "pgtable_ops_per_s": 2 * n / (t2 - t0),
        "pgtable_bytes_per_page": (after - before) / n,
    }


def bench_replay(n):
    """Replay an ``n``-event ftrace log (generated) through iommu_viz.ingest."""
    try:
        from iommu_viz.ingest import replay
    except ImportError:
        return {"replay": "n/a: iommu_viz.ingest not built"}
    lines = _synthetic_log(n)
    gc.collect()
    t0 = time.perf_counter()
    r = replay(lines, granule=SZ_4K, kernel="v5.4")
    t1 = time.perf_counter()
    mapped_pages = max(1, getattr(r.summary, "peak_mapped", 0) // SZ_4K)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    r2 = replay(lines, granule=SZ_4K, kernel="v5.4")
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    final_pages = sum(size for _, _, size, _, _ in r2.table.mappings()) // SZ_4K
    table_bytes = sum(len(t.ptes) * 8 + 100 for t in r2.table._tables.values())
    del r2
    return {
        "replay_events": n,
        "replay_events_per_s": n / (t1 - t0),
        "replay_peak_mapped_pages": mapped_pages,
        "replay_bytes_per_page_traced": (after - before) / max(1, final_pages),
        "replay_table_bytes_per_page": table_bytes / max(1, final_pages),
    }


def _replay_scale(n, quick):
    """benchmarks/bench_replay.py: a generated n-event file replayed in a
    child process, against awk; a full run adds a 10 x n file, run once
    (that the replay streams: its peak memory stays near the n run's)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_replay import results_for_run
    res = results_for_run(n)
    if not quick:
        res.update(results_for_run(10 * n, prefix="replay_scale_10m",
                                   repeat=1))
    return res


def _synthetic_log(n):
    """A VM-start-like ftrace log: 4K maps of RAM, with a quarter unmapped
    again, in the v5.x TP_printk format behind an ftrace prefix."""
    out = []
    pre = "qemu-kvm-4575 [008] ....... 438.308478: "
    mapped = n * 3 // 4
    for i in range(mapped):
        iova = 0x100000000 + i * SZ_4K
        out.append(f"{pre}map: IOMMU: iova=0x{iova:016x} paddr=0x{0x200000000 + i * SZ_4K:016x} size=4096")
    for i in range(n - mapped):
        iova = 0x100000000 + i * SZ_4K * 3
        out.append(f"{pre}unmap: IOMMU: iova=0x{iova:016x} size=4096 unmapped_size=4096")
    return out


def bench_views(rounds):
    """Tree, TLB and timeline for one step of the seed scenario, and the
    512-entry split table's tree including the dot layout."""
    try:
        from iommu_viz import scenarios
        from iommu_viz.render import tree, tlb, timeline
        from iommu_viz.render.export import to_svg
    except ImportError as e:
        return {"views": f"n/a: {e}"}
    sim = scenarios.run("seed", kernel="v5.4", fast=True)
    step = len(sim.events) // 2
    st = sim.state_at(step)
    prev = sim.state_at(step - 1)
    samples = []
    for i in range(rounds + 1):
        t0 = time.perf_counter()
        tree.tree_dot(st.pgtable, prev=prev.pgtable, tlb=st.tlb)
        tlb.tlb_html(st)
        fig = timeline.timeline_figure(sim, upto=step)
        to_svg(fig)
        t1 = time.perf_counter()
        if i:
            samples.append((t1 - t0) * 1000)
    med, p95 = _median_p95(samples)
    pt = LpaeTable(kernel="v5.4")
    pt.map(0x40000000, 0x80000000, SZ_2M)
    pt.unmap(0x40001000, SZ_4K)
    snap = pt.snapshot()
    split = []
    for i in range(max(5, rounds // 4) + 1):
        t0 = time.perf_counter()
        tree.tree_svg(snap)
        t1 = time.perf_counter()
        if i:
            split.append((t1 - t0) * 1000)
    return {"views_step_median_ms": med, "views_step_p95_ms": p95,
            "split_tree_svg_median_ms": statistics.median(split)}


def bench_explorer(rounds):
    """Explorer step and toggle: model re-run plus all three views redrawn,
    through the widget's own code path (headless). Its caches of runs and
    of rendered steps are emptied before each interaction, so every figure
    is a full redraw (a cached step is instant)."""
    try:
        from iommu_viz.widgets import Explorer
    except ImportError as e:
        return {"explorer": f"n/a: {e}"}
    ex = Explorer("seed", kernel="v5.4", fast=True)
    steps, toggles = [], []
    n = len(ex.sim.events)
    for i in range(rounds):
        ex._renders.clear()
        target = (i * 7 + 1) % n
        t0 = time.perf_counter()
        ex.step = target
        steps.append((time.perf_counter() - t0) * 1000)
    flips = [("split_sync", True), ("split_sync", None), ("strict", False),
             ("strict", True), ("speculate", True), ("speculate", False)]
    for i in range(rounds):
        name, value = flips[i % len(flips)]
        ex._runs.clear()
        t0 = time.perf_counter()
        ex.set_option(name, value)
        toggles.append((time.perf_counter() - t0) * 1000)
    sm, sp = _median_p95(steps)
    tm, tp = _median_p95(toggles)
    return {"explorer_step_median_ms": sm, "explorer_step_p95_ms": sp,
            "explorer_toggle_median_ms": tm, "explorer_toggle_p95_ms": tp}


def bench_workbook():
    """Wall time to execute every notebook from a clean kernel."""
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as e:
        return {"workbook": f"n/a: {e}"}
    books = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if not books:
        return {"workbook": "n/a: no notebooks"}
    per = {}
    t0 = time.perf_counter()
    for nb_path in books:
        nb = nbformat.read(nb_path, as_version=4)
        t1 = time.perf_counter()
        NotebookClient(nb, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(nb_path.parent)}}).execute()
        per[nb_path.name] = time.perf_counter() - t1
    return {"workbook_s": time.perf_counter() - t0, "notebook_s": per}


BUDGETS = [
    ("pgtable_ops_per_s", ">=", 250_000, "map+unmap 4K pages, ops/s"),
    ("pgtable_bytes_per_page", "<=", 16, "bytes per mapped 4K page"),
    ("replay_events_per_s", ">=", 250_000, "replay, events/s"),
    ("replay_table_bytes_per_page", "<=", 16, "replay, table bytes/page"),
    ("replay_bytes_per_page_traced", None, None,
     "replay, all bytes/page (log kept)"),
    ("replay_scale_events_per_s", None, None, "replay 1M-event file, events/s"),
    ("replay_scale_peak_rss_mib", None, None, "replay 1M-event file, peak MiB"),
    ("replay_scale_x_awk_cpu", "<=", 5, "replay vs awk summary, CPU x"),
    ("replay_scale_10m_events_per_s", None, None,
     "replay 10M-event file, events/s"),
    ("replay_scale_10m_peak_rss_mib", None, None,
     "replay 10M-event file, peak MiB"),
    ("replay_scale_10m_x_awk_cpu", "<=", 5, "replay 10M vs awk, CPU x"),
    ("views_step_median_ms", "<=", 100, "tree+TLB+timeline, median ms"),
    ("split_tree_svg_median_ms", "<=", 200, "512-entry tree with dot, ms"),
    ("explorer_step_median_ms", "<=", 100, "explorer step, median ms"),
    ("explorer_step_p95_ms", "<=", 250, "explorer step, p95 ms"),
    ("explorer_toggle_median_ms", "<=", 100, "explorer toggle, median ms"),
    ("explorer_toggle_p95_ms", "<=", 250, "explorer toggle, p95 ms"),
    ("workbook_s", "<=", 60, "whole workbook, s"),
    ("scenario_matrix_16_ms", "<=", 1000, "seed matrix, 16 configs, ms"),
    ("conformance_seq_per_s", ">=", 35, "conformance, sequences/s, 1 core"),
] + BROWSER


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    ap.add_argument("--only", default="", help="comma list: pgtable,replay,"
                    "replay_scale,views,explorer,workbook,scenarios,conformance,browser")
    args = ap.parse_args(argv)
    n = 100_000 if args.quick else 1_000_000
    rounds = 10 if args.quick else 50
    only = set(filter(None, args.only.split(",")))
    results = {"machine": f"{platform.machine()} {os.cpu_count()} cores, "
                          f"Python {platform.python_version()}",
               "quick": args.quick}
    for name, fn in (("pgtable", lambda: bench_pgtable(n)),
                     ("replay", lambda: bench_replay(n)),
                     ("replay_scale", lambda: _replay_scale(n, args.quick)),
                     ("views", lambda: bench_views(rounds)),
                     ("explorer", lambda: bench_explorer(rounds)),
                     ("workbook", bench_workbook),
                     ("scenarios", lambda: bench_scenarios(rounds)),
                     ("conformance", bench_conformance.bench),
                     ("browser", lambda: bench_browser(rounds))):
        if only and name not in only:
            continue
        print(f"... {name}", file=sys.stderr, flush=True)
        results.update(fn())
    print(f"{'figure':<34} {'value':>14} {'budget':>12}  ok")
    for key, op, limit, label in BUDGETS:
        v = results.get(key)
        if not isinstance(v, (int, float)):
            continue
        if op is None:      # a figure to know, with no budget
            print(f"{label:<34} {v:>14,.1f} {'-':>12}")
            continue
        ok = v >= limit if op == ">=" else v <= limit
        print(f"{label:<34} {v:>14,.1f} {op + ' ' + format(limit, ','):>12}  "
              f"{'yes' if ok else 'NO'}")
    for k, v in results.items():
        if isinstance(v, str) and k not in ("machine",):
            print(f"{k}: {v}")
    out = ROOT / "benchmarks" / "results.json"
    if only and out.exists():
        # a partial run updates its own figures and keeps the others
        results = {**json.loads(out.read_text()), **results}
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
