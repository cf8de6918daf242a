"""The Explorer opens a scenario file, scenario text or a Scenario: the
file's config is the starting option set, each toggle replaces one key of
it, and toggles for knobs the file does not declare are disabled, saying
so (issue 14, item 5)."""

import pytest

from iommu_viz import scenarios
from iommu_viz.widgets import ExplorerSession

# no param lines: the unmap and speculate toggles have nothing to switch
PLAIN = """\
# A 2M block, one page unmapped from it, then read.
config kernel=v6.12 bbml=2 smmu=adversarial lazy
map 0x40000000 0x80000000 2M
access 0x40001000
unmap 0x40001000 4K
A1: access 0x40001000
"""


@pytest.fixture
def plain_file(tmp_path):
    p = tmp_path / "mine.scn"
    p.write_text(PLAIN)
    return p


def test_a_file_s_config_is_the_starting_option_set(plain_file):
    for given in (plain_file, str(plain_file)):
        s = ExplorerSession(given)
        assert s.scenario == "mine.scn"
        o = s.options
        assert (o["kernel"], o["bbml"], o["personality"], o["strict"]) == \
            ("v6.12", 2, "adversarial", False)
        assert s.sim.config["bbml"] == 2
        assert "mine.scn" in s.scenario_names()
        assert s.scenario_file().source == str(plain_file)


def test_a_toggle_replaces_one_key_of_the_file_s_config(plain_file):
    s = ExplorerSession(plain_file)
    s.set_option("bbml", 0)
    c = s.sim.config
    assert (c["bbml"], c["kernel"], c["personality"], c["strict"]) == \
        (0, "v6.12", "adversarial", False)
    assert s.changed == "BBML: 2 -> 0"
    # the file itself is unchanged: a fresh session starts from it again
    assert ExplorerSession(plain_file).sim.config["bbml"] == 2


def test_knobs_the_file_does_not_declare_are_disabled(plain_file):
    s = ExplorerSession(plain_file)
    avail = s.availability()
    for name, knob in (("unmap", "fast or sync_after"),
                       ("speculate", "speculate")):
        assert avail[name].startswith(f"This file does not use the {knob} "
                                      "knob"), avail[name]
    assert avail["strict"] is None           # lazy -> strict changes A1
    # a file that declares the knobs keeps those toggles
    seeded = ExplorerSession(scenarios.named("seed").text)
    assert seeded.scenario == "(text)"
    assert seeded.static_reason("unmap") is None
    assert seeded.static_reason("speculate") is None


def test_text_and_scenario_objects(plain_file):
    s = ExplorerSession(PLAIN, kernel="v5.4")          # options override
    assert s.scenario == "(text)" and s.options["kernel"] == "v5.4"
    assert s.options["bbml"] == 2
    assert ExplorerSession(scenarios.named("ttl-split")).scenario == \
        "ttl-split"
    sc = scenarios.load(plain_file)
    assert ExplorerSession(sc).scenario == "mine.scn"


def test_switching_away_and_back_keeps_the_file_s_options(plain_file):
    s = ExplorerSession(plain_file)
    s.set_option("personality", "typical")
    s.set_scenario("seed")
    assert s.options["kernel"] == "v5.4"
    s.set_scenario("mine.scn")
    assert (s.options["personality"], s.options["kernel"]) == \
        ("typical", "v6.12")


def test_bad_scenario_text_names_the_line():
    with pytest.raises(scenarios.ScenarioError, match=r"<string>:2: "
                       "unknown op"):
        ExplorerSession("map 0x40000000 0x80000000 2M\nfrobnicate\n")
    with pytest.raises(ValueError, match="no scenario 'nope'"):
        ExplorerSession("nope")


def test_the_widget_shows_the_file(plain_file):
    pytest.importorskip("ipywidgets")
    from iommu_viz.widgets import Explorer
    ex = Explorer(plain_file)
    chooser = ex.toggles["scenario"]
    assert chooser.value == "mine.scn" and "mine.scn" in chooser.options
    assert chooser.tooltip.startswith("A 2M block, one page unmapped")
    w = ex.toggles["unmap"]
    assert w.disabled and "does not use the fast or sync_after knob" \
        in w.tooltip
    assert not ex.toggles["strict"].disabled
    ex.toggles["strict"].value = True              # the widget's own path
    c = ex.sim.config
    assert (c["strict"], c["bbml"], c["kernel"]) == (True, 2, "v6.12")
    chooser.value = "seed"
    chooser.value = "mine.scn"
    assert ex.scenario == "mine.scn" and ex.sim.config["strict"] is True
