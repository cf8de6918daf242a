"""Generate a plausible IOMMU map/unmap log, for examples and benchmarks.

The log imitates a VFIO guest on an SMMU host: QEMU first maps the guest's
RAM (contiguous pinned runs, 4 KiB to 2 MiB and a few larger, as
vfio_iommu_type1 hands them to iommu_map), then a device driver's streaming
DMA maps and unmaps buffers (mostly 4 KiB, some up to 64 KiB) from an IOVA
window, freeing them a little later. A few unrelated trace lines are mixed
in. Output is deterministic for a given seed.

    python benchmarks/gen_log.py -n 1000000 -o /tmp/iommu-1M.log
    python benchmarks/gen_log.py --vm-start -o examples/vm-start.log
    python benchmarks/gen_log.py --bench            # generate 1M and time it

Styles: ``ftrace`` (v5.4+ ``iova=A - B``), ``ftrace-old`` (up to v5.3),
``pr_debug`` (dmesg with iommu.c's dynamic debug on).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time

SZ_4K = 1 << 12
SZ_2M = 1 << 21
GUEST_RAM_IOVA = 0x40000000          # where the guest's RAM starts (iova)
DMA_WINDOW = (0xF0000000, 0x100000000)


class Writer:
    """Formats events in one log style, with an ftrace-like prefix."""

    def __init__(self, out, style, rng):
        self.out = out
        self.style = style
        self.rng = rng
        self.t = 438.308478
        self.events = 0
        self.task = "qemu-kvm-4575"
        self.cpu = 8

    def _prefix(self):
        self.t += self.rng.randint(1, 40) * 1e-6
        return f"{self.task:>16} [{self.cpu:03d}] ....... {self.t:12.6f}: "

    def _dmesg(self):
        self.t += self.rng.randint(1, 40) * 1e-6
        return f"[{self.t:12.6f}] iommu: "

    def noise(self):
        if self.style == "pr_debug":
            self.out.write(f"[{self.t:12.6f}] vfio-pci 0000:01:00.0: "
                           "enabling device (0000 -> 0002)\n")
        else:
            self.out.write(self._prefix() + "kvm_exit: reason EXTERNAL_INTERRUPT"
                           f" rip 0x{self.rng.getrandbits(40):x} info 0 0\n")

    def map(self, iova, pa, size, pieces):
        if self.style == "ftrace":
            self.out.write(
                f"{self._prefix()}map: IOMMU: iova=0x{iova:016x} - "
                f"0x{iova + size:016x} paddr=0x{pa:016x} size={size}\n")
            self.events += 1
        elif self.style == "ftrace-old":
            self.out.write(f"{self._prefix()}map: IOMMU: iova=0x{iova:016x} "
                           f"paddr=0x{pa:016x} size={size}\n")
            self.events += 1
        else:
            self.out.write(f"{self._dmesg()}map: iova 0x{iova:x} pa "
                           f"0x{pa:016x} size 0x{size:x}\n")
            for a, p, pg, n in pieces:
                self.out.write(f"{self._dmesg()}mapping: iova 0x{a:x} pa "
                               f"0x{p:016x} pgsize 0x{pg:x} count {n}\n")
            self.events += 1 + len(pieces)

    def unmap(self, iova, size, unmapped, pieces):
        if self.style == "ftrace":
            self.out.write(
                f"{self._prefix()}unmap: IOMMU: iova=0x{iova:016x} - "
                f"0x{iova + size:016x} size={size} unmapped_size={unmapped}\n")
            self.events += 1
        elif self.style == "ftrace-old":
            self.out.write(f"{self._prefix()}unmap: IOMMU: iova=0x{iova:016x} "
                           f"size={size} unmapped_size={unmapped}\n")
            self.events += 1
        else:
            self.out.write(f"{self._dmesg()}unmap this: iova 0x{iova:x} "
                           f"size 0x{size:x}\n")
            for a, n in pieces:
                self.out.write(f"{self._dmesg()}unmapped: iova 0x{a:x} "
                               f"size 0x{n:x}\n")
            self.events += 1 + len(pieces)


def pieces_of(iova, pa, size):
    """The (iova, pa, pgsize, count) runs iommu_pgsize (v5.14+) gives for a
    4K/2M/1G page-size bitmap; used for the pr_debug style only."""
    out = []
    while size:
        merge = iova | pa
        pg = SZ_4K
        for cand in (1 << 30, SZ_2M):
            if size >= cand and not merge & (cand - 1):
                pg = cand
                break
        n = size // pg
        nxt = SZ_2M if pg == SZ_4K else (1 << 30) if pg == SZ_2M else 0
        if nxt and not (iova ^ pa) & (nxt - 1):
            off = nxt - (merge & (nxt - 1))
            if off + nxt <= size:
                n = off // pg
        out.append((iova, pa, pg, n))
        iova += pg * n
        pa += pg * n
        size -= pg * n
    return out


def vm_start(w: Writer, rng, ram=256 << 20):
    """QEMU maps the guest's RAM, 2 MiB of guest memory at a time: a slot
    backed by a host hugepage is one 2M map (consecutive hugepages that are
    also contiguous on the host merge into one 4M..8M map); other slots are
    backed by scattered 4K pages and mapped in contiguous runs of 4K to 1M.
    Returns the (iova, pa, size) list."""
    maps = []
    iova = GUEST_RAM_IOVA
    end = GUEST_RAM_IOVA + ram
    while iova < end:
        if rng.random() < 0.6:
            n = min(rng.choice((1, 1, 1, 2, 4)), (end - iova) // SZ_2M)
            pa = 0x800000000 + rng.randrange(0, 1 << 14) * SZ_2M
            runs = [(iova, pa, n * SZ_2M)]
            iova += n * SZ_2M
        else:
            runs = []
            left = SZ_2M
            while left:
                size = min(left, SZ_4K * rng.choice((1, 1, 2, 4, 16, 64, 256)))
                pa = 0x100000000 + rng.randrange(0, 1 << 20) * SZ_4K
                runs.append((iova, pa, size))
                iova += size
                left -= size
        for a, pa, size in runs:
            w.map(a, pa, size, pieces_of(a, pa, size))
            maps.append((a, pa, size))
            if rng.random() < 0.02:
                w.noise()
    return maps


def streaming(w: Writer, rng, n_events):
    """A driver's streaming DMA: map buffers, unmap them a little later."""
    lo, hi = DMA_WINDOW
    free = list(range(hi - 16 * SZ_4K, lo - 1, -16 * SZ_4K))  # 64K slots
    live = []
    w.task = "irq/57-nvme0q1-812"
    while w.events < n_events:
        if rng.random() < 0.02:
            w.noise()
        if live and (len(live) > 2048 or rng.random() < 0.45 or not free):
            k = rng.randrange(min(len(live), 64))
            iova, size = live.pop(k)
            w.unmap(iova, size, size, [(iova, size)])
            free.append(iova)
        else:
            iova = free.pop()
            size = SZ_4K * (1 if rng.random() < 0.85 else rng.choice((2, 4, 16)))
            pa = 0x100000000 + rng.randrange(0, 1 << 22) * SZ_4K
            w.map(iova, pa, size, pieces_of(iova, pa, size))
            live.append((iova, size))


def generate(out, n_events=1_000_000, style="ftrace", seed=1, vm_only=False):
    rng = random.Random(seed)
    w = Writer(out, style, rng)
    if style != "pr_debug":
        out.write("# tracer: nop\n#\n#                                _-----=> "
                  "irqs-off/BH-disabled\n#  TASK-PID     CPU#  |||||  "
                  "TIMESTAMP  FUNCTION\n#     | |         |   |||||     |   "
                  "      |\n")
    maps = vm_start(w, rng)
    if vm_only:
        # the guest balloons out one 4K page of a 2M block: a partial unmap
        blocks = [m for m in maps if m[2] >= SZ_2M and not m[0] & (SZ_2M - 1)
                  and not m[1] & (SZ_2M - 1)]
        iova = blocks[len(blocks) // 2][0] + 0x5000
        w.unmap(iova, SZ_4K, SZ_4K, [(iova, SZ_4K)])
        # and then a range that was never mapped
        w.unmap(0x20000000, SZ_4K, 0, [])
        return w.events
    streaming(w, rng, n_events)
    return w.events


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--events", type=int, default=1_000_000)
    ap.add_argument("--style", choices=("ftrace", "ftrace-old", "pr_debug"),
                    default="ftrace")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--vm-start", action="store_true",
                    help="only the VM start and a partial unmap (small)")
    ap.add_argument("-o", "--output", help="file to write (default stdout)")
    ap.add_argument("--bench", action="store_true",
                    help="generate N events to a temporary file and time "
                         "the replay")
    a = ap.parse_args(argv)
    if a.bench:
        return bench(a.events, a.style, a.seed)
    if a.output:
        with open(a.output, "w") as f:
            n = generate(f, a.events, a.style, a.seed, a.vm_start)
    else:
        n = generate(sys.stdout, a.events, a.style, a.seed, a.vm_start)
    print(f"{n} events", file=sys.stderr)
    return 0


def bench(n, style, seed):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from iommu_viz.ingest import replay
    fd, path = tempfile.mkstemp(suffix=".log")
    try:
        with os.fdopen(fd, "w") as f:
            events = generate(f, n, style, seed)
        t = time.perf_counter()
        r = replay(path, progress=False)
        dt = time.perf_counter() - t
        print(r.summary)
        print(f"{events} events ({os.path.getsize(path) >> 20} MiB) replayed "
              f"in {dt:.2f} s: {events / dt:,.0f} events/s")
    finally:
        os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
