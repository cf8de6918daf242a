"""The Explorer's headless session: a toggle stays on the same event and
says what changed, scenarios keep their options, toggles that cannot
matter say why, predict mode hides and scores. No ipywidgets here."""

import pytest

from iommu_viz import scenarios
from iommu_viz.scenarios import PAGE
from iommu_viz.widgets import ExplorerSession, TOGGLES, compare_runs
from iommu_viz.widgets.compare import access_keys, match_step
from iommu_viz.widgets.session import _signature
from iommu_viz.widgets.toggles import FRONT, MORE, rule_reason


def fresh():
    return ExplorerSession("seed", kernel="v5.4", fast=True,
                           sync_after=False)


def test_a_toggle_keeps_the_access_not_the_step():
    """The issue's case: at the stale read (step 16) the split's own sync
    moves that read to step 19; the session follows it."""
    s = fresh()
    s.step = 16
    assert "device read 0x40001000: stale" in s.caption_text
    s.set_option("split_sync", True)
    assert s.step == 19
    assert "device read 0x40001000: fault" in s.caption_text
    assert s.changed == "split syncs itself: off -> on"
    lines = s.comparison.lines()
    assert "outcome: read 0x40001000 (2nd), step 16 -> 19: stale -> fault" \
        in lines
    assert any(x.startswith("window shorter: stale, steps 13..20 -> 13..")
               for x in lines)
    assert any(x.startswith("steps added: 5 (arm_smmu_tlb_inv_leaf x3")
               for x in lines)
    assert "steps removed: 1 (iommu_iotlb_gather_add_page)" in lines
    s.set_option("split_sync", False)               # and back
    assert s.step == 16 and s.options["split_sync"] is None


def test_a_toggle_keeps_the_api_call():
    s = fresh()
    s.step = "iommu_unmap_fast"
    assert s.sim.events[s.step].kind == "call"
    s.set_option("unmap", "iommu_unmap")
    ev = s.sim.events[s.step]
    assert (ev.kind, ev.func) == ("call", "iommu_unmap")
    # inside the call: the same kernel function
    s.set_option("unmap", "iommu_unmap_fast, no sync")
    s.step = "iommu_iotlb_gather_add_page"
    s.set_option("unmap", "iommu_unmap")
    assert s.sim.events[s.step].func == "iommu_iotlb_gather_add_page"
    # a call only one run makes: the end of the call before it
    s.set_option("unmap", "iommu_unmap_fast, no sync")
    s.step = "iommu_iotlb_gather_init"
    s.set_option("unmap", "iommu_unmap")
    assert s.sim.events[s.step].text.startswith("device read 0x40001000: "
                                                 "translated")


def test_match_step_maps_every_access_to_itself():
    """Every access of one run lands on the same access (label and rank)
    of another run of the scenario, whatever the options."""
    for name, _ in scenarios.catalog():
        a = scenarios.run(name)
        for opts in ({"split_sync": True}, {"strict": False},
                     {"fast": True, "sync_after": False},
                     {"kernel": "v6.13"}):
            b = scenarios.run(name, **opts)
            kb = dict(zip(access_keys(b), b.accesses))
            for key, acc in zip(access_keys(a), a.accesses):
                if key in kb:
                    assert match_step(a, acc.step, b) == kb[key].step


def test_compare_strip_says_when_nothing_changed():
    a = scenarios.run("seed")
    d = compare_runs(a, scenarios.run("seed", bbml=2))
    assert d.same and d.lines() == []
    s = ExplorerSession("seed")
    s.set_option("bbml", 2)
    assert s.comparison.same and s.changed == "BBML: 0 -> 2"
    s.set_option("split_sync", True)
    assert not s.comparison.same
    s.set_option("split_sync", True)              # the same run again
    assert s.comparison.same


def test_scenario_switch_and_back_keeps_options_and_event():
    s = fresh()
    s.set_option("split_sync", True)
    s.set_option("bbml", 1)
    s.step = 19
    s.set_scenario("seed-conflict")
    assert s.options["bbml"] == 0                  # its own defaults
    assert s.options["speculate"] is True
    assert s.comparison is None
    s.set_option("personality", "adversarial")
    s.set_option("scenario", "seed")
    assert s.options["split_sync"] is True and s.options["bbml"] == 1
    assert s.step == 19
    s.set_scenario("seed-conflict")
    assert s.options["personality"] == "adversarial"


def test_toggle_table_front_and_tooltips():
    assert FRONT == ("split_sync", "unmap", "strict")
    assert set(MORE) == {"fmt", "kernel", "deferred_gather", "bbml",
                         "personality", "speculate", "ttl_hints", "split_nt"}
    for t in TOGGLES.values():
        assert t.tip.endswith(".") and t.tip.count(". ") == 0, t.name
        assert 40 < len(t.tip) < 260, t.name
    # a toggle that is one Simulation option reads the option's own help
    from iommu_viz.sim.config import SimConfig
    fields = {o["name"]: o["help"] for o in SimConfig.options()}
    one_to_one = [n for n in TOGGLES if n in fields]
    assert len(one_to_one) == 9
    for n in one_to_one:
        assert TOGGLES[n].tip is fields[n], n


def test_ttl_hints_cannot_matter_before_v57_and_says_why():
    s = ExplorerSession("seed", kernel="v5.4")
    why = s.availability()["ttl_hints"]
    assert "v5.7" in why and "6a481a95d4c1" in why
    s.set_option("kernel", "v6.12")
    assert s.availability()["ttl_hints"] is None or \
        "ran them all" in s.availability()["ttl_hints"]
    s = ExplorerSession("ttl-split")
    assert s.availability()["ttl_hints"] is None      # it decides this one
    s.set_option("fmt", "v7s")
    assert "range invalidation" in s.availability()["ttl_hints"]


def test_run_and_compare_disables_what_changes_nothing():
    """Notebook 02's start: BBML and the SMMU's personality change nothing
    in a strict iommu_unmap of the seed; the split's own sync does."""
    s = ExplorerSession("seed", kernel="v5.4")
    av = s.availability()
    assert "ran them all" in av["bbml"]
    assert av["split_sync"] is None
    assert av["speculate"] is None
    assert av["fmt"] is None and av["kernel"] is None
    # the alternatives are stored: flipping one re-runs nothing
    n = len(s._runs)
    s.set_option("bbml", 1)
    assert len(s._runs) == n
    # in seed-conflict BBML2 removes the conflict: it matters there
    assert ExplorerSession("seed-conflict").availability()["bbml"] is None


@pytest.mark.parametrize("name", [n for n, _ in scenarios.catalog()])
def test_every_rule_is_right(name):
    """Where a rule says a toggle cannot matter, running its other values
    gives the same run: the rules never hide a toggle that matters."""
    checked = 0
    for kernel in ("v4.20", "v5.4", "v6.12", "v6.13"):
        for fmt in ("lpae", "v7s"):
            s = ExplorerSession(name, kernel=kernel, fmt=fmt)
            for t in TOGGLES:
                if rule_reason(t, s.options) is None:
                    continue
                for _, opts in s.alternatives(t):
                    try:
                        other = s.run_for(name, opts)
                    except ValueError:
                        continue        # e.g. nT on v7s: refused anyway
                    assert _signature(other) == _signature(s.sim), (t, opts)
                    checked += 1
    assert checked > 0


def test_predict_mode_hides_asks_and_scores():
    s = ExplorerSession("seed", predict=True, kernel="v5.4", fast=True,
                        sync_after=False)
    assert s.questions()[:2] == [7, 16]      # the fill comes before a read
    s.last()
    assert s.step == 7                        # stops at the first question
    assert "about to read 0x40001000" in s.caption_text
    assert s.view_step == 6                   # the access has not happened
    assert not s.is_revealed(s.sim.accesses[0])
    with pytest.raises(ValueError, match="pick one or more"):
        s.answer(["maybe"])
    v = s.answer(["translated"])
    assert v["correct"] and v["outcome"] == "translated"
    assert s.question() is None and s.step == s.view_step == 8
    s.step = 30 if len(s.sim.events) > 30 else len(s.sim.events) - 1
    assert s.step == 16
    v = s.answer(["stale"])                   # fault is allowed too
    assert not v["correct"] and v["allowed"] == ("fault", "stale")
    assert str(s.score) == "score 1/2"
    s.next()
    s.reveal()                                # the neighbour: no answer
    assert str(s.score) == "score 1/2 (1 revealed)"
    with pytest.raises(ValueError, match="no question"):
        s.answer(["fault"])


def test_predict_survives_a_toggle_and_hides_later_changes():
    s = ExplorerSession("seed", predict=True, kernel="v5.4", fast=True,
                        sync_after=False)
    s.step = 7
    s.answer(["translated"])
    s.step = 12
    s.set_option("split_sync", True)
    assert s.step == 12 and s.question() is None
    lines = s.comparison.lines(upto=s.step)
    assert not any(x.startswith("outcome") for x in lines)
    assert "later change(s) hidden" in " ".join(lines)
    assert s.is_revealed(s.sim.accesses[0])
    assert not s.is_revealed(s.sim.accesses[1])
    assert [a.iova for a in s.sim.accesses][1] == PAGE


def test_bad_values_leave_the_session_as_it_was():
    s = fresh()
    sim, step = s.sim, s.step
    for name, value, msg in (("kernel", "v9.9", "kernel 'v9.9'"),
                             ("bbml", 3, "bbml 3"),
                             ("unmap", "x", "unmap 'x'"),
                             ("colour", 1, "no option 'colour'")):
        with pytest.raises(ValueError, match=msg):
            s.set_option(name, value)
    with pytest.raises(ValueError, match="no scenario"):
        s.set_scenario("nope")
    assert s.sim is sim and s.step == step
