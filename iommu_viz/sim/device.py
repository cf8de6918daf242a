"""The DMA device: reads and writes by iova through the SMMU.

A device does not know the page tables; each access is a transaction the
SMMU translates (:meth:`~iommu_viz.sim.smmu.Smmu.translate`). The result,
:class:`Access`, keeps every outcome the architecture allowed at that
moment beside the one the SMMU's personality picked.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ApiError, check_uint


@dataclass(frozen=True)
class Access:
    """The result of one DMA access.

    ``outcome`` is what the chosen hardware personality did; ``allowed`` the
    set of outcome names the architecture permits at this moment;
    ``options`` each permitted ``(outcome, paddr, source)``; ``paddr`` the
    physical address reached (None on fault or conflict).
    """

    iova: int
    write: bool
    outcome: str
    paddr: int | None
    allowed: frozenset
    options: tuple
    step: int
    source: str

    def __str__(self):
        where = f" -> 0x{self.paddr:x}" if self.paddr is not None else ""
        return (f"{'write' if self.write else 'read'} 0x{self.iova:x}: "
                f"{self.outcome}{where} (allowed: "
                + ", ".join(sorted(self.allowed)) + ")")


class DmaDevice:
    """One device (one stream) behind ``smmu``; ``accesses`` lists its
    accesses in order."""

    def __init__(self, smmu, ias: int, rec):
        self.smmu = smmu
        self.ias = ias
        self.rec = rec
        self.accesses: list[Access] = []

    def access(self, iova: int, write: bool = False) -> Access:
        """A DMA read (or write) of ``iova``: the SMMU looks up its TLB,
        walks on a miss (caching a valid result) and the outcome is the
        one its personality picked among those allowed."""
        check_uint("iova", iova)
        if iova >> self.ias:
            raise ApiError("ERANGE", f"iova 0x{iova:x} is beyond the "
                           f"{self.ias}-bit input address size")
        write = bool(write)
        self.rec.begin(dict(op="access", iova=iova, write=write))
        (outcome, pa, source), opts = self.smmu.translate(iova, write)
        allowed = frozenset(o[0] for o in opts)
        a = Access(iova, write, outcome, pa, allowed, tuple(opts),
                   self.rec.next_step, source)
        self.accesses.append(a)
        where = f" -> 0x{pa:x}" if pa is not None else ""
        self.rec.emit("device", "access", "SMMU translation",
                      f"device {'write' if write else 'read'} 0x{iova:x}: "
                      f"{outcome}{where} via {source} "
                      f"(allowed: {', '.join(sorted(allowed))})",
                      iova=iova, write=write, outcome=outcome, paddr=pa,
                      allowed=sorted(allowed), source=source)
        return a
