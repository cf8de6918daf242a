"""The scenario file format: what a file says, what it runs, and the
errors (file, line, rule) for what it must not say."""

from __future__ import annotations

from pathlib import Path

import pytest

from iommu_viz import SZ_2M, SZ_4K, Simulation
from iommu_viz.scenarios import OPS, ScenarioError, load, parse, to_text
from iommu_viz.scenarios.format import parse_number, sim_options

#: the issue's example (the seed thread as a scenario file)
SEED = (Path(__file__).resolve().parent / "issue-example.scn").read_text()


def by_hand():
    """The issue's example written against the Simulation API."""
    sim = Simulation(kernel="v5.4", strict=True, bbml=0,
                     personality="adversarial")
    sim.map(0x40000000, 0x80000000, SZ_2M)
    sim.access(0x40001000)
    g = sim.new_gather()
    sim.unmap_fast(0x40001000, SZ_4K, g)
    sim.access(0x40001000)
    sim.speculate(0x40002000)
    sim.access(0x40002000)
    sim.iotlb_sync(g)
    sim.access(0x40001000)
    return sim


def test_the_issue_example_runs_as_the_api_calls_do():
    sc = parse(SEED, source="seed.scn")
    assert sc.labels == ["A1", "A2", "A3"]
    assert sc.config == {"kernel": "v5.4", "strict": True, "bbml": 0,
                         "personality": "adversarial"}
    assert sc.description == ("the seed thread: unmap 4K of a live 2M "
                              "block without a sync")
    sim = sc.run()
    assert sim.events == by_hand().events
    assert [op.get("label") for op in sim.ops if op["op"] == "access"] == \
        [None, "A1", "A2", "A3"]
    # the adversarial SMMU picks the worst allowed outcome
    assert [a.outcome for a in sim.accesses] == \
        ["translated", "stale", "conflict", "fault"]


def test_overrides_replace_config_and_the_file_is_unchanged():
    sc = parse(SEED)
    sim = sc.run(kernel="v4.20", smmu="typical")
    assert sim.config["kernel"] == "v4.20"
    assert sim.config["personality"] == "typical"
    assert sc.config["kernel"] == "v5.4"
    with pytest.raises(ScenarioError, match="unknown option: 'colour'"):
        sc.run(colour="red")


def test_syntax_details():
    sc = parse("""
config lazy granule=64K ttl_hints=no split_sync=none tlb_entries=8
map 0x100000 0x200000 0x10000 read   # a read-only page
map 2M 0x300000 64K read|write|cache
access 0x100000 write
advance 2.5ms
flush_all
new_gather x
iotlb_sync x
""")
    assert sc.config == {"strict": False, "granule": 0x10000,
                         "ttl_hints": False, "split_sync": None,
                         "tlb_entries": 8}
    sim = sc.run()
    assert sim.ops[0]["prot"] == 1 and sim.ops[1]["prot"] == 7
    assert sim.ops[1]["iova"] == 2 << 20
    assert sim.accesses[0].outcome == "fault"        # write to read-only
    assert sim.now_us == 2500
    assert [op["op"] for op in sim.ops][-2:] == ["new_gather", "iotlb_sync"]


def test_params_and_guards():
    text = """
param fast=no
map 0x40000000 0x80000000 2M
[fast] gather g
[fast] unmap_fast 0x40001000 4K g
[!fast] unmap 0x40001000 4K
[fast] late: access 0x40001000
"""
    sc = parse(text)
    assert sc.params == {"fast": False}
    assert [op["op"] for op in sc.run().ops] == ["map", "unmap"]
    assert [op["op"] for op in sc.run(fast=True).ops] == \
        ["map", "new_gather", "unmap_fast", "access"]
    with pytest.raises(ScenarioError, match="param fast takes True or"):
        sc.run(fast="yes")


def test_refused_lines():
    sc = parse("""
config caller=vfio
map 0x40000000 0x80000000 2M
refused unmap 0x40001000 4K
""")
    assert [op["op"] for op in sc.run().ops] == ["map"]
    with pytest.raises(ScenarioError) as e:
        sc.run(caller="raw")
    assert e.value.line == 4 and e.value.rule == "not refused"


@pytest.mark.parametrize("text, line, rule", [
    ("map 0x0 0x0 4K\nunmpa 0x0 4K", 2, "unknown op"),
    ("map 0x0 0x0 4X", 1, "bad size"),
    ("map 0x0 0x0 0", 1, "bad size"),
    ("map 0x0 0x0 0x2M", 1, "bad size"),
    ("map zero 0x0 4K", 1, "bad address"),
    ("map 0x0 0x0 4K rwx", 1, "bad prot"),
    ("access 0x0 sideways", 1, "bad access"),
    ("advance -1", 1, "bad time"),
    ("map 0x0 0x0", 1, "wrong number of arguments"),
    ("flush_all now", 1, "wrong number of arguments"),
    ("map 0x0 0x0 4K\nsync g", 2, "undefined gather"),
    ("gather g\nunmap_fast 0x0 4K h", 2, "undefined gather"),
    ("config colour=red\nmap 0x0 0x0 4K", 1, "unknown option"),
    ("config fast\nmap 0x0 0x0 4K", 1, "unknown option"),
    ("config\nmap 0x0 0x0 4K", 1, "empty config line"),
    ("config bbml=3\nmap 0x0 0x0 4K", 1, "bad option value"),
    ("config kernel=v9.9\nmap 0x0 0x0 4K", 1, "bad option value"),
    ("config strict=maybe\nmap 0x0 0x0 4K", 1, "bad option value"),
    ("config fmt=v7s split_nt=yes\nmap 0x0 0x0 4K", 1, "bad option value"),
    ("map 0x0 0x0 4K\nconfig lazy", 2, "late config line"),
    ("A: access 0x0\nA: access 0x0", 2, "duplicate label"),
    ("A: map 0x0 0x0 4K", 1, "label on a non-access"),
    ("A:", 1, "missing op"),
    ("[fast] access 0x0", 1, "unknown param"),
    ("param fast=perhaps\naccess 0x0", 1, "bad param"),
    ("param kernel=yes\naccess 0x0", 1, "bad param"),
    ("[fast access 0x0", 1, "bad guard"),
])
def test_errors_name_file_line_and_rule(text, line, rule):
    with pytest.raises(ScenarioError) as e:
        parse(text, source="case.scn")
    assert (e.value.line, e.value.rule) == (line, rule)
    assert str(e.value).startswith(f"case.scn:{line}: {rule}: ")


def test_a_file_of_comments_is_the_empty_run():
    sim = parse("# nothing yet\n\nconfig kernel=v6.13\n").run()
    assert [e.kind for e in sim.events] == ["init"]


@pytest.mark.parametrize("text, line, rule, words", [
    ("map 0x1000 0x0 4K\naccess 0x1000\nmap 0x40000800 0x0 4K", 3,
     "refused by the model", "unaligned"),
    ("map 0x0 0x0 4K\nmap 0x0 0x0 4K", 2, "refused by the model", "EEXIST"),
    ("param f=no\n[f] gather g\nmap 0x0 0x0 4K\nsync g", 4,
     "undefined gather", "line 2"),
])
def test_model_refusals_name_the_line(text, line, rule, words):
    sc = parse(text, source="case.scn")
    with pytest.raises(ScenarioError) as e:
        sc.run()
    assert (e.value.line, e.value.rule) == (line, rule)
    assert words in str(e.value)


def test_options_are_simulation_s_own():
    """Every keyword of Simulation is a config option (nothing copied),
    and its values are read by the type of its default."""
    opts = sim_options()
    assert {"kernel", "fmt", "granule", "ias", "strict", "bbml",
            "personality", "ttl_hints", "caller", "split_sync",
            "tlb_entries"} <= set(opts)
    for name in opts:
        sc = parse(f"config {name}={_text(opts[name])}\naccess 0x0")
        assert sc.config[name] == opts[name]


def _text(default):
    return {None: "none", True: "yes", False: "no"}.get(default, default) \
        if not isinstance(default, int) or isinstance(default, bool) \
        else str(default)


def test_numbers():
    assert [parse_number(s) for s in ("0x1000", "4096", "4K", "4k", "2M",
                                      "1G", "4KiB", "1_000")] == \
        [4096, 4096, 4096, 4096, 2 << 20, 1 << 30, 4096, 1000]
    for bad in ("4X", "0x1K", "", "-1", "K"):
        with pytest.raises(ValueError):
            parse_number(bad)


def test_load_takes_a_path_a_name_or_text(tmp_path):
    f = tmp_path / "case.scn"
    f.write_text(SEED)
    assert load(f).source == str(f)
    assert load(str(f)).labels == ["A1", "A2", "A3"]
    assert load("seed").source == "seed.scn"
    assert load(SEED).source == "<string>"
    with pytest.raises(ValueError, match="neither a scenario file"):
        load("no-such-thing")


def test_to_text_writes_the_fewest_config_words():
    sim = Simulation(kernel="v6.12", fmt="v7s", personality="coherent")
    sim.map(0x100000, 0x100000, 1 << 20)
    text = to_text(sim)
    # ias, ttl_hints and tlb_entries follow from fmt and the personality
    assert text.splitlines()[1] == \
        "config kernel=v6.12 strict bbml=0 smmu=coherent fmt=v7s"
    assert parse(text).run().config == sim.config
    assert sim.to_scenario() == text


def test_scenario_error_is_one_of_the_package_errors():
    import pickle

    from iommu_viz.errors import IommuVizError
    with pytest.raises(IommuVizError) as e:
        parse("config kernel=v5.4\nflip 0x1000\n", source="x.scn")
    err = e.value
    assert isinstance(err, ScenarioError) and isinstance(err, ValueError)
    assert err.errno == "EINVAL"
    assert str(err) == err.message == ("x.scn:2: unknown op: 'flip'; the ops "
                                       "are " + ", ".join(OPS) +
                                       " (and config, param)")
    again = pickle.loads(pickle.dumps(err))
    assert (type(again), str(again), again.line, again.rule) == \
        (ScenarioError, str(err), 2, "unknown op")
