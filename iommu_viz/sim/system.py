"""The system: one SMMUv3 stage-1 domain for one device, built from the
layers the kernel has, and the record of everything that happened.

:class:`Simulation` wires the layers, keeps the clock and hands out the
record; each API call goes to the layer that models it:

=================  ===================================  ====================
layer              models                               module
=================  ===================================  ====================
IOMMU core         iommu.c: map, unmap, gathers         :mod:`.iommu`
dma-iommu          dma-iommu.c / iova.c: flush queue    :mod:`.dma_iommu`
io-pgtable         io-pgtable-arm.c, -arm-v7s.c         :mod:`iommu_viz.pgtable`
driver             arm-smmu-v3.c: TLBIs, CMD_SYNC       :mod:`.arm_smmu_v3`
SMMU               the hardware: TLB, walk cache        :mod:`.smmu`
device             DMA by iova                          :mod:`.device`
=================  ===================================  ====================

Example: the seed thread's case, ``iommu_unmap_fast`` of one page inside a
2 MiB block, and a device access before the caller syncs::

    >>> from iommu_viz import Simulation, SZ_2M, SZ_4K
    >>> sim = Simulation(kernel="v5.4")
    >>> sim.map(0x40000000, 0x80000000, SZ_2M)
    2097152
    >>> sim.access(0x40001000).outcome          # fills the TLB with the block
    'translated'
    >>> g = sim.new_gather()
    >>> sim.unmap_fast(0x40001000, SZ_4K, g)
    4096
    >>> a = sim.access(0x40001000)
    >>> a.outcome, sorted(a.allowed)            # the old block is still cached
    ('stale', ['fault', 'stale'])
    >>> sim.iotlb_sync(g)
    >>> sim.access(0x40001000).outcome
    'fault'
"""

from __future__ import annotations

import dataclasses

from ..errors import ApiError, check_uint
from ..pgtable.common import IOMMU_READ, IOMMU_WRITE, era_at_least, short_size
from ..pgtable.lpae import LpaeTable
from ..pgtable.v7s import V7sTable
from .arm_smmu_v3 import ArmSmmuDomain
from .callers import CALLERS, Caller
from .config import SimConfig
from .device import Access, DmaDevice
from .dma_iommu import IommuDmaCookie
from .iommu import Gather, IommuDomain
from .smmu import Smmu, nt_block
from .snapshot import StateKeeper
from .trace import Clock, Recorder, State

__all__ = ["Simulation", "Gather", "Access", "ApiError", "CALLERS",
           "SimConfig"]

_FIELDS = frozenset(f.name for f in dataclasses.fields(SimConfig))


class Simulation:
    """An SMMUv3 system running one stage-1 domain for one device.

    The keyword arguments are the options of :class:`SimConfig` (each
    with its help, choices and the feature it models): ``fmt``,
    ``granule``, ``ias``, ``oas``, ``kernel``, ``strict``, ``bbml``,
    ``personality``, ``tlb_entries``, ``tlb_replacement``, ``walk_cache``,
    ``ttl_hints``, ``caller``, ``split_sync``, ``split_nt``,
    ``deferred_gather``, ``asid``, ``fq_size``, ``fq_timeout_ms``. A
    :class:`SimConfig` may be passed first; keywords then replace its
    fields. They read back as attributes (``sim.kernel``, ``sim.bbml``).

    The record: ``ops`` (the API calls), ``events``, ``states`` (one per
    event), ``accesses``; ``config`` the options as a dict, ``now_us``
    the logical time. The layers: ``domain`` (IOMMU core), ``dma``
    (dma-iommu and its flush queue), ``pt`` (io-pgtable), ``driver``
    (arm-smmu-v3), ``smmu`` (the hardware), ``device``.

    Every format is driven with SMMUv3-style commands. The v7s format is
    only used with SMMUv1/v2 (arm-smmu.c) and non-Arm IOMMUs, whose drivers
    invalidate through registers (TLBIVA/TLBIVAL then TLBSYNC); read the
    commands of a v7s run as those, with no range or TTL fields.
    """

    def __init__(self, cfg: SimConfig | None = None, /, **options):
        if cfg is None:
            cfg = SimConfig(**options)
        elif isinstance(cfg, SimConfig):
            cfg = dataclasses.replace(cfg, **options)
        else:
            raise TypeError(f"Simulation takes a SimConfig or keyword options, "
                            f"not {cfg!r}")
        self.cfg = cfg
        self.config = cfg.as_dict()
        self.clock = Clock()
        rec = self.recorder = Recorder(self.clock)
        self.smmu = Smmu(cfg, rec)
        self.driver = ArmSmmuDomain(cfg, self.smmu, rec)
        rec.on = False              # the pgd's allocation is part of set-up
        self.pt = self._alloc_pgtable(cfg)
        rec.on = True
        self.driver.finalise(self.pt)
        self.domain = IommuDomain(cfg.kernel, self.pt, self.driver,
                                  Caller(cfg.caller), rec)
        self.dma = IommuDmaCookie(cfg, self.domain, self.driver, self.clock,
                                  rec)
        self.device = DmaDevice(self.smmu, self.pt.ias, rec)
        self._keeper = StateKeeper(self.pt, self.smmu, self.domain, self.dma,
                                   self.clock)
        rec.state_of = self._keeper.state
        self.ops = rec.ops
        self.events = rec.events
        self.states = rec.states
        self.accesses = self.device.accesses
        self.granule = self.pt.granule
        rec.emit("cpu", "init", "arm_smmu_domain_finalise",
                 f"domain ready: {cfg.fmt.upper()} {short_size(self.granule)} "
                 f"granule, {self.pt.levels} levels, kernel {cfg.kernel}, "
                 f"{'strict' if cfg.strict else 'lazy'}, BBML{cfg.bbml}, "
                 f"{cfg.personality} SMMU")

    def _alloc_pgtable(self, cfg):
        """alloc_io_pgtable_ops with the driver's flush ops; lazy mode
        before v5.15 is the IO_PGTABLE_QUIRK_NON_STRICT quirk."""
        non_strict = not cfg.strict and not era_at_least(cfg.kernel, (5, 15))
        if cfg.fmt == "lpae":
            return LpaeTable(granule=cfg.granule, ias=cfg.ias, oas=cfg.oas,
                             stage=1, kernel=cfg.kernel, tlb=self.driver,
                             non_strict=non_strict, trace=self._pt_trace,
                             split_sync=cfg.split_sync, split_nt=cfg.split_nt)
        return V7sTable(kernel=cfg.kernel, tlb=self.driver,
                        non_strict=non_strict, trace=self._pt_trace,
                        split_sync=cfg.split_sync)

    def _pt_trace(self, func, kind, **d):
        """io-pgtable's trace hook: each call is recorded; a descriptor
        write makes the kept stale ranges out of date, and a block marked
        nT is one the SMMU may cache again (the BBML1 sequence)."""
        if not self.recorder.on:
            return
        self._keeper.tables_changed()
        if kind == "pte_write" and self.pt.fmt == "lpae" and nt_block(d["new"]):
            self.smmu.nt_written(d["iova"])
        self.recorder.pgtable_event(self.pt.describe, func, kind, d)

    @property
    def ttl_hints(self) -> bool:
        """Whether TTL hints are in use: the SMMU honours them and the era's
        driver sends them (arm-smmu-v3 range invalidation, v5.7 on)."""
        return self.cfg.ttl_in_use

    def __getattr__(self, name):
        # the options read as attributes: sim.kernel, sim.bbml, ...
        if name in _FIELDS and "cfg" in self.__dict__:
            return getattr(self.cfg, name)
        raise AttributeError(f"{type(self).__name__!r} object has no "
                             f"attribute {name!r}")

    # ================================================================ API
    def map(self, iova: int, paddr: int, size: int,
            prot: int = IOMMU_READ | IOMMU_WRITE) -> int:
        """iommu_map (:meth:`IommuDomain.map`): returns the bytes mapped;
        raises :class:`ApiError` and changes nothing when the range is
        unaligned, out of range or already mapped."""
        return self.domain.map(iova, paddr, size, prot)

    def unmap(self, iova: int, size: int) -> int:
        """Unmap and make it stick the way the mode does. Strict:
        iommu_unmap (__iommu_unmap, then iommu_iotlb_sync). Lazy:
        __iommu_dma_unmap (a queued gather, no sync; the range waits in
        the flush queue). Returns bytes unmapped; 0 and no change when
        nothing is mapped there."""
        if self.cfg.strict:
            return self.domain.unmap(iova, size)
        return self.dma.unmap(iova, size)

    def new_gather(self) -> Gather:
        """iommu_iotlb_gather_init: an empty gather for unmap_fast."""
        return self.domain.new_gather()

    def unmap_fast(self, iova: int, size: int, gather: Gather) -> int:
        """iommu_unmap_fast: unmap, deferring leaf invalidation into
        ``gather``; nothing is guaranteed until iotlb_sync(gather)
        (v4.20: TLBIs issued, no CMD_SYNC; v5.4+: nothing issued)."""
        return self.domain.unmap_fast(iova, size, gather)

    def iotlb_sync(self, gather: Gather) -> None:
        """iommu_iotlb_sync (iommu_tlb_sync in v5.4): complete what
        ``gather`` deferred."""
        self.domain.iotlb_sync(gather)

    def flush_all(self) -> None:
        """iommu_flush_iotlb_all: invalidate the whole domain."""
        self.domain.flush_iotlb_all()

    def access(self, iova: int, write: bool = False) -> Access:
        """A DMA access by the device through the SMMU: look up the TLB,
        walk on a miss (caching a valid result), and report the outcome
        the personality picked among those the architecture allows."""
        return self.device.access(iova, write)

    def speculate(self, iova: int) -> bool:
        """The SMMU walks ``iova`` and caches a valid translation now, as it
        may at any time (SMMUv3 3.21.1: speculative fills). Returns whether
        anything was cached (faults are not cached)."""
        check_uint("iova", iova)
        self.recorder.begin(dict(op="speculate", iova=iova))
        return self.smmu.speculate(iova)

    def advance(self, ms) -> None:
        """Let ``ms`` milliseconds of logical time pass; the flush queue's
        timer (fq_flush_timeout) fires if it falls due."""
        if not isinstance(ms, (int, float)) or ms < 0:
            raise ValueError(f"advance({ms!r}): time cannot go backwards or be "
                             "other than a number of milliseconds >= 0")
        target = self.clock.now_us + int(round(ms * 1000))
        self.recorder.begin(dict(op="advance", ms=ms))
        due = self.dma.deadline_us
        if due is not None and due <= target:
            self.clock.now_us = due
            self.dma.fq_flush_timeout()
        self.clock.now_us = target
        self.recorder.emit("cpu", "advance", "time", f"time is now "
                           f"{target / 1000:.3f} ms")

    # ================================================================ reading
    @property
    def now_us(self) -> int:
        """The logical time, in microseconds."""
        return self.clock.now_us

    def state_at(self, step: int) -> State:
        """The state recorded after event ``step`` (negative counts from
        the end)."""
        if not isinstance(step, int) or not -len(self.states) <= step < len(self.states):
            raise IndexError(f"step {step!r} is outside this run's "
                             f"0..{len(self.states) - 1}")
        return self.states[step]

    @property
    def state(self) -> State:
        return self.states[-1]

    @classmethod
    def from_ops(cls, config: dict, ops: list) -> "Simulation":
        """Re-execute a recorded list of API calls on a fresh simulation."""
        sim = cls(**config)
        gathers = {}
        for op in ops:
            sim.apply(op, gathers)
        return sim

    def apply(self, op: dict, gathers: dict) -> None:
        """Execute one API call in the form ``ops`` records it
        (``{"op": "unmap_fast", "iova": ..., "size": ..., "gather": id}``);
        ``gathers`` maps gather ids to the :class:`Gather` objects that
        ``new_gather`` ops made. Scenario files and :meth:`from_ops` run
        their calls through here."""
        kind = op["op"]
        if kind == "map":
            self.map(op["iova"], op["paddr"], op["size"],
                     op.get("prot", IOMMU_READ | IOMMU_WRITE))
        elif kind == "unmap":
            self.unmap(op["iova"], op["size"])
        elif kind == "new_gather":
            gathers[op["id"]] = self.new_gather()
        elif kind == "unmap_fast":
            self.unmap_fast(op["iova"], op["size"], gathers[op["gather"]])
        elif kind == "iotlb_sync":
            self.iotlb_sync(gathers[op["gather"]])
        elif kind == "flush_all":
            self.flush_all()
        elif kind == "access":
            self.access(op["iova"], op.get("write", False))
        elif kind == "speculate":
            self.speculate(op["iova"])
        elif kind == "advance":
            self.advance(op["ms"])
        else:
            raise ValueError(f"unknown op {kind!r} in recorded run")

    def caption(self, step: int) -> str:
        """One line naming the kernel function that acted at ``step``."""
        ev = self.events[step]
        return f"{ev.func}: {ev.text}"

    def __str__(self):
        st = self.state
        cfg = self.cfg
        lines = [f"Simulation({cfg.kernel}, "
                 f"{'strict' if cfg.strict else 'lazy'}, BBML{cfg.bbml}, "
                 f"{cfg.personality}): {len(self.events)} steps, "
                 f"t={st.time_us / 1000:.3f} ms",
                 f"  TLB: {len(st.tlb)} entries, "
                 f"{sum(e.stale for e in st.tlb)} stale; pending commands: "
                 f"{len(st.pending)}; flush queue: {len(st.flush_queue)}"]
        for a in self.accesses[-3:]:
            lines.append("  " + str(a))
        return "\n".join(lines)

    __repr__ = __str__

    def to_scenario(self) -> str:
        """This run as a scenario file (iommu_viz.scenarios.to_text): it
        re-executes to the same events."""
        from ..scenarios import to_text
        return to_text(self)
