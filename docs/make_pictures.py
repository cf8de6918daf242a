"""Make the README picture, docs/split.png.

The seed thread's case (Linux v5.4, strict mode, an SMMU without BBML):
iommu_unmap_fast() of one 4 KiB page inside a 2 MiB block the TLB has
cached. arm_lpae_split_blk_unmap replaces the block by a table and only
adds the page to the caller's gather, so until iommu_iotlb_sync() the old
block is still in the TLB (stale for the unmapped page) and, once the SMMU
caches a page of the new table next to it, a TLB conflict is allowed.

The picture shows the page-table tree at the device's stale access (top)
and the timeline of the whole run (bottom).

Run: .venv/bin/python docs/make_pictures.py
"""

from pathlib import Path

from iommu_viz import SZ_2M, SZ_4K
from iommu_viz.render.export import stack_pngs, step_dot, to_png
from iommu_viz.render.timeline import timeline_figure
from iommu_viz.sim import Simulation

HERE = Path(__file__).resolve().parent
BLOCK = 0x40000000


def seed_run():
    sim = Simulation(kernel="v5.4", strict=True, bbml=0,
                     personality="typical")
    sim.map(BLOCK, 0x80000000, SZ_2M)
    sim.access(BLOCK + SZ_4K)                 # the TLB caches the block
    g = sim.new_gather()
    sim.unmap_fast(BLOCK + SZ_4K, SZ_4K, g)   # split, page added to gather
    sim.speculate(BLOCK + 2 * SZ_4K)          # SMMU caches a new 4K page
    sim.access(BLOCK + SZ_4K)                 # stale: the old block wins
    sim.access(BLOCK + 2 * SZ_4K)
    sim.iotlb_sync(g)                         # TLBI + CMD_SYNC
    sim.access(BLOCK + SZ_4K)                 # now it faults
    sim.advance(10)
    return sim


def main():
    sim = seed_run()
    step = next(e.step for e in sim.events
                if e.kind == "access" and e.detail["outcome"] == "stale")
    tree = to_png(step_dot(sim, step, title=(
        f"Step {step}: v5.4 iommu_unmap_fast() split the 2M block; "
        "before iommu_iotlb_sync() the TLB still holds it")), dpi=80)
    fig = timeline_figure(sim, title=(
        "Timeline: kernel v5.4, strict, BBML0, typical SMMU "
        "(iommu_unmap_fast, then iommu_iotlb_sync)"), width=9, mark=step)
    out = HERE / "split.png"
    out.write_bytes(stack_pngs([tree, to_png(fig, dpi=100)]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
