"""Page-table formats: LPAE (io-pgtable-arm) and, later, v7s."""
from .common import *  # noqa: F401,F403
from .common import (FlushOps, RecordingFlushOps, PgtableError, WalkStep,
                     Translation, PgtableSnapshot, TableSnapshot, KERNELS,
                     ERAS, KernelEra, era)
from .lpae import LpaeTable, PteInfo
from .v7s import V7sTable

__all__ = ["LpaeTable", "V7sTable", "PteInfo", "FlushOps", "RecordingFlushOps",
           "PgtableError", "WalkStep", "Translation", "PgtableSnapshot",
           "TableSnapshot", "KERNELS", "ERAS", "KernelEra", "era"]
