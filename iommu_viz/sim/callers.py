"""Who calls the IOMMU API, and which unmaps each of them refuses.

The API itself (``iommu_unmap``) unmaps any range; its users are stricter.
VFIO type1 (``drivers/vfio/vfio_iommu_type1.c``, ``vfio_dma_do_unmap``)
refuses an unmap that would cut one of its mappings in two, and the DMA API
(``dma-iommu.c``) only ever unmaps a whole buffer it mapped. A raw user
(a GPU driver, SVA) may unmap anything, which is how a partial unmap of a
block reaches ``arm_lpae_split_blk_unmap``.
"""

from __future__ import annotations

from ..errors import ApiError
from ..pgtable.common import fmt_size

CALLERS = {
    "raw": "a raw IOMMU API user (GPU, SVA): may unmap any range",
    "dma": "dma-iommu: unmaps whole buffers it mapped",
    "vfio": "VFIO type1: refuses an unmap that would split one of its "
            "mappings (vfio_dma_do_unmap, -EINVAL)",
}


class Caller:
    """The caller's own record of what it mapped (``buffers``: iova ->
    size of each ``map`` call), and its rule for unmaps."""

    def __init__(self, kind: str):
        self.kind = kind
        self.buffers: dict[int, int] = {}

    def mapped(self, iova: int, size: int) -> None:
        self.buffers[iova] = size

    def unmapped(self, iova: int, size: int, got: int) -> None:
        """Forget the buffer at ``iova`` once all of ``size`` is gone."""
        if got >= size:
            self.buffers.pop(iova, None)

    def check_unmap(self, iova: int, size: int) -> None:
        """Raise :class:`ApiError` (EINVAL) if this caller would never ask
        to unmap ``[iova, iova + size)``."""
        end = iova + size
        if self.kind == "vfio":
            for b, s in self.buffers.items():
                if (b < iova < b + s) or (b < end < b + s):
                    raise ApiError(
                        "EINVAL", f"VFIO refuses to unmap 0x{iova:x}..0x{end - 1:x}:"
                        f" it would split its mapping 0x{b:x}..0x{b + s - 1:x} "
                        "(vfio_dma_do_unmap)")
        elif self.kind == "dma":
            if self.buffers.get(iova) != size:
                raise ApiError(
                    "EINVAL", f"the DMA API unmaps whole buffers: no buffer of "
                    f"{fmt_size(size)} was mapped at 0x{iova:x}")
