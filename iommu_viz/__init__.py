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
from .errors import IommuVizError
from .sim import Simulation, SimConfig, ApiError

__version__ = "0.1.0"


def _install_displays():
    """Give the model's objects their Jupyter and plain-text faces.

    The renderers sit above the model, so the model's classes do not import
    them; the hooks are attached here, and import ``render`` (and with it
    matplotlib) only when an object is first displayed.
    """
    from .pgtable.common import PgtableSnapshot
    from .sim.trace import State

    def lazy(name, via=None):
        def hook(self):
            from . import render
            return getattr(render, name)(via(self) if via else self)
        hook.__name__ = name
        return hook

    def table_text(self):
        from .render.tree import tree_text
        return tree_text(self.snapshot())

    def state_text(self):
        from .render.tree import tree_text
        from .render.tlb import tlb_text
        return tree_text(self.pgtable, tlb=self.tlb) + "\n" + tlb_text(self)

    for cls in (LpaeTable, V7sTable):
        cls._repr_svg_ = lazy("snapshot_repr_svg", lambda t: t.snapshot())
        cls.__str__ = table_text
    PgtableSnapshot._repr_svg_ = lazy("snapshot_repr_svg")
    State._repr_html_ = lazy("state_repr_html")
    State.__str__ = state_text
    Simulation._repr_html_ = lazy("run_repr_html")


_install_displays()

__all__ = [
    "LpaeTable", "V7sTable", "Simulation", "SimConfig", "IommuVizError",
    "ApiError", "PgtableError", "FlushOps", "RecordingFlushOps", "KERNELS",
    "SZ_1K", "SZ_4K", "SZ_16K", "SZ_64K", "SZ_1M", "SZ_2M", "SZ_16M",
    "SZ_32M", "SZ_512M", "SZ_1G", "SZ_2G", "SZ_4G", "IOMMU_READ",
    "IOMMU_WRITE", "IOMMU_CACHE", "IOMMU_NOEXEC", "IOMMU_MMIO", "IOMMU_PRIV",
]
