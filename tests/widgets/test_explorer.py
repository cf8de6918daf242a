"""Headless tests of the Explorer widget: toggles re-run the scenario and
the views follow; the outcome words come from the recorded run."""

import pytest

pytest.importorskip("ipywidgets")

from iommu_viz import scenarios
from iommu_viz.scenarios import NEIGHBOUR, PAGE
from iommu_viz.widgets import Explorer, UNMAP_CHOICES, explain_access
from iommu_viz.widgets.outcome import outcome_text


def page_outcomes(sim):
    return [a.outcome for a in sim.accesses if a.iova == PAGE]


@pytest.fixture
def fast_nosync():
    return Explorer("seed", kernel="v5.4", fast=True, sync_after=False)


def test_toggles_show_the_options_given(fast_nosync):
    t = fast_nosync.toggles
    assert t["kernel"].value == "v5.4"
    assert t["unmap"].value == "iommu_unmap_fast, no sync"
    assert t["split_sync"].value is False      # v5.4: the split does not sync
    assert t["strict"].value is True
    assert set(t) == {"scenario", "kernel", "strict", "unmap", "split_sync",
                      "deferred_gather", "bbml", "personality", "speculate",
                      "ttl_hints"}


def test_split_sync_toggle_turns_stale_into_fault(fast_nosync):
    ex = fast_nosync
    before = page_outcomes(ex.sim)
    assert before[1] == "stale"
    ex.toggles["split_sync"].value = True          # as a click would
    assert ex.options["split_sync"] is True
    after = page_outcomes(ex.sim)
    assert after[1] == "fault"
    assert "stale" not in after
    # the split now issues its own TLBI and CMD_SYNC
    funcs = [e.func for e in ex.sim.events]
    assert "arm_smmu_tlb_inv_leaf" in funcs
    # and back: the era default again, stored as None
    ex.toggles["split_sync"].value = False
    assert ex.options["split_sync"] is None
    assert page_outcomes(ex.sim)[1] == "stale"


def test_split_sync_off_in_v420_is_forced_false():
    ex = Explorer("seed", kernel="v4.20", fast=True, sync_after=False)
    assert ex.toggles["split_sync"].value is True   # era default
    assert page_outcomes(ex.sim)[1] == "fault"
    ex.set_option("split_sync", False)
    assert ex.options["split_sync"] is False
    assert ex.toggles["split_sync"].value is False
    assert page_outcomes(ex.sim)[1] == "stale"


def test_split_sync_disabled_in_v613(fast_nosync):
    fast_nosync.set_option("kernel", "v6.13")
    assert fast_nosync.toggles["split_sync"].disabled
    assert "arm_lpae_split_blk_unmap" not in {e.func for e in
                                               fast_nosync.sim.events}


def test_caption_changes_with_step(fast_nosync):
    ex = fast_nosync
    ex.step = 0
    assert ex.caption_text.startswith("arm_smmu_domain_finalise")
    first_tree = ex.tree_html
    ex.step = "arm_lpae_install_table"
    cap = ex.caption_text
    assert cap.startswith("arm_lpae_install_table:")
    ex.next()
    assert ex.caption_text != cap
    assert ex.caption_text == ex.sim.caption(ex.step)
    assert ex.tree_html != first_tree
    assert "<svg" in ex.tree_html
    assert ex.caption_text in ex.caption.value.replace("&gt;", ">")


def test_buttons_and_bounds(fast_nosync):
    ex = fast_nosync
    last = len(ex.sim.events) - 1
    ex.b_last.click()
    assert ex.step == last
    ex.b_next.click()
    assert ex.step == last
    ex.b_prev.click()
    assert ex.step == last - 1
    ex.b_first.click()
    assert ex.step == 0
    ex.b_prev.click()
    assert ex.step == 0
    assert ex.slider.max == last and ex.play.max == last
    with pytest.raises(ValueError, match="outside this run"):
        ex.step = last + 1
    with pytest.raises(ValueError, match="no event"):
        ex.step = "no_such_function"


def test_step_is_kept_or_clamped_on_rerun(fast_nosync):
    ex = fast_nosync
    ex.step = 12
    ex.set_option("bbml", 2)
    assert ex.step == 12
    n_long = len(ex.sim.events)
    ex.last()
    assert ex.step == n_long - 1
    ex.set_option("kernel", "v6.13")            # refused split: fewer steps
    n_short = len(ex.sim.events)
    assert n_short < n_long
    assert ex.step == n_short - 1
    assert ex.slider.max == n_short - 1
    assert ex.caption_text == ex.sim.caption(n_short - 1)


def test_unmap_dropdown(fast_nosync):
    ex = fast_nosync
    ex.toggles["unmap"].value = "iommu_unmap_fast + iotlb_sync"
    assert (ex.options["fast"], ex.options["sync_after"]) == (True, True)
    assert page_outcomes(ex.sim)[-1] == "fault"
    ex.toggles["unmap"].value = "iommu_unmap"
    assert ex.options["fast"] is False
    assert "iommu_unmap" in {e.func for e in ex.sim.events}
    assert set(UNMAP_CHOICES) == set(ex.toggles["unmap"].options)


def test_lazy_mode_window_words():
    ex = Explorer("seed", kernel="v5.4")
    ex.toggles["strict"].value = False
    stale = [a for a in ex.sim.accesses if a.outcome == "stale"]
    assert stale
    words = explain_access(ex.sim, stale[0])
    flat = " ".join(words.split())
    assert "can still read 0x80001000 through the stale 2M block" in flat
    assert "for 10 ms after __iommu_dma_unmap returned" in flat
    assert "flush queue" in flat
    assert "10 ms after" in ex.outcome_html


def test_strict_sync_words_name_the_sync():
    sim = scenarios.run("seed", fast=True, sync_after=True)
    a = sim.accesses[1]
    flat = " ".join(explain_access(sim, a).split())
    assert "until the sync completes at step" in flat
    sync = [e for e in sim.events if e.kind == "sync_done"][0]
    assert f"step {sync.step}" in flat


def test_ttl_split_words_say_the_sync_did_not_remove_it():
    sim = scenarios.run("ttl-split")
    flat = " ".join(explain_access(sim, sim.accesses[1]).split())
    assert "completed without removing it" in flat


def test_conflict_words_follow_bbml():
    ex = Explorer("seed-conflict")
    nb = [a for a in ex.sim.accesses if a.iova == NEIGHBOUR][0]
    assert "conflict" in nb.allowed
    assert "BBML0" in explain_access(ex.sim, nb)
    ex.toggles["bbml"].value = 2
    nb = [a for a in ex.sim.accesses if a.iova == NEIGHBOUR][0]
    assert "conflict" not in nb.allowed
    assert "conflict" not in explain_access(ex.sim, nb)


def test_outcome_text_is_plain():
    sim = scenarios.run("strict-vs-lazy", strict=False)
    text = outcome_text(sim)
    assert text.isascii()
    assert max(len(line) for line in text.splitlines()) <= 72
    assert outcome_text(sim, upto=0) == "No device access yet.\n"


def test_scenario_defaults_are_loaded():
    ex = Explorer("ttl-split")
    assert ex.toggles["kernel"].value == "v6.12"
    ex.set_option("scenario", "seed-conflict")
    assert ex.toggles["speculate"].value is True
    assert ex.toggles["unmap"].value == "iommu_unmap_fast + iotlb_sync"
    assert ex.toggles["kernel"].value == "v5.4"
    ex.toggles["scenario"].value = "vfio-refuses"
    assert ex.scenario == "vfio-refuses"
    assert ex.sim.config["caller"] == "vfio"


def test_bad_options_are_refused_and_leave_the_run():
    with pytest.raises(ValueError, match="unknown Explorer option"):
        Explorer("seed", colour="red")
    with pytest.raises(ValueError, match="no scenario"):
        Explorer("nope")
    ex = Explorer("seed")
    sim = ex.sim
    with pytest.raises(ValueError, match="kernel 'v9.9'"):
        ex.set_option("kernel", "v9.9")
    with pytest.raises(ValueError, match="unmap 'x'"):
        ex.set_option("unmap", "x")
    with pytest.raises(ValueError, match="no option 'colour'"):
        ex.set_option("colour", 1)
    assert ex.sim is sim


def test_redraw_is_cached_and_fast(fast_nosync):
    ex = fast_nosync
    for s in (1, 12, 16, len(ex.sim.events) - 1):
        ex.step = s
        assert ex.last_redraw_ms < 1000          # generous on slow CI
    ex.step = 3
    png = ex.timeline_png
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    ex.step = 16
    ex.step = 3
    assert ex.timeline_png == png
    assert ex._renders[3]["timeline"] == png      # served from the cache
    assert ex.last_redraw_ms < 50


def test_displays_itself(fast_nosync):
    bundle = fast_nosync._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_next_step_is_prefetched_in_a_running_loop(fast_nosync):
    """In a kernel (an asyncio loop is running) the step after the one
    shown is rendered when the loop is idle; outside one, nothing is."""
    import asyncio
    ex = fast_nosync
    ex.step = 5
    assert 6 not in ex._renders

    async def click_next_and_idle():
        ex.step = 6
        for _ in range(100):                     # up to 2 s on a slow CI
            await asyncio.sleep(0.02)
            if 7 in ex._renders:
                break

    asyncio.run(click_next_and_idle())
    assert 7 in ex._renders
    ex.set_option("bbml", 1)              # a new run: nothing prefetched
    assert 7 not in ex._renders
