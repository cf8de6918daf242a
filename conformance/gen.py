"""Seeded random operation sequences for the conformance run.

A sequence is one table configuration (``("N", fmt, params)``) followed by
operations: ``("M", iova, paddr, pgsize, count, prot)``,
``("U", iova, pgsize, count, gather)`` with gather ``'n'`` (none), ``'g'``
or ``'q'`` (queued), ``("P", iova)`` and ``("D",)`` (compare every
descriptor). Addresses cluster in a few windows (the bottom, a random
place, the top of the input range) so that maps overlap, unmaps land in
blocks and runs cross table boundaries; a few operations are invalid on
purpose (a size the table does not have, an iova beyond ``ias``, a paddr
beyond ``oas``, no access). A run that starts below ``2^ias`` (or a
paddr below ``2^oas``) mostly stops there: the kernel checks only the
first address and writes past the end of the top-level table, where the
model refuses the run with ERANGE (the allow-list's ``range-end``).
"""

from __future__ import annotations

import random

from iommu_viz.pgtable.common import (IOMMU_CACHE, IOMMU_MMIO, IOMMU_NOEXEC,
                                      IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE)

SZ_4K, SZ_16K, SZ_64K = 1 << 12, 1 << 14, 1 << 16
SZ_1M, SZ_16M = 1 << 20, 1 << 24
LPAE_SIZES = {SZ_4K: (SZ_4K, 1 << 21, 1 << 30), SZ_16K: (SZ_16K, 1 << 25),
              SZ_64K: (SZ_64K, 1 << 29)}
V7S_SIZES = (SZ_4K, SZ_64K, SZ_1M, SZ_16M)
#: output sizes arm_lpae_alloc_pgtable accepts (the TCR.IPS encodings)
LPAE_OAS = (32, 36, 40, 42, 44, 48)
PROTS = (IOMMU_READ | IOMMU_WRITE, IOMMU_READ, IOMMU_WRITE,
         IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE,
         IOMMU_READ | IOMMU_NOEXEC | IOMMU_CACHE,
         IOMMU_READ | IOMMU_WRITE | IOMMU_MMIO | IOMMU_NOEXEC,
         IOMMU_READ | IOMMU_WRITE | IOMMU_PRIV, IOMMU_WRITE | IOMMU_PRIV)


def lpae_config(rng: random.Random) -> dict:
    granule = rng.choice((SZ_4K, SZ_4K, SZ_16K, SZ_64K))
    stage = rng.choice((1, 2))
    return {"fmt": "lpae", "granule": granule, "stage": stage,
            "ias": rng.randint(32, 48), "oas": rng.choice(LPAE_OAS),
            "ns": stage == 1 and rng.random() < 0.25}


def v7s_config(rng: random.Random) -> dict:
    mtk = rng.random() < 0.25
    no_perms = mtk or rng.random() < 0.2
    bitmap = sum(V7S_SIZES)
    if rng.random() < 0.3:
        bitmap = 0
        while not bitmap:
            bitmap = sum(s for s in V7S_SIZES if rng.random() < 0.6)
    return {"fmt": "v7s", "ias": rng.randint(28, 34 if mtk else 32),
            "oas": rng.randint(32, 35) if mtk else 32, "ns": rng.random() < 0.25,
            "no_perms": no_perms, "mtk_ext": mtk, "pgsize_bitmap": bitmap}


def sizes_of(cfg: dict) -> tuple:
    if cfg["fmt"] == "lpae":
        return LPAE_SIZES[cfg["granule"]]
    return tuple(s for s in V7S_SIZES if cfg["pgsize_bitmap"] & s)


def bad_sizes_of(cfg: dict) -> tuple:
    """Power-of-two sizes the table does not have (each refused)."""
    if cfg["fmt"] == "lpae":
        g = cfg["granule"]
        bpl = g.bit_length() - 4
        top = g << (3 * bpl)     # the level-0 size of a 4K table: 512G
        return tuple(s for s in (SZ_4K, SZ_16K, SZ_64K, 1 << 21, 1 << 25,
                                 top) if s not in LPAE_SIZES[g])
    # arm_v7s_map_pages and arm_v7s_unmap_pages do not check the size
    # against pgsize_bitmap (the IOMMU core does, and the model refuses
    # what the core refuses), so v7s sequences use the table's sizes only
    return sizes_of(cfg)


def sequence(rng: random.Random, fmt: str, nops: int | None = None) -> list:
    """One sequence: the configuration, then ``nops`` operations."""
    cfg = lpae_config(rng) if fmt == "lpae" else v7s_config(rng)
    sizes = sizes_of(cfg)
    bad = bad_sizes_of(cfg)
    ias, oas = cfg["ias"], cfg["oas"]
    top = 1 << ias
    big = sizes[-1]
    windows = [0, rng.randrange(0, top, big), top - 2 * big if top > 2 * big else 0]
    mapped: list[tuple[int, int]] = []      # (iova, bytes) the sequence tried
    ops: list = [("N", cfg)]
    nops = nops if nops is not None else rng.randint(4, 14)

    def an_iova(size):
        if mapped and rng.random() < 0.6:
            base, length = rng.choice(mapped)
            a = base + rng.randrange(0, max(length, 1))
        else:
            a = rng.choice(windows) + rng.randrange(0, 4 * big)
            if rng.random() < 0.1:
                a = top - size * rng.randint(1, 3)
        return max(a, 0) & ~(size - 1)

    def a_count(size):
        r = rng.random()
        if r < 0.55:
            return 1
        if r < 0.85:
            return rng.randint(2, 5)
        # runs that cross a table boundary
        return rng.randint(2, max(2, min(1100, (4 * big) // size)))

    def clip(iova, size, count):
        # a run that starts below 2^ias mostly ends there: map_pages and
        # unmap_pages check only the first iova (see range-end)
        if iova < top and rng.random() < 0.9:
            return max(1, min(count, (top - iova) // size))
        return count

    for _ in range(nops):
        r = rng.random()
        if r < 0.45:
            size = rng.choice(sizes if rng.random() < 0.97 else bad)
            count = a_count(size)
            iova = an_iova(size)
            paddr = rng.randrange(0, 1 << oas, size) if size < (1 << oas) else 0
            if rng.random() < 0.03:
                paddr = (1 << oas) + size * rng.randint(0, 3)
            if rng.random() < 0.02:
                iova = top + size * rng.randint(0, 3)
            count = clip(iova, size, count)
            if paddr < (1 << oas) and rng.random() < 0.9:
                count = max(1, min(count, ((1 << oas) - paddr) // size))
            prot = rng.choice(PROTS) if rng.random() < 0.98 else \
                rng.choice((0, IOMMU_CACHE, IOMMU_NOEXEC))
            ops.append(("M", iova, paddr, size, count, prot))
            mapped.append((iova, size * count))
            ops.append(("D",))
        elif r < 0.8:
            size = rng.choice(sizes if rng.random() < 0.97 else bad)
            count = a_count(size)
            iova = an_iova(size)
            if rng.random() < 0.02:
                iova = top + size * rng.randint(0, 3)
            count = clip(iova, size, count)
            ops.append(("U", iova, size, count, rng.choice("ngq")))
            ops.append(("D",))
        else:
            for _ in range(rng.randint(1, 3)):
                if mapped and rng.random() < 0.7:
                    base, length = rng.choice(mapped)
                    a = base + rng.randrange(0, max(length, 1))
                    if rng.random() < 0.15:     # the same, beyond ias
                        a |= 1 << rng.randint(ias, min(ias + 12, 63))
                else:
                    a = rng.randrange(0, top << 2)
                ops.append(("P", a))
    return ops


def sequences(seed: int, fmt: str, n: int) -> list:
    """``n`` sequences of format ``fmt`` from ``seed`` (deterministic)."""
    rng = random.Random(f"{fmt}:{seed}")
    return [sequence(rng, fmt) for _ in range(n)]
