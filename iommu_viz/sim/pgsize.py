"""Page-size selection of the IOMMU API (drivers/iommu/iommu.c).

Example: 4 MiB at an iova 4 KiB past a 2 MiB boundary becomes 511 pages,
one block, one page::

    >>> from iommu_viz.sim.pgsize import split_pgsizes
    >>> pieces = split_pgsizes(0x40201000, 0x40201000, 0x80201000, 0x400000)
    >>> len(pieces), hex(pieces[510][2]), hex(pieces[511][2]), hex(pieces[512][2])
    (513, '0x1000', '0x200000', '0x1000')
    >>> [hex(p[2]) for p in split_pgsizes(0x40201000, 0x40000000, 0x80000000, 0x401000)]
    ['0x200000', '0x200000', '0x1000']
"""

from __future__ import annotations


def iommu_pgsize(pgsize_bitmap: int, addr_merge: int, size: int) -> int:
    """The largest page size that fits ``size`` and the alignment of
    ``addr_merge`` (``iova | paddr`` for map, ``iova`` for unmap).

    Models iommu_pgsize (v4.20, v5.4); v5.14+ also returns a count of such
    pages, which :func:`split_pgsizes` reproduces by grouping.
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


def split_pgsizes(pgsize_bitmap: int, iova: int, paddr, size: int):
    """The (iova, paddr, pgsize) pieces iommu_map (``paddr`` given) or
    __iommu_unmap (``paddr`` None) hands the page table, in order.

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
