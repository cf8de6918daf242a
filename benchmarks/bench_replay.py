"""Replay at scale: events/s, peak memory, and time against awk.

Generates an ftrace log with :mod:`gen_log` (a VFIO guest's RAM, then
streaming DMA), replays it in a child process (so its peak resident memory
is its own) and summarises the same file with a plain awk one-liner that
counts the events and sums their sizes: the floor any reader of the log
pays. Figures: events/s, peak memory (MiB), replay CPU seconds / awk CPU
seconds (target <= 5), each the best of three runs (one from 5M events).

    python benchmarks/bench_replay.py                 # 1M events
    python benchmarks/bench_replay.py --events 10000000
    python benchmarks/bench_replay.py --log FILE      # a log of your own

``make bench`` records the 1M figures (best of three) and the 10M ones (a
1.4 GB file, one run; ``make bench`` with ``--quick`` skips it). Memory must not grow with the log: the
replay streams it, so 10M events should peak near where 1M does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: the awk summary: events and the bytes they name
AWK = ('/IOMMU:/ { n++; for (i = 1; i <= NF; i++) if ($i ~ /^size=/) '
       's += substr($i, 6) } END { print n, s }')

_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from iommu_viz.ingest import replay
t0, c0 = time.perf_counter(), time.process_time()
r = replay({log!r}, progress=False)
t1, c1 = time.perf_counter(), time.process_time()
# VmHWM is this image's own peak; ru_maxrss keeps the peak of the process
# before exec, i.e. of the parent that forked it (make bench's, hundreds
# of MiB after the in-process benchmarks)
try:
    with open("/proc/self/status") as f:
        peak = next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"events": r.summary.events, "wall_s": t1 - t0,
                  "cpu_s": c1 - c0, "mapped": r.summary.mapped,
                  "peak_rss_kib": peak}}))
"""


def _child_cpu():
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def run_awk(log):
    """(wall seconds, CPU seconds, output) of the awk summary."""
    awk = shutil.which("mawk") or shutil.which("awk")
    c0, t0 = _child_cpu(), time.perf_counter()
    out = subprocess.run([awk, AWK, str(log)], capture_output=True,
                         text=True, check=True).stdout.split()
    return time.perf_counter() - t0, _child_cpu() - c0, out, \
        os.path.basename(awk)


def run_replay(log):
    """The child's figures: events, wall/CPU seconds of replay(), peak
    resident memory (KiB, Python and the imports included)."""
    code = _CHILD.format(root=str(ROOT), log=str(log))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench(events=None, log=None, quiet=False, repeat=3) -> dict:
    """Figures for a generated log of ``events`` events (or ``log``): the
    best of ``repeat`` runs of each (the machine may be shared; the least
    disturbed run is the one that measures the code)."""
    tmp = None
    try:
        if log is None:
            sys.path.insert(0, str(HERE))
            from gen_log import generate
            fd, tmp = tempfile.mkstemp(suffix=".log")
            with os.fdopen(fd, "w") as f:
                generate(f, events)
            log = tmp
        aws = [run_awk(log) for _ in range(repeat)]
        aw_wall = min(a[0] for a in aws)
        aw_cpu = min(a[1] for a in aws)
        aw_out, awk = aws[0][2], aws[0][3]
        rps = [run_replay(log) for _ in range(repeat)]
        rp = dict(rps[0])
        rp["wall_s"] = min(r["wall_s"] for r in rps)
        rp["cpu_s"] = min(r["cpu_s"] for r in rps)
        rp["peak_rss_kib"] = max(r["peak_rss_kib"] for r in rps)
        n = rp["events"]
        fig = {
            "events": n,
            "log_mib": os.path.getsize(log) / (1 << 20),
            "events_per_s": n / rp["wall_s"],
            "replay_wall_s": rp["wall_s"],
            "replay_cpu_s": rp["cpu_s"],
            "peak_rss_mib": rp["peak_rss_kib"] / 1024,
            "awk": awk,
            "awk_wall_s": aw_wall,
            "awk_cpu_s": aw_cpu,
            "x_awk_cpu": rp["cpu_s"] / aw_cpu,
            "x_awk_wall": rp["wall_s"] / aw_wall,
            "awk_events": int(aw_out[0]) if aw_out else 0,
        }
        if not quiet:
            print(f"{n:,} events ({fig['log_mib']:.0f} MiB): "
                  f"{fig['events_per_s']:,.0f} events/s, peak "
                  f"{fig['peak_rss_mib']:.0f} MiB; replay "
                  f"{rp['cpu_s']:.2f} s CPU vs {awk} {aw_cpu:.2f} s: "
                  f"{fig['x_awk_cpu']:.1f}x (wall {fig['x_awk_wall']:.1f}x)")
        return fig
    finally:
        if tmp is not None:
            os.unlink(tmp)


def results_for_run(n=1_000_000, prefix="replay_scale", repeat=3) -> dict:
    """What benchmarks/run.py records (``make bench``), keys under
    ``prefix``: ``replay_scale`` for 1M events, ``replay_scale_10m`` for
    10M."""
    f = bench(n, quiet=True, repeat=repeat)
    return {f"{prefix}_events": f["events"],
            f"{prefix}_events_per_s": f["events_per_s"],
            f"{prefix}_peak_rss_mib": f["peak_rss_mib"],
            f"{prefix}_x_awk_cpu": f["x_awk_cpu"],
            f"{prefix}_x_awk_wall": f["x_awk_wall"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--log", help="replay this log instead of a generated one")
    ap.add_argument("--repeat", type=int, default=None,
                    help="runs of each, the best kept (default 3, 1 from "
                         "5M events)")
    ap.add_argument("-o", "--output", help="also write the figures as JSON")
    a = ap.parse_args(argv)
    repeat = a.repeat or (1 if a.events >= 5_000_000 and not a.log else 3)
    fig = bench(a.events, a.log, repeat=repeat)
    if a.output:
        Path(a.output).write_text(json.dumps(fig, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
