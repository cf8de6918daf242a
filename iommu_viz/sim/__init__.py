"""The system model: IOMMU API, SMMU driver, TLB, command queue, device."""
from .system import Simulation, Gather, Access, ApiError, CALLERS
from .smmu import PERSONALITIES
from .trace import (Event, State, TlbEntry, WalkCacheEntry, Command, FqEntry,
                    Hazard, GatherState, ACTORS, OUTCOMES)

__all__ = ["Simulation", "Gather", "Access", "ApiError", "CALLERS",
           "PERSONALITIES", "Event", "State", "TlbEntry", "WalkCacheEntry",
           "Command", "FqEntry", "Hazard", "GatherState", "ACTORS", "OUTCOMES"]
