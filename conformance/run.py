"""The differential run: random sequences through the kernel's io-pgtable
code (the driver built by :mod:`conformance.build`) and through the model,
operation by operation.

    python -m conformance.run [--sequences N] [--jobs J] [--kernels 6.1,6.12]
                              [--formats lpae,v7s] [--seed S]

Prints a summary (sequences, operations compared, divergences, allow-listed
differences with their reasons) and exits 1 on any divergence, 2 when the
kernel sources or a compiler are missing (with what to install).

Compared for every operation: the return value, the TLB callbacks in order
(tlb_add_page with its gather, tlb_flush_walk, tlb_flush_all), the WARNs,
and after every map and unmap each descriptor reachable from the root.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

from . import build, gen
from .model import make_table, new_line, op_line, run_model, warn_tag

HERE = Path(__file__).resolve().parent
ALLOWLIST = HERE / "allowlist.txt"
#: the model era that each kernel source is compared with
ERAS = {"6.1": "v6.1", "6.12": "v6.12"}
CHUNK = 250
MAX_SHOWN = 3


def read_allowlist(path=ALLOWLIST) -> dict:
    """``name: reason`` lines (``#`` comments); the differences the
    comparison may accept, each by name."""
    out = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, reason = line.partition(":")
            out[name.strip()] = reason.strip()
    return out


def _kernel_events(lines):
    """Kernel event lines with each WARN reduced to the model's tag, WARNs
    first (their order against the callbacks is not compared)."""
    warns, rest = [], []
    for ln in lines:
        if ln.startswith("W "):
            _, func, cond = ln.split(" ", 2)
            warns.append(f"W {func} {warn_tag(func, cond)}")
        else:
            rest.append(ln)
    return sorted(warns) + rest


def run_chunk(args):
    """One worker's share: ``n`` sequences of ``fmt`` from ``seed`` through
    the driver for ``kver`` and through the model."""
    kver, fmt, seed, n, binary, era = args
    allow = read_allowlist()
    seqs = gen.sequences(seed, fmt, n)
    text = []
    for seq in seqs:
        cfg = seq[0][1]
        try:
            pt0 = make_table(cfg, era)
        except ValueError:
            pt0 = None
        text.append(new_line(cfg, pt0))
        text.extend(op_line(op) for op in seq[1:])
    text.append("")
    proc = subprocess.run([binary], input="\n".join(text), capture_output=True,
                          text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"driver {binary} exited {proc.returncode}: "
                           f"{proc.stderr[-500:]}")
    klines = proc.stdout.splitlines()
    stats = {"sequences": 0, "ops": 0, "divergences": 0, "allowed": {},
             "covered": {}, "shown": []}
    pos = 0
    for k, seq in enumerate(seqs):
        pos, div = compare_one(seq, era, klines, pos, allow, stats)
        stats["sequences"] += 1
        if div:
            stats["divergences"] += 1
            if len(stats["shown"]) < MAX_SHOWN:
                div.update(kernel=kver, fmt=fmt, seed=seed, seq=k)
                stats["shown"].append(div)
    return stats


def compare_one(seq, era, klines, pos, allow, stats):
    """compare_sequence, with the driver position carried in a list."""
    box = [pos]

    def take():
        start = box[0]
        p = start
        while not klines[p].startswith("="):
            p += 1
        box[0] = p + 1
        return klines[start:p + 1]

    div = _compare(seq, era, take, allow, stats)
    return box[0], div


def _compare(seq, era, take, allow, stats):
    cfg = seq[0][1]
    got = take()
    stats["ops"] += 1
    try:
        pt = make_table(cfg, era)
        why = ""
    except ValueError as e:
        pt, why = None, str(e)
    if (pt is None) != (got[-1] == "= fail"):
        for _ in seq[1:]:
            take()
        return {"op": seq[0], "index": 0, "config": cfg, "ops": [],
                "want": [f"model refuses the table: {why}" if pt is None
                         else "= ok"], "got": got}
    if pt is None:
        for _ in seq[1:]:
            take()
        return None
    if getattr(pt, "concatenated", False):
        _count(stats, "concatenated stage-2 pgd (sequences)")
    for i, op in enumerate(seq[1:], 1):
        got = take()
        ntables = pt.table_count
        kind, want = run_model(pt, op)
        stats["ops"] += 1
        if kind == "err":
            errno = want[0]
            if errno == 34 and "range-end" in allow and _crosses_end(cfg, op):
                # the kernel checks only where the run starts: what it did
                # is not the model's, so the rest of the sequence is skipped
                stats["allowed"]["range-end"] = stats["allowed"].get("range-end", 0) + 1
                for _ in seq[i + 1:]:
                    take()
                return None
            if op[0] == "M":
                # before refusing, the kernel may WARN and walk-flush the
                # tables it freed; a leaf invalidation would be a divergence
                parts = got[-1].split()
                ok = len(parts) == 3 and parts[1] == str(-errno) and all(
                    g[0] in "WF" for g in got[:-1])
                rule = "refused-map"
            else:
                ok = got[-1] == "= 0" and all(g.startswith("W ") for g in got[:-1])
                rule = "refused-unmap"
            if ok and rule in allow:
                stats["allowed"][rule] = stats["allowed"].get(rule, 0) + 1
                continue
            want = [f"(the model refuses: -{errno})"]
        else:
            got_n = _kernel_events(got[:-1]) + got[-1:]
            want_n = sorted(w for w in want if w.startswith("W ")) + \
                [w for w in want if not w.startswith("W ")]
            if got_n == want_n:
                _cover(stats, cfg, op, got, pt.table_count - ntables)
                continue
        for _ in seq[i + 1:]:
            take()
        return {"op": op, "index": i, "want": want, "got": got, "config": cfg,
                "ops": seq[1:i + 1]}
    return None


def _count(stats, what, n=1):
    stats["covered"][what] = stats["covered"].get(what, 0) + n


def _cover(stats, cfg, op, got, new_tables):
    """Count the interesting cases an agreed operation exercised."""
    k = op[0]
    events = got[:-1]
    if k == "U":
        if new_tables > 0:
            _count(stats, "split of a block")
            if op[3] > 1:
                _count(stats, "split, page count > 1")
        if any(e[0] == "F" and e.split()[2] == e.split()[3] for e in events):
            # arm_v7s_split_cont invalidates the whole group (size ==
            # granule); a freed table's walk flush has a smaller granule
            _count(stats, "split of a v7s CONT group")
        if any(e[0] == "W" for e in events):
            _count(stats, "unmap that found nothing (WARN)")
        if op[4] == "q" and got[-1] != "= 0":
            _count(stats, "unmap with a queued gather")
    elif k == "M":
        if any(e[0] == "F" for e in events):
            _count(stats, "leaf written over a table (walk flush)")
        if op[4] > 1:
            _count(stats, "map of a run (count > 1)")
    elif k == "P" and op[1] >> cfg["ias"] and got[-1] != "= 0":
        _count(stats, "iova_to_phys beyond ias, translated")


def _crosses_end(cfg, op) -> bool:
    """A map or unmap run that starts inside the input (and, for a map,
    output) range and ends beyond it."""
    top = 1 << cfg["ias"]
    if op[0] == "M":
        _, iova, paddr, size, count, _ = op
        end = size * count
        pa_top = 1 << cfg["oas"]
        return (iova < top and paddr < pa_top) and (
            iova + end > top or paddr + end > pa_top)
    if op[0] == "U":
        _, iova, size, count, _ = op
        return iova < top < iova + size * count
    return False


def format_divergence(d) -> str:
    cfg = d["config"]
    lines = [f"-- {d['kernel']} {d['fmt']} seed {d['seed']} sequence {d['seq']}, "
             f"op {d['index']}: {d['op']}",
             f"   config {cfg}"]
    if d["ops"]:
        lines.append("   ops: " + "; ".join(op_line(o) for o in d["ops"]
                                            if o[0] != "D"))
    want, got = d["want"], d["got"]
    if len(want) > 40 or len(got) > 40:
        import difflib
        lines += ["   " + x for x in difflib.unified_diff(
            [str(w) for w in want], got, "model", "kernel", lineterm="", n=1)][:14]
    else:
        lines.append("   model : " + " | ".join(str(w) for w in want))
        lines.append("   kernel: " + " | ".join(got))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance.run",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--sequences", type=int, default=10000,
                    help="sequences per kernel source and format")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--kernels", default="6.1,6.12")
    ap.add_argument("--formats", default="lpae,v7s")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--era", default=None,
                    help="compare every source with this model era instead "
                    "of its own (to show what tells the eras apart)")
    args = ap.parse_args(argv)
    kernels = args.kernels.split(",")
    try:
        binaries = build.ensure_all(kernels)
    except build.Missing as e:
        print(f"conformance: {e}")
        return 2
    allow = read_allowlist()
    work = []
    for k in kernels:
        for fmt in args.formats.split(","):
            left, seed = args.sequences, args.seed * 100000
            while left > 0:
                n = min(CHUNK, left)
                work.append((k, fmt, seed, n, str(binaries[k]),
                             args.era or ERAS[k]))
                seed += 1
                left -= n
    t0 = time.perf_counter()
    results = {}
    with Pool(max(1, args.jobs)) as pool:
        for (k, fmt, *_), st in zip(work, pool.imap(run_chunk, work)):
            acc = results.setdefault((k, fmt), {"sequences": 0, "ops": 0,
                                                "divergences": 0, "allowed": {},
                                                "covered": {}, "shown": []})
            for key in ("sequences", "ops", "divergences"):
                acc[key] += st[key]
            for what in ("allowed", "covered"):
                for r, c in st[what].items():
                    acc[what][r] = acc[what].get(r, 0) + c
            acc["shown"] += st["shown"][:MAX_SHOWN - len(acc["shown"])]
    elapsed = time.perf_counter() - t0
    total = {"sequences": 0, "ops": 0, "divergences": 0}
    print(f"conformance: the kernel's io-pgtable code against the model "
          f"({elapsed:.1f} s, {args.jobs} jobs)")
    for (k, fmt), acc in sorted(results.items()):
        allowed = sum(acc["allowed"].values())
        print(f"  linux-source-{k:<5} {fmt:<5} era {args.era or ERAS[k]:<6} "
              f"sequences {acc['sequences']:>6}  ops {acc['ops']:>8}  "
              f"divergences {acc['divergences']:>5}  allow-listed {allowed:>6}")
        print("      covered: " + ", ".join(
            f"{what} {n}" for what, n in sorted(acc["covered"].items())))
        for key in total:
            total[key] += acc[key]
        for d in acc["shown"]:
            print(format_divergence(dict(d, kernel=k, fmt=fmt)))
    print(f"  total: {total['sequences']} sequences, {total['ops']} operations "
          f"compared, {total['divergences']} divergences, "
          f"{total['sequences'] / elapsed:.0f} sequences/s")
    print(f"  allow-list ({ALLOWLIST.relative_to(HERE.parent)}):")
    for name, reason in allow.items():
        used = sum(acc["allowed"].get(name, 0) for acc in results.values())
        print(f"    {name} ({used} ops): {reason}")
    return 1 if total["divergences"] else 0


if __name__ == "__main__":
    sys.exit(main())
