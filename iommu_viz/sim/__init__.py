"""The system model, one module per kernel layer: the IOMMU core
(:mod:`.iommu`), the dma-iommu flush queue (:mod:`.dma_iommu`), the
arm-smmu-v3 driver (:mod:`.arm_smmu_v3`), the SMMU hardware (:mod:`.smmu`),
the device (:mod:`.device`); :class:`Simulation` (:mod:`.system`) wires
them and records the run (:mod:`.trace`). See docs/architecture.md."""
from ..errors import ApiError
from .callers import CALLERS
from .config import SimConfig
from .device import Access
from .iommu import Gather
from .smmu import PERSONALITIES
from .system import Simulation
from .trace import (Event, State, TlbEntry, WalkCacheEntry, Command, FqEntry,
                    Hazard, GatherState, ACTORS, OUTCOMES)

__all__ = ["Simulation", "SimConfig", "Gather", "Access", "ApiError",
           "CALLERS", "PERSONALITIES", "Event", "State", "TlbEntry",
           "WalkCacheEntry", "Command", "FqEntry", "Hazard", "GatherState",
           "ACTORS", "OUTCOMES"]
