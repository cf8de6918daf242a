"""The layers of iommu_viz.sim: each reaches the next only through the
interface the kernel has there, the options are declared once
(SimConfig), errors share one base, and one iommu_pgsize serves map and
unmap with the kernel's count."""

import ast
import dataclasses
import pickle
from pathlib import Path

import pytest

from iommu_viz import IommuVizError, PgtableError, SimConfig, Simulation
from iommu_viz.errors import ApiError
from iommu_viz.pgtable.common import SZ_2M, SZ_4K
from iommu_viz.sim.arm_smmu_v3 import ArmSmmuDomain
from iommu_viz.sim.iommu import Gather

SIM = Path(__file__).resolve().parents[2] / "iommu_viz" / "sim"


# ---------------------------------------------------------------- errors
def test_errors_share_one_base_and_survive_pickling():
    assert issubclass(ApiError, IommuVizError)
    assert issubclass(PgtableError, IommuVizError)
    sim = Simulation()
    with pytest.raises(IommuVizError) as info:
        sim.map(0x1001, 0x2000, SZ_4K)
    err = info.value
    assert type(err) is ApiError and err.errno == "EINVAL"
    assert str(err) == f"{err.message} (-EINVAL)"
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), back.errno, back.message, str(back)) == \
        (ApiError, err.errno, err.message, str(err))


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("bad, match", [
    (dict(kernel="v9"), "kernel 'v9' is not a modelled era"),
    (dict(personality="nice"), "personality 'nice'"),
    (dict(bbml=3), r"bbml 3 must be 0, 1 or 2"),
    (dict(caller="x"), "caller 'x'"),
    (dict(tlb_entries=0), "tlb_entries 0 must be at least 1"),
    (dict(tlb_replacement="random"), "tlb_replacement 'random'"),
    (dict(fq_size=1), "flush queue needs at least 2 slots"),
    (dict(fmt="x86"), "fmt 'x86' must be 'lpae' or 'v7s'"),
    (dict(fmt="v7s", split_nt=True), "v7s has none"),
])
def test_config_refuses_what_simulation_refuses(bad, match):
    with pytest.raises(ValueError, match=match):
        SimConfig(**bad)
    with pytest.raises(ValueError, match=match):
        Simulation(**bad)
    good = SimConfig()
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(good, **bad)


def test_every_option_documents_itself():
    names = [o["name"] for o in SimConfig.options()]
    assert names == [f.name for f in dataclasses.fields(SimConfig)]
    for o in SimConfig.options():
        assert o["help"] and o["feature"], o["name"]
        if o["choices"] is not None:
            assert o["default"] in o["choices"] or o["default"] is None, o
    with pytest.raises(KeyError, match="'colour' is not an option"):
        SimConfig.option("colour")


def test_config_resolves_what_the_run_uses():
    assert SimConfig(personality="coherent").tlb_entries == 256
    v7s = SimConfig(fmt="v7s")
    assert (v7s.ias, v7s.ttl_hints) == (32, False)
    assert not SimConfig(kernel="v5.4").ttl_in_use
    assert SimConfig(kernel="v6.12").ttl_in_use


def test_simulation_from_config_and_toggle():
    cfg = SimConfig(kernel="v6.12", strict=False)
    sim = Simulation(cfg, bbml=2)
    assert sim.cfg == dataclasses.replace(cfg, bbml=2)
    assert sim.config == sim.cfg.as_dict()
    assert Simulation(**sim.config).config == sim.config
    assert (sim.kernel, sim.strict, sim.bbml, sim.tlb_entries) == \
        ("v6.12", False, 2, 64)
    with pytest.raises(AttributeError, match="no attribute 'colour'"):
        sim.colour
    with pytest.raises(TypeError, match="SimConfig or keyword options"):
        Simulation("lpae")


# ---------------------------------------------------------------- iommu_pgsize
def _unmap_calls(kernel, iova, size, block=False):
    sim = Simulation(kernel=kernel)
    if block:
        sim.map(0, 0x80000000, SZ_2M)
        sim.map(SZ_2M, 0x80200000, SZ_2M)
    else:
        sim.map(0, 0x80000000, 2 * SZ_2M + SZ_4K)
    calls = []
    real = sim.pt.unmap

    def spy(iova, size, gather=None, count=1):
        calls.append((iova, size, count))
        return real(iova, size, gather, count)
    sim.pt.unmap = spy
    got = sim.unmap(iova, size)
    return got, calls, sim


def test_unmap_2m_at_0x1000_hands_512_pages_in_one_call_v612():
    # iommu_pgsize (v6.12): no 2 MiB page fits in [0x1000, 0x201000), so the
    # count is not cut at the 2 MiB boundary: (4K, 512), as iommu.c does
    got, calls, _ = _unmap_calls("v6.12", 0x1000, SZ_2M)
    assert got == SZ_2M
    assert calls == [(0x1000, SZ_4K, 512)]
    # with room for a 2 MiB page after the boundary it stops there
    got, calls, _ = _unmap_calls("v6.12", 0x1000, 2 * SZ_2M)
    assert calls[0] == (0x1000, SZ_4K, 511)
    assert calls[1] == (SZ_2M, SZ_2M, 1)


def test_unmap_before_v514_goes_page_by_page():
    got, calls, _ = _unmap_calls("v5.4", 0x1000, SZ_2M)
    assert got == SZ_2M and len(calls) == 512
    assert {c[2] for c in calls} == {1}


def test_unmap_2m_at_0x1000_across_two_blocks_splits_both():
    for kernel in ("v5.4", "v6.12"):
        got, calls, sim = _unmap_calls(kernel, 0x1000, SZ_2M, block=True)
        assert got == SZ_2M
        # both blocks were split: 0x0 and 0x201000 stay mapped as pages
        for iova, mapped in ((0, True), (0x1000, False), (0x1ff000, False),
                             (0x200000, False), (0x201000, True)):
            tr = sim.pt.translate(iova)
            assert (tr is not None) == mapped, hex(iova)
            assert tr is None or tr.size == SZ_4K
    # v6.13 refuses to split: nothing is unmapped
    got, calls, sim = _unmap_calls("v6.13", 0x1000, SZ_2M, block=True)
    assert got == 0 and sim.pt.translate(0x1000).size == SZ_2M


# ---------------------------------------------------------------- interfaces
class FakeSmmu:
    """Only the command queue's two doors."""

    def __init__(self):
        self.calls = []

    def submit(self, op, func, **fields):
        self.calls.append((op, func, fields))

    def sync(self, func):
        self.calls.append(("CMD_SYNC", func, {}))

    def write_cd(self, pt, tg):
        self.calls.append(("CD", pt, tg))


class FakeRec:
    def __init__(self):
        self.events = []

    def emit(self, actor, kind, func, text, **detail):
        self.events.append((kind, func))


def test_driver_reaches_the_smmu_only_through_submit_and_sync():
    smmu, rec = FakeSmmu(), FakeRec()
    drv = ArmSmmuDomain(SimConfig(kernel="v6.12"), smmu, rec)

    class Pt:
        pgsize_bitmap = SZ_4K | SZ_2M | (1 << 30)
    drv.finalise(Pt)
    assert smmu.calls == [("CD", Pt, 12)]
    smmu.calls.clear()
    drv.tlb_flush_walk(0x40000000, SZ_2M, SZ_4K)
    # one range TLBI for 512 pages (NUM=0, SCALE=9, TG=4K, TTL=0 non-leaf
    # in v6.6+), then CMD_SYNC
    assert smmu.calls == [
        ("CMD_TLBI_NH_VA", "arm_smmu_tlb_inv_walk",
         dict(asid=1, addr=0x40000000, leaf=False, tg=1, ttl=0, num=0,
              scale=9)),
        ("CMD_SYNC", "arm_smmu_tlb_inv_walk", {})]
    smmu.calls.clear()
    g = Gather(None, 7)
    drv.tlb_add_page(g, 0x40001000, SZ_4K)
    drv.tlb_add_page(g, 0x40002000, SZ_4K)
    assert smmu.calls == []            # gathered, nothing issued
    assert (g.start, g.end, g.pgsize) == (0x40001000, 0x40003000, SZ_4K)
    drv.iotlb_sync(g)
    assert [c[0] for c in smmu.calls] == ["CMD_TLBI_NH_VA", "CMD_SYNC"]
    # two 4K pages: TTL=3 (leaf at level 3), (NUM + 1) << SCALE = 1 << 1
    f = smmu.calls[0][2]
    assert (f["addr"], f["ttl"], f["num"], f["scale"]) == (0x40001000, 3, 0, 1)


def _imports(module):
    tree = ast.parse((SIM / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out.add(node.module)
    return out


# who may import whom inside sim/: a layer knows the layer below it (by
# its interface), never the one above, and the hardware no software layer
ALLOWED = {
    "iommu": {"pgsize", "trace"},
    "dma_iommu": {"trace"},
    "arm_smmu_v3": {"iommu"},          # the gather helpers of iommu.h
    "smmu": {"trace"},
    "device": set(),
    "callers": set(),
    "snapshot": {"smmu", "trace"},
    "trace": set(),
    "pgsize": set(),
    "config": {"callers", "smmu"},
}


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_layer_imports(module):
    assert _imports(module) <= ALLOWED[module]


def test_no_grab_bag():
    for path in SIM.glob("*.py"):
        text = path.read_text()
        assert len(text.splitlines()) <= 500, path.name
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                n = node.end_lineno - node.lineno + 1
                assert n <= 400, f"{path.name}: class {node.name} {n} lines"


def test_sim_uses_no_private_pgtable_names():
    for path in SIM.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__") \
                    and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "pt":
                raise AssertionError(f"{path.name}: pt.{node.attr}")


def test_architecture_doc_names_every_module():
    import importlib.util
    root = SIM.parents[1]
    doc = (root / "docs" / "architecture.md").read_text()
    spec = importlib.util.spec_from_file_location(
        "make_architecture", root / "docs" / "make_architecture.py")
    pic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pic)
    drawn = {m for _, m, _ in pic.LAYERS + pic.SIDE}
    for path in SIM.glob("*.py"):
        if path.name == "__init__.py":
            continue
        name = f"sim/{path.name}"
        assert f"`{name}`" in doc, name
        assert name in drawn, name
