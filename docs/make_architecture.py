"""Make docs/architecture.svg: the layers of the model and the interface
each one calls the next through, named after the kernel code it models.

Run: .venv/bin/python docs/make_architecture.py
"""

from pathlib import Path

import graphviz

HERE = Path(__file__).resolve().parent

#: (node, module, what it models); top to bottom as the calls go
LAYERS = [
    ("facade", "sim/system.py", "Simulation: wires the layers,\nkeeps the clock, records the run"),
    ("callers", "sim/callers.py", "the API's users: VFIO type1,\nthe DMA API, a raw user"),
    ("dma", "sim/dma_iommu.py", "dma-iommu.c, iova.c:\nlazy unmap, flush queue"),
    ("iommu", "sim/iommu.py", "iommu.c, iommu.h: map, unmap,\nunmap_fast, iotlb_sync, gathers"),
    ("pgtable", "pgtable/lpae.py, v7s.py", "io-pgtable-arm.c,\nio-pgtable-arm-v7s.c"),
    ("driver", "sim/arm_smmu_v3.py", "arm-smmu-v3.c: flush ops,\nTLBI (range, TTL), CMD_SYNC"),
    ("smmu", "sim/smmu.py", "SMMUv3 hardware: TLB, walk cache,\ncommand queue, BBML, personalities"),
    ("device", "sim/device.py", "a DMA device\n(reads, writes by iova)"),
]

#: (from, to, interface, style)
CALLS = [
    ("facade", "dma", "unmap (lazy)", "solid"),
    ("facade", "iommu", "map, unmap, unmap_fast,\niotlb_sync, flush_all", "solid"),
    ("facade", "device", "access", "solid"),
    ("callers", "iommu", "which unmaps\nare refused", "dashed"),
    ("dma", "iommu", "unmap with a\nqueued gather", "solid"),
    ("dma", "driver", "flush_iotlb_all", "solid"),
    ("iommu", "pgtable", "map_pages,\nunmap_pages", "solid"),
    ("iommu", "driver", "iommu_domain_ops:\niotlb_sync,\nflush_iotlb_all", "solid"),
    ("pgtable", "driver", "iommu_flush_ops:\ntlb_flush_walk,\ntlb_add_page, ...", "solid"),
    ("driver", "iommu", "iommu_iotlb_gather_\nadd_page", "dashed"),
    ("driver", "smmu", "command queue:\nsubmit, sync", "solid"),
    ("device", "smmu", "translate\n(a transaction)", "solid"),
    ("smmu", "pgtable", "table walk", "dashed"),
]

SIDE = [
    ("trace", "sim/trace.py", "Clock, Recorder: events,\nstates, ops (every layer emits)"),
    ("snapshot", "sim/snapshot.py", "the State after each event:\nstale and conflict windows"),
    ("config", "sim/config.py", "SimConfig: every option,\nvalidated, with its feature"),
    ("pgsize", "sim/pgsize.py", "iommu_pgsize\n(iommu.c)"),
    ("errors", "errors.py", "IommuVizError: ApiError,\nPgtableError"),
]


#: each side module sits beside the layer named here (a rank of its own)
BESIDE = {"trace": "facade", "snapshot": "dma", "config": "iommu",
          "pgsize": "pgtable", "errors": "driver"}


def graph() -> graphviz.Digraph:
    g = graphviz.Digraph("architecture", format="svg")
    g.attr(rankdir="TB", fontname="Helvetica", nodesep="0.3", ranksep="0.5",
           newrank="true", label="iommu_viz: the layers. Solid: a call "
           "through the kernel's interface; dashed: a read or a helper. "
           "Right, dashed boxes: modules every layer reads or reports to.",
           labelloc="b", fontsize="11")
    g.attr("node", shape="box", style="rounded,filled", fillcolor="#eef3f8",
           fontname="Helvetica", fontsize="11")
    g.attr("edge", fontname="Helvetica", fontsize="9", color="#333333")
    for name, module, what in LAYERS:
        fill = {"facade": "#f7f0dc", "smmu": "#dde8f3",
                "device": "#dde8f3"}.get(name, "#eef3f8")
        g.node(name, f"{module}\n{what}", fillcolor=fill)
    for name, module, what in SIDE:
        g.node(name, f"{module}\n{what}", fillcolor="#ffffff",
               style="rounded,dashed", fontsize="10")
    for a, b, label, style in CALLS:
        g.edge(a, b, label=label, style=style)
    for (a, _, _), (b, _, _) in zip(SIDE, SIDE[1:]):
        g.edge(a, b, style="invis")
    for side, layer in BESIDE.items():
        with g.subgraph() as same:
            same.attr(rank="same")
            same.node(layer)
            same.node(side)
    with g.subgraph() as same:
        same.attr(rank="same")
        same.node("callers")
        same.node("dma")
    with g.subgraph() as same:
        same.attr(rank="same")
        same.node("smmu")
        same.node("device")
    return g


def main():
    svg = graph().pipe(format="svg").decode()
    (HERE / "architecture.svg").write_text(svg)
    print("written docs/architecture.svg")


if __name__ == "__main__":
    main()
