"""The named scenarios are shipped files; the keyword options the
Explorer, the notebooks and the command pass still give the runs the
Python functions gave. The oracle below is those functions' calls,
written against the Simulation API."""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path

import pytest

from iommu_viz import SZ_1G, SZ_2M, SZ_4K, ApiError, Simulation, scenarios
from iommu_viz.scenarios import BLOCK_IOVA, BLOCK_PA, NEIGHBOUR, PAGE

ROOT = Path(__file__).resolve().parents[2]
KNOBS = ("fast", "sync_after", "speculate")


def _sim(kw, **forced):
    opts = {k: v for k, v in kw.items() if k not in KNOBS}
    return Simulation(**dict(opts, **forced))


def _unmap(sim, kw, iova, size):
    if kw.get("fast", False):
        g = sim.new_gather()
        sim.unmap_fast(iova, size, g)
        return g
    sim.unmap(iova, size)
    return None


def oracle_seed(**kw):
    sim = _sim(kw)
    sim.map(BLOCK_IOVA, BLOCK_PA, SZ_2M)
    sim.access(PAGE)
    g = _unmap(sim, kw, PAGE, SZ_4K)
    if kw.get("speculate", False):
        sim.speculate(NEIGHBOUR)
    sim.access(PAGE)
    sim.access(NEIGHBOUR)
    if g is not None and kw.get("sync_after", True):
        sim.iotlb_sync(g)
        sim.access(PAGE)
    sim.advance(11)
    sim.access(PAGE)
    sim.access(NEIGHBOUR)
    return sim


def oracle_strict_vs_lazy(**kw):
    sim = _sim(kw, caller="dma")
    buf = 0x10000000
    sim.map(buf, 0x90000000, 4 * SZ_4K)
    for i in range(4):
        sim.access(buf + i * SZ_4K, write=True)
    sim.unmap(buf, 4 * SZ_4K)
    for ms in (None, 5, 6):
        if ms:
            sim.advance(ms)
        sim.access(buf + SZ_4K, write=True)
    return sim


def oracle_vfio_refuses(**kw):
    sim = _sim(kw, caller="vfio")
    sim.map(BLOCK_IOVA, BLOCK_PA, SZ_2M)
    sim.access(PAGE)
    with pytest.raises(ApiError):
        sim.unmap(PAGE, SZ_4K)
    sim.access(PAGE)
    sim.unmap(BLOCK_IOVA, SZ_2M)
    sim.access(PAGE)
    return sim


def oracle_gigabyte_split(**kw):
    sim = _sim(kw)
    sim.map(0x40000000, 0x40000000 + SZ_1G, SZ_1G)
    sim.access(0x40001000)
    g = _unmap(sim, kw, 0x40001000, SZ_4K)
    if g is not None and kw.get("sync_after", True):
        sim.iotlb_sync(g)
    sim.access(0x40001000)
    sim.access(0x40201000)
    return sim


ORACLES = {
    "seed": (oracle_seed, {}),
    "seed-conflict": (oracle_seed, {"fast": True, "speculate": True}),
    "strict-vs-lazy": (oracle_strict_vs_lazy, {}),
    "vfio-refuses": (oracle_vfio_refuses, {}),
    "gigabyte-split": (oracle_gigabyte_split, {}),
    "ttl-split": (oracle_seed, {"kernel": "v6.12", "ttl_hints": True}),
}

SETTINGS = [{}, {"kernel": "v4.20"}, {"kernel": "v6.13", "strict": False},
            {"fmt": "v7s", "split_sync": True},
            {"kernel": "v6.12", "bbml": 1, "split_nt": True,
             "personality": "adversarial", "deferred_gather": False}]


@pytest.mark.parametrize("name", list(ORACLES))
def test_named_files_run_as_the_functions_did(name):
    oracle, defaults = ORACLES[name]
    every_knob = [{k: v for k, v in zip(KNOBS, knobs) if v is not None}
                  for knobs in itertools.product([None, False, True],
                                                 repeat=3)]
    some_knobs = [{}, {"fast": True, "sync_after": False},
                  {"fast": False, "speculate": True}]
    cases = [(given, {}) for given in every_knob] + [
        (given, extra) for extra in SETTINGS[1:] for given in some_knobs]
    for given, extra in cases:
        kw = dict(given, **extra)
        want = oracle(**dict(defaults, **kw))
        got = scenarios.run(name, **kw)
        assert got.events == want.events, (name, kw)
        assert got.config == want.config, (name, kw)


def test_the_explorer_s_full_option_set_is_accepted():
    """The Explorer passes every key of DEFAULTS to every scenario."""
    opts = dict(scenarios.DEFAULTS)
    for name in scenarios.names():
        assert scenarios.get(name)(**opts).events
    with pytest.raises(ValueError, match="unknown scenario option"):
        scenarios.run("seed", colour="red")
    with pytest.raises(ValueError, match="no scenario 'nope'"):
        scenarios.get("nope")


def test_defaults_are_simulation_s():
    sim_defaults = scenarios.sim_options()
    for k, v in scenarios.DEFAULTS.items():
        assert v == (sim_defaults[k] if k in sim_defaults
                     else scenarios.KNOBS[k])


def test_list_is_unchanged(capsys):
    from iommu_viz.cli import main
    assert main(["scenario", "--list"]) == 0
    assert capsys.readouterr().out == """\
seed            The seed thread's case: map a 2 MiB block, the device...
seed-conflict   Robin Murphy's concern: after the split, a speculativ...
strict-vs-lazy  A DMA buffer of 4 pages is mapped, used and unmapped;...
vfio-refuses    VFIO type1 never splits: a partial unmap of its 2 MiB...
gigabyte-split  Unmapping 4K out of a 1 GiB block splits twice: a tab...
ttl-split       v6.12 on an SMMU with range invalidation: the sync af...
"""


def test_show_file_prints_the_shipped_file(capsys):
    from iommu_viz.cli import main
    for name in scenarios.names():
        assert main(["scenario", name, "--show-file"]) == 0
        text = capsys.readouterr().out
        assert text == scenarios.named(name).text
        assert scenarios.parse(text).run().events == \
            scenarios.run(name).events


def test_pyproject_ships_the_files():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["iommu_viz.scenarios"]
    pkg = ROOT / "iommu_viz" / "scenarios"
    shipped = {p for g in globs for p in pkg.glob(g)}
    assert shipped == set((pkg / "files").glob("*.scn"))
    assert {p.stem for p in shipped} == set(scenarios.names())
