"""Page-size selection of the IOMMU API (drivers/iommu/iommu.c).

One copy of ``iommu_pgsize``: :func:`iommu_pgsize` picks the page size
(every era), :func:`iommu_pgsize_count` adds the count of such pages that
v5.14+ hands ``map_pages``/``unmap_pages`` in one call.

Example: 4 MiB at an iova 4 KiB past a 2 MiB boundary becomes 511 pages,
one block, one page; unmapping 2 MiB at 0x1000 hands over all 512 pages in
one call, since no 2 MiB block fits in the range::

    >>> from iommu_viz.sim.pgsize import iommu_pgsize_count, split_pgsizes
    >>> pieces = split_pgsizes(0x40201000, 0x40201000, 0x80201000, 0x400000)
    >>> len(pieces), hex(pieces[510][2]), hex(pieces[511][2]), hex(pieces[512][2])
    (513, '0x1000', '0x200000', '0x1000')
    >>> [hex(p[2]) for p in split_pgsizes(0x40201000, 0x40000000, 0x80000000, 0x401000)]
    ['0x200000', '0x200000', '0x1000']
    >>> iommu_pgsize_count(0x40201000, 0x1000, 0x1000, 0x200000)
    (4096, 512)
    >>> iommu_pgsize_count(0x40201000, 0x1000, 0x1000, 0x400000)
    (4096, 511)
"""

from __future__ import annotations


def iommu_pgsize(pgsize_bitmap: int, addr_merge: int, size: int) -> int:
    """The largest page size that fits ``size`` and the alignment of
    ``addr_merge`` (``iova | paddr`` for map, ``iova`` for unmap).

    Models iommu_pgsize (v4.20, v5.4; from v5.14 the part before the
    count, see :func:`iommu_pgsize_count`).
    """
    idx = size.bit_length() - 1
    if addr_merge:
        idx = min(idx, (addr_merge & -addr_merge).bit_length() - 1)
    mask = ((1 << (idx + 1)) - 1) & pgsize_bitmap
    if not mask:
        raise ValueError(
            f"no page size in {pgsize_bitmap:#x} fits size {size:#x} at "
            f"alignment {addr_merge:#x}")
    return 1 << (mask.bit_length() - 1)


def iommu_pgsize_count(pgsize_bitmap: int, iova: int, paddr: int,
                       size: int) -> tuple[int, int]:
    """``(pgsize, count)``: the page size, and how many pages of it to hand
    the table in one call. The count stops short of the next larger page
    size's boundary only when a page of that size fits in what remains
    there, and ``iova`` and ``paddr`` are equally offset within it;
    otherwise it covers all of ``size``. ``paddr`` is ``iova`` for an
    unmap, as __iommu_unmap passes it.

    Models iommu_pgsize with its ``count`` (v5.14+).
    """
    pg = iommu_pgsize(pgsize_bitmap, iova | paddr, size)
    larger = pgsize_bitmap & ~((pg << 1) - 1)
    if larger:
        nxt = larger & -larger
        if not (iova ^ paddr) & (nxt - 1):
            offset = nxt - ((iova | paddr) & (nxt - 1))
            if offset + nxt <= size:
                size = offset
    return pg, size // pg


def split_pgsizes(pgsize_bitmap: int, iova: int, paddr, size: int):
    """The (iova, paddr, pgsize) pieces iommu_map (``paddr`` given) or
    __iommu_unmap (``paddr`` None) hands the page table, in order, one page
    each (as v4.20 and v5.4 do).

    Models the loops of __iommu_map and __iommu_unmap (v4.20 .. v6.13).
    """
    out = []
    done = 0
    while done < size:
        merge = (iova + done) | (paddr + done if paddr is not None else 0)
        pg = iommu_pgsize(pgsize_bitmap, merge, size - done)
        out.append((iova + done, None if paddr is None else paddr + done, pg))
        done += pg
    return out
