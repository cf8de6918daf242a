"""A simulation's options, declared once: :class:`SimConfig`.

Each field carries its own documentation in ``metadata``: ``help`` (one
sentence), ``choices`` (the values allowed, or None for a number checked by
a rule) and ``feature`` (the kernel code or SMMU feature the option stands
for). The command line, scenario files and the Explorer's toggles can list
and check options from it; a toggle is a :func:`dataclasses.replace`, which
validates again::

    >>> import dataclasses
    >>> from iommu_viz.sim.config import SimConfig
    >>> cfg = SimConfig(kernel="v6.12", bbml=2)
    >>> cfg.tlb_entries, SimConfig.option("bbml")["feature"]
    (64, 'SMMU_IDR3.BBML: break-before-make level')
    >>> dataclasses.replace(cfg, bbml=3)
    Traceback (most recent call last):
    ...
    ValueError: bbml 3 must be 0, 1 or 2 (SMMU_IDR3.BBML)

The stored values are the ones the run uses: ``tlb_entries`` None becomes
the personality's capacity (256 for ``coherent``, as QEMU's IOTLB, else 64),
and ``fmt="v7s"`` fixes ``ias`` at 32 and ``ttl_hints`` off. Replacing
``personality`` therefore keeps the capacity already chosen unless
``tlb_entries=None`` is passed with it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..pgtable.common import (KERNELS, SZ_4K, SZ_16K, SZ_64K, check_kernel,
                               era_at_least)
from .callers import CALLERS
from .smmu import PERSONALITIES

_BOOL = (True, False)


def _opt(default, help, feature, choices=None):
    return field(default=default, metadata=dict(help=help, feature=feature,
                                                choices=choices))


@dataclass(frozen=True)
class SimConfig:
    """The options of one :class:`~iommu_viz.sim.system.Simulation`: the
    kernel era, the SMMU's features and the caller. Validated when made;
    a bad value raises ``ValueError`` naming it and the rule."""

    fmt: str = _opt("lpae", "Page-table format: LPAE (io-pgtable-arm.c, "
                    "64-bit descriptors, 2 MiB blocks) or v7s "
                    "(io-pgtable-arm-v7s.c, 32-bit descriptors, 1 MiB "
                    "sections).",
                    "io-pgtable-arm.c (LPAE) or io-pgtable-arm-v7s.c (v7s)",
                    ("lpae", "v7s"))
    granule: int = _opt(SZ_4K, "LPAE translation granule in bytes",
                        "io_pgtable_cfg.pgsize_bitmap (TCR.TG0)",
                        (SZ_4K, SZ_16K, SZ_64K))
    ias: int = _opt(48, "input address size in bits", "io_pgtable_cfg.ias")
    kernel: str = _opt("v5.4", "Kernel era: v4.20's split syncs itself, v5.4 "
                       "to v6.12 defer the page to the caller's gather, "
                       "v6.13 refuses partial unmaps of blocks (commit "
                       "33729a5fc0ca).",
                       "the release that first behaved so (KERNELS)",
                       tuple(KERNELS))
    strict: bool = _opt(True, "Strict invalidates the IOTLB on every unmap; "
                        "lazy (iommu.strict=0) leaves leaf invalidation to "
                        "dma-iommu's flush queue, flushed after 256 entries "
                        "or 10 ms.", "iommu.strict= (lazy: "
                        "IOMMU_DOMAIN_DMA_FQ, v5.15+)", _BOOL)
    bbml: int = _opt(0, "SMMU_IDR3.BBML: what the SMMU may do when two TLB "
                     "entries translate one address (levels 0 and 1: a TLB "
                     "conflict, F_TLB_CONFLICT; level 2: the old or the new "
                     "translation only).",
                     "SMMU_IDR3.BBML: break-before-make level", (0, 1, 2))
    personality: str = _opt("typical", "Which allowed outcome this SMMU "
                            "model picks: typical (a cached entry wins), "
                            "adversarial (the worst allowed), coherent "
                            "(QEMU's smmu-common.c: commands run when "
                            "queued).", "the model's choice among what "
                            "the architecture allows", tuple(PERSONALITIES))
    tlb_entries: int | None = _opt(
        None, "TLB capacity (None: 256 for coherent, else 64)",
        "SMMU TLB size (QEMU: SMMU_IOTLB_MAX_SIZE)")
    walk_cache: bool = _opt(True, "whether table descriptors are cached",
                            "SMMU walk cache (removed by Leaf=0 TLBIs)", _BOOL)
    tlb_replacement: str = _opt("lru", "which entry a full TLB evicts: least "
                                "recently used or oldest fill",
                                "SMMU TLB replacement policy", ("lru", "fifo"))
    split_nt: bool = _opt(False, "An experiment no kernel does: the split "
                          "first marks the block nT and invalidates it (the "
                          "SMMUv3.2 BBML1 sequence), so a cached block "
                          "cannot conflict with a new page.",
                          "BBML1 nT sequence (block descriptor bit 16)", _BOOL)
    ttl_hints: bool = _opt(True, "Whether the SMMU honours the TTL hint "
                           "arm-smmu-v3 puts in CMD_TLBI_NH_VA with range "
                           "invalidation (v5.7 on), removing only entries "
                           "cached at the hinted level.",
                           "SMMU_IDR3.RIL; CMD_TLBI_NH_VA TG/TTL/NUM/SCALE",
                           _BOOL)
    caller: str = _opt("raw", "who calls the IOMMU API", "VFIO type1, "
                       "dma-iommu or a raw user (GPU, SVA)", tuple(CALLERS))
    split_sync: bool | None = _opt(
        None, "Whether arm_lpae_split_blk_unmap invalidates and syncs the "
        "unmapped page itself, as v4.20 did (commit b6b65ca20bc9), instead "
        "of adding it to the caller's iommu_iotlb_gather as v5.4 to v6.12 "
        "do (None: as the era does).", "arm_lpae_split_blk_unmap's "
        "io_pgtable_tlb_add_flush + tlb_sync (v4.20)", (None, True, False))
    deferred_gather: bool = _opt(True, "Whether pages added to an "
                                 "iommu_iotlb_gather wait for the caller's "
                                 "iommu_iotlb_sync, as since v5.4 (struct "
                                 "iommu_iotlb_gather), or are invalidated at "
                                 "once.",
                                 "iommu_iotlb_gather_add_page deferral", _BOOL)
    asid: int = _opt(1, "the domain's ASID", "arm_smmu_domain's cd.asid")
    fq_size: int = _opt(256, "flush-queue slots (at least 2)",
                        "IOVA_DEFAULT_FQ_SIZE")
    fq_timeout_ms: float = _opt(10, "flush-queue timeout in ms (positive)",
                                "IOVA_DEFAULT_FQ_TIMEOUT")
    oas: int = _opt(48, "output address size in bits", "io_pgtable_cfg.oas")

    def __post_init__(self):
        check_kernel(self.kernel)
        if self.personality not in PERSONALITIES:
            raise ValueError(f"personality {self.personality!r} is not one of "
                             + ", ".join(PERSONALITIES))
        if self.bbml not in (0, 1, 2):
            raise ValueError(f"bbml {self.bbml!r} must be 0, 1 or 2 "
                             "(SMMU_IDR3.BBML)")
        if self.caller not in CALLERS:
            raise ValueError(f"caller {self.caller!r} is not one of "
                             + ", ".join(CALLERS))
        tlb_entries = self.tlb_entries
        if tlb_entries is None:
            tlb_entries = 256 if self.personality == "coherent" else 64
            object.__setattr__(self, "tlb_entries", tlb_entries)
        if not isinstance(tlb_entries, int) or tlb_entries < 1:
            raise ValueError(f"tlb_entries {tlb_entries!r} must be at least 1")
        if self.tlb_replacement not in ("lru", "fifo"):
            raise ValueError(f"tlb_replacement {self.tlb_replacement!r} must "
                             "be 'lru' or 'fifo'")
        if self.fq_size < 2 or self.fq_timeout_ms <= 0:
            raise ValueError("the flush queue needs at least 2 slots and a "
                             "positive timeout")
        if self.fmt == "v7s":
            # the drivers that use v7s (arm-smmu.c for SMMUv1/v2, MediaTek,
            # Renesas) have no range invalidation, hence no TTL hints; the
            # format translates 32-bit input addresses
            object.__setattr__(self, "ttl_hints", False)
            object.__setattr__(self, "ias", 32)
            if self.split_nt:
                raise ValueError("split_nt: the nT bit is an LPAE block "
                                 "descriptor bit; v7s has none")
        elif self.fmt != "lpae":
            raise ValueError(f"fmt {self.fmt!r} must be 'lpae' or 'v7s'")

    @property
    def coherent(self) -> bool:
        """QEMU's model: commands act when queued, no walk cache."""
        return self.personality == "coherent"

    @property
    def ttl_in_use(self) -> bool:
        """Range TLBIs with TTL hints: the SMMU has them (``ttl_hints``)
        and the driver sends them (v5.7+, 6a481a95d4c1)."""
        return self.ttl_hints and era_at_least(self.kernel, (5, 7))

    def as_dict(self) -> dict:
        """The keyword arguments that make this configuration again."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def option(cls, name: str) -> dict:
        """``name``'s default and metadata (``help``, ``feature``,
        ``choices``)."""
        for f in dataclasses.fields(cls):
            if f.name == name:
                return dict(f.metadata, name=name, default=f.default)
        raise KeyError(f"{name!r} is not an option of SimConfig; known: "
                       + ", ".join(f.name for f in dataclasses.fields(cls)))

    @classmethod
    def options(cls) -> list[dict]:
        """Every option, in declaration order, as :meth:`option` gives it."""
        return [cls.option(f.name) for f in dataclasses.fields(cls)]
