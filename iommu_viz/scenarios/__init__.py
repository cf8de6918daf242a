"""Named, parameterised scenarios: the 2019 thread's cases and more.

A scenario is a function that drives a :class:`~iommu_viz.Simulation` and
returns it. Every scenario takes the same keyword options, so widgets and
the command line can flip them:

``fmt``         page-table format, ``"lpae"`` or ``"v7s"`` (2 MiB then
                means two 1 MiB sections)
``kernel``      era, ``"v4.20"``, ``"v5.4"``, ``"v6.12"``, ``"v6.13"``
``strict``      False for lazy mode (flush queue)
``fast``        use ``iommu_unmap_fast`` (and ``sync_after``) instead of
                ``iommu_unmap``
``sync_after``  with ``fast``: whether the caller calls ``iotlb_sync``
``split_sync``  None (era default) or force the split's own sync on/off
``deferred_gather``  False: each gathered page is invalidated at once
``bbml``, ``personality``, ``ttl_hints``, ``walk_cache``, ``tlb_entries``
``speculate``   the SMMU speculatively caches a neighbouring page
``split_nt``    the split follows the BBML1 nT sequence (an experiment)

Example::

    >>> from iommu_viz import scenarios
    >>> sim = scenarios.get("seed")(kernel="v5.4", fast=True, sync_after=False)
    >>> [a.outcome for a in sim.accesses]     # before unmap, page, neighbour, ...
    ['translated', 'stale', 'translated', 'stale', 'translated']
    >>> [name for name, _ in scenarios.catalog()][:2]
    ['seed', 'seed-conflict']
"""

from __future__ import annotations

from ..pgtable.common import SZ_2M, SZ_4K, SZ_1G
from ..sim import ApiError, Simulation

BLOCK_IOVA = 0x40000000
BLOCK_PA = 0x80000000
PAGE = BLOCK_IOVA + 0x1000       # the 4K page unmapped out of the block
NEIGHBOUR = BLOCK_IOVA + 0x2000  # a page that stays mapped

_SIM_KEYS = ("kernel", "strict", "bbml", "personality", "ttl_hints",
             "walk_cache", "tlb_entries", "split_sync", "deferred_gather",
             "caller", "fmt", "granule", "split_nt")

DEFAULTS = dict(fmt="lpae", kernel="v5.4", strict=True, fast=False,
                sync_after=True,
                split_sync=None, deferred_gather=True, bbml=0,
                personality="typical", ttl_hints=True, walk_cache=True,
                tlb_entries=None, speculate=False, split_nt=False)


def _sim(opts):
    return Simulation(**{k: v for k, v in opts.items() if k in _SIM_KEYS})


def _opts(kw):
    unknown = set(kw) - set(DEFAULTS) - set(_SIM_KEYS)
    if unknown:
        raise ValueError("unknown scenario option(s): " + ", ".join(sorted(unknown))
                         + "; known: " + ", ".join(sorted(DEFAULTS)))
    o = dict(DEFAULTS)
    o.update(kw)
    return o


def _partial_unmap(sim, o, iova, size):
    """Unmap part of a block the way the options say."""
    if o["fast"]:
        g = sim.new_gather()
        sim.unmap_fast(iova, size, g)
        return g
    sim.unmap(iova, size)
    return None


def seed(**kw) -> Simulation:
    """The seed thread's case: map a 2 MiB block, the device reads it,
    unmap one 4K page inside it, the device reads the page and a
    neighbour, then the caller syncs (if it does) and time passes."""
    o = _opts(kw)
    sim = _sim(o)
    sim.map(BLOCK_IOVA, BLOCK_PA, SZ_2M)
    sim.access(PAGE)
    g = _partial_unmap(sim, o, PAGE, SZ_4K)
    if o["speculate"]:
        sim.speculate(NEIGHBOUR)
    sim.access(PAGE)
    sim.access(NEIGHBOUR)
    if g is not None and o["sync_after"]:
        sim.iotlb_sync(g)
        sim.access(PAGE)
    sim.advance(11)
    sim.access(PAGE)
    sim.access(NEIGHBOUR)
    return sim


def seed_conflict(**kw) -> Simulation:
    """Robin Murphy's concern: after the split, a speculative walk caches
    a new 4K page next to the old block still in the TLB; an access may
    now raise a TLB conflict (BBML 0/1) until the sync."""
    kw.setdefault("speculate", True)
    kw.setdefault("fast", True)
    return seed(**kw)


def strict_vs_lazy(**kw) -> Simulation:
    """A DMA buffer of 4 pages is mapped, used and unmapped; in lazy mode
    its pages stay reachable until the flush queue's timer (10 ms)."""
    o = _opts(kw)
    sim = _sim(dict(o, caller="dma"))
    buf = 0x10000000
    sim.map(buf, 0x90000000, 4 * SZ_4K)
    for i in range(4):
        sim.access(buf + i * SZ_4K, write=True)
    sim.unmap(buf, 4 * SZ_4K)
    sim.access(buf + SZ_4K, write=True)
    sim.advance(5)
    sim.access(buf + SZ_4K, write=True)
    sim.advance(6)
    sim.access(buf + SZ_4K, write=True)
    return sim


def vfio_refuses(**kw) -> Simulation:
    """VFIO type1 never splits: a partial unmap of its 2 MiB mapping is
    refused (vfio_dma_do_unmap), so the block stays whole."""
    o = _opts(kw)
    sim = _sim(dict(o, caller="vfio"))
    sim.map(BLOCK_IOVA, BLOCK_PA, SZ_2M)
    sim.access(PAGE)
    try:
        sim.unmap(PAGE, SZ_4K)
    except ApiError:        # the refusal: the run is unchanged
        pass
    sim.access(PAGE)
    sim.unmap(BLOCK_IOVA, SZ_2M)
    sim.access(PAGE)
    return sim


def gigabyte_split(**kw) -> Simulation:
    """Unmapping 4K out of a 1 GiB block splits twice: a table of 2 MiB
    blocks, then a table of 4K pages under the first."""
    o = _opts(kw)
    sim = _sim(o)
    sim.map(0x40000000, 0x40000000 + SZ_1G, SZ_1G)
    sim.access(0x40001000)
    g = _partial_unmap(sim, o, 0x40001000, SZ_4K)
    if g is not None and o["sync_after"]:
        sim.iotlb_sync(g)
    sim.access(0x40001000)
    sim.access(0x40201000)
    return sim


def ttl_split(**kw) -> Simulation:
    """v6.12 on an SMMU with range invalidation: the sync after the split
    carries TTL=3 (the 4K page's level) while the TLB holds the 2 MiB
    block at level 2, so the architecture does not require it to go."""
    kw.setdefault("kernel", "v6.12")
    kw.setdefault("ttl_hints", True)
    return seed(**kw)


_CATALOG = {
    "seed": seed,
    "seed-conflict": seed_conflict,
    "strict-vs-lazy": strict_vs_lazy,
    "vfio-refuses": vfio_refuses,
    "gigabyte-split": gigabyte_split,
    "ttl-split": ttl_split,
}


def catalog():
    """``[(name, one-line description), ...]`` in a fixed order."""
    out = []
    for n, f in _CATALOG.items():
        text = " ".join(f.__doc__.split())
        out.append((n, text.split(". ")[0].rstrip(".") + "."))
    return out


def get(name: str):
    """The scenario function called ``name``."""
    try:
        return _CATALOG[name]
    except KeyError:
        raise ValueError(f"no scenario {name!r}; choose one of "
                         + ", ".join(_CATALOG)) from None


def run(name: str, **kw) -> Simulation:
    """Run scenario ``name`` with options ``kw``."""
    return get(name)(**kw)
