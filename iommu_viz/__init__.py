"""iommu-viz: see what an Arm IOMMU does to its page tables and TLB when DMA
mappings change.

The public API is small::

    from iommu_viz import LpaeTable, SZ_4K, SZ_2M
    pt = LpaeTable(granule=SZ_4K, ias=48, oas=48, stage=1, kernel="v5.4")
    pt.map(0x200000, 0x80000000, SZ_2M)
    pt.unmap(0x201000, SZ_4K)           # splits the block (v5.4 era)
"""

from .pgtable.common import (
    SZ_1K, SZ_4K, SZ_16K, SZ_64K, SZ_1M, SZ_2M, SZ_16M, SZ_32M, SZ_512M,
    SZ_1G, SZ_2G, SZ_4G, IOMMU_READ, IOMMU_WRITE, IOMMU_CACHE, IOMMU_NOEXEC,
    IOMMU_MMIO, IOMMU_PRIV, KERNELS, PgtableError, FlushOps,
    RecordingFlushOps,
)
from .pgtable.lpae import LpaeTable
from .pgtable.v7s import V7sTable
from .sim import Simulation, ApiError

__version__ = "0.1.0"

__all__ = [
    "LpaeTable", "V7sTable", "Simulation", "ApiError", "PgtableError", "FlushOps", "RecordingFlushOps", "KERNELS",
    "SZ_1K", "SZ_4K", "SZ_16K", "SZ_64K", "SZ_1M", "SZ_2M", "SZ_16M",
    "SZ_32M", "SZ_512M", "SZ_1G", "SZ_2G", "SZ_4G", "IOMMU_READ",
    "IOMMU_WRITE", "IOMMU_CACHE", "IOMMU_NOEXEC", "IOMMU_MMIO", "IOMMU_PRIV",
]
