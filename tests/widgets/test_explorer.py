"""Headless tests of the Explorer widget: toggles re-run the scenario and
the views follow; the outcome words come from the recorded run."""

import pytest

pytest.importorskip("ipywidgets")

from iommu_viz import scenarios
from iommu_viz.scenarios import NEIGHBOUR, PAGE
from iommu_viz.widgets import (Explorer, TOGGLE_NAMES, UNMAP_CHOICES,
                               explain_access)
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
    assert t["fmt"].value == "lpae"
    assert set(t) == {"scenario", "fmt", "kernel", "strict", "unmap",
                      "split_sync", "deferred_gather", "bbml", "personality",
                      "speculate", "ttl_hints", "split_nt"}
    assert set(t) == set(TOGGLE_NAMES)


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
    assert "10 ms after" not in ex.outcome_html   # not there yet
    ex.last()
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
    assert ex.timeline_png[:8] == b"\x89PNG\r\n\x1a\n"   # for exports
    svg = ex.timeline_svg
    assert svg.startswith("<svg")
    tree = ex.tree_html
    ex.step = 16
    assert ex.timeline_svg == svg         # one picture per run, masked
    assert 'data-step="16"' in ex.tl_over.value
    ex.step = 3
    assert ex.tree_html == tree
    assert (ex._run_key(), 3, False) in ex._renders   # from the cache
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
    assert (ex._run_key(), 6, False) not in ex._renders

    async def click_next_and_idle():
        ex.step = 6
        for _ in range(100):                     # up to 2 s on a slow CI
            await asyncio.sleep(0.02)
            if (ex._run_key(), 7, False) in ex._renders:
                break

    asyncio.run(click_next_and_idle())
    assert (ex._run_key(), 7, False) in ex._renders
    ex.set_option("bbml", 1)              # a new run: nothing prefetched
    assert (ex._run_key(), 7, False) not in ex._renders


def test_format_toggle_reruns_with_a_v7s_table(fast_nosync):
    """Flipping LPAE -> v7s re-runs the scenario on a V7sTable: the tree
    names the format and shows the 2 MiB as two 1M sections, the split is
    arm_v7s_split_blk_unmap, and the step is kept or clamped."""
    ex = fast_nosync
    ex.last()
    n_lpae = len(ex.sim.events)
    assert ex.step == n_lpae - 1
    assert "v7s" not in ex.tree_html
    ex.toggles["fmt"].value = "v7s"                   # as a click would
    assert ex.options["fmt"] == "v7s"
    assert ex.sim.config["fmt"] == "v7s"
    assert type(ex.sim.pt).__name__ == "V7sTable"
    n_v7s = len(ex.sim.events)
    assert n_v7s < n_lpae        # 256-entry table, fewer steps than LPAE
    assert ex.step == n_v7s - 1 == ex.slider.max == ex.play.max
    assert ex.caption_text == ex.sim.caption(ex.step)
    funcs = {e.func for e in ex.sim.events}
    assert "arm_v7s_split_blk_unmap" in funcs
    assert "arm_lpae_split_blk_unmap" not in funcs
    ex.step = "arm_v7s_init_pte"                       # the first section
    assert "section" in ex.caption_text
    ex.step = "iommu_unmap_fast"                        # both sections
    assert "v7s" in ex.tree_html
    assert ex.tree_html.count("1M section") == 2
    # the kernel's bug, modelled: the new level-2 pages lose the section's
    # output address, so the neighbour now reaches physical 0x2000
    ex.step = "arm_v7s_install_table"
    assert "254 x 4K page" in ex.tree_html
    assert "0x2000..0xfffff" in ex.tree_html
    assert "TLB still holds 1M section" in ex.tree_html
    # v6.13 refuses the split: the last event is still the last access,
    # and back to LPAE: the same event again
    ex.last()
    ex.set_option("kernel", "v6.13")
    assert ex.step == len(ex.sim.events) - 1
    assert "arm_v7s_split_blk_unmap" not in {e.func for e in ex.sim.events}
    ex.step = "iommu_unmap_fast"
    ex.toggles["fmt"].value = "lpae"           # a longer run: same call
    assert ex.toggles["kernel"].value == "v6.13"
    assert type(ex.sim.pt).__name__ == "LpaeTable"
    assert ex.sim.events[ex.step].func == "iommu_unmap_fast"
    assert ex.sim.events[ex.step].kind == "call"


def test_format_given_at_start_and_a_bad_format_refused():
    ex = Explorer("strict-vs-lazy", fmt="v7s")
    assert ex.toggles["fmt"].value == "v7s"
    ex.step = "arm_v7s_init_pte"
    assert "arm_v7s_init_pte" in ex.caption_text
    sim = ex.sim
    with pytest.raises(ValueError, match="fmt 'v8' is not one of"):
        ex.set_option("fmt", "v8")
    assert ex.options["fmt"] == "v7s" and ex.sim is sim


def test_show_tree_draws_a_cont_group_as_one_row():
    """A 64 KiB large page is 16 identical level-2 entries; the notebook
    helper draws them as one row, and a split turns it into pages."""
    from iommu_viz import SZ_4K, SZ_64K, V7sTable
    from iommu_viz.widgets import show_tree
    pt = V7sTable(kernel="v5.4")
    pt.map(0x200000, 0x90000000, SZ_64K)
    svg = show_tree(pt).data
    assert "16 x large, 64K CONT" in svg
    assert "0x90000000..0x9000ffff" in svg
    assert pt.unmap(0x201000, SZ_4K) == SZ_4K      # arm_v7s_split_cont
    svg = show_tree(pt).data
    assert "CONT" not in svg
    assert "14 x 4K page" in svg


def test_window_legend_matches_the_timeline():
    """The Explorer's HTML legend draws the windows as the timeline does:
    same colour and hatch (read from the figure's own patches)."""
    from matplotlib.colors import to_hex
    from iommu_viz.render.timeline import timeline_figure
    from iommu_viz.widgets.explorer import _WINDOW_HATCH
    sim = scenarios.run("seed-conflict")
    fig = timeline_figure(sim, legend=False)
    seen = {}
    for ax in fig.axes:
        for patch in ax.patches:
            gid = patch.get_gid() or ""
            if gid.startswith("window:"):
                seen[gid.split(":")[1]] = (to_hex(patch.get_facecolor()),
                                           patch.get_hatch())
    assert set(seen) == {"stale", "conflict"}
    legend = Explorer._timeline_legend()
    for kind, (colour, hatch) in seen.items():
        assert _WINDOW_HATCH[kind] == hatch
        assert colour.lower() in legend.lower()
        assert f"hatched {hatch[:2]}" in legend


def test_split_nt_toggle_removes_the_bbml1_conflict():
    from iommu_viz.widgets import Explorer
    ex = Explorer("seed-conflict", bbml=1, personality="adversarial")
    def neighbour_allowed():
        from iommu_viz.scenarios import NEIGHBOUR
        return set([a for a in ex.sim.accesses if a.iova == NEIGHBOUR][0].allowed)
    assert "conflict" in neighbour_allowed()
    ex.toggles["split_nt"].value = True
    assert ex.options["split_nt"] is True
    assert "conflict" not in neighbour_allowed()
    assert any("nT sequence" in ev.func for ev in ex.sim.events)
    ex.set_option("fmt", "v7s")
    assert ex.toggles["split_nt"].disabled


def test_old_call_forms_still_work():
    """Notebooks 02 and 05 call these."""
    ex = Explorer("seed", kernel="v5.4", fast=True, sync_after=False,
                  step="arm_lpae_split_blk_unmap")
    assert ex.step == 11 and ex.slider.value == 11 and ex.play.value == 11
    ex = Explorer("ttl-split", step="SMMUv3 TLBI TTL rule")
    assert "TTL" in ex.caption_text


def test_toggle_that_cannot_matter_is_disabled_with_why():
    ex = Explorer("seed", kernel="v5.4")
    tl = ex.toggles["ttl_hints"]
    assert tl.disabled and "6a481a95d4c1" in tl.tooltip   # a rule, at once
    assert not ex.toggles["bbml"].disabled        # not run yet
    ex.availability()                             # runs the other values
    assert ex.toggles["bbml"].disabled
    assert "Cannot matter here" in ex.toggles["bbml"].tooltip
    assert ex.toggles["bbml"].tooltip.startswith("SMMU_IDR3.BBML")
    assert not ex.toggles["split_sync"].disabled
    assert "iv-toggle-disabled" in ex.toggles["bbml"]._dom_classes


def test_compare_strip_and_event_list():
    ex = Explorer("seed", kernel="v5.4", fast=True, sync_after=False)
    assert "flip a toggle" in ex.compare_html
    ex.events.value = 16                          # a click in the list
    assert ex.step == 16 and ex.slider.value == 16
    ex.toggles["split_sync"].value = True
    assert ex.step == 19 and ex.events.value == 19
    html = ex.compare_html.replace("&gt;", ">")
    assert "split syncs itself: off -> on" in html
    assert "stale -> fault" in html
    assert ex.events.options[19][0].startswith(" 19 device device read")


def test_tree_focuses_on_what_changed():
    ex = Explorer("seed", kernel="v5.4", fast=True, sync_after=False,
                  step="arm_lpae_install_table")
    ex.step = 13                                  # the L3 table goes in
    assert "levels above collapsed" in ex.crumb.value
    assert "L0 table" not in ex.tree_html and "L3 table" in ex.tree_html
    ex.above.value = True
    assert "L0 table" in ex.tree_html and ex.crumb.value.startswith("focus")
    ex.step = 1                                   # nothing below the root
    assert ex.crumb.value == "" or "focus" in ex.crumb.value


def test_predict_mode_in_the_widget():
    ex = Explorer("seed", kernel="v5.4", fast=True, sync_after=False,
                  predict=True)
    ex.last()
    assert ex.step == 7
    assert ex.predict_box.layout.display == "flex"
    assert "translated" not in ex.outcome_html
    assert "device: <b>the device is about to read" in ex.caption.value
    assert "iv-opaque" in ex.tl_over.value       # nothing shows through
    assert "predict it first" in ex.events.options[8][0]
    ex.b_check.click()                            # nothing picked
    assert "Pick at least one" in ex.q_text.value
    ex.picks["translated"].value = True
    ex.b_check.click()
    assert ex.predict_box.layout.display == "none"
    assert "score 1/1" in ex.score_label.value
    assert "you picked translated: right" in ex.outcome_html
    ex.next()
    ex.step = 16
    ex.b_reveal.click()
    assert "score 1/1 (1 revealed)" in ex.score_label.value
    assert "stale" in ex.outcome_html


def test_css_is_a_package_file():
    from importlib import resources
    css = resources.files("iommu_viz.widgets").joinpath("explorer.css")
    assert ".iv-explorer" in css.read_text()
    ex = Explorer("seed")
    assert css.read_text() in ex.widget.children[0].value
    import tomllib
    from pathlib import Path
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2]
                               / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]
    assert "*.css" in data["iommu_viz.widgets"]        # shipped in a wheel


def test_compact_timeline_draws_what_the_figure_draws():
    """The Explorer's SVG timeline has the figure's lanes, one marker per
    event, the hazard windows with their colours and steps, and the
    allowed outcomes under an access; the mask edge of each step lies
    between that step's marker and the next one's."""
    import re
    from iommu_viz.render.timeline import (LANE_LABELS, WINDOW_STYLE,
                                           hazard_windows, lanes_of)
    from iommu_viz.widgets.views import timeline_svg
    sim = scenarios.run("seed-conflict", strict=False)
    svg, edges = timeline_svg(sim)
    for lane in lanes_of(sim):
        assert LANE_LABELS[lane] in svg
    markers = len(re.findall(r"<(circle|path) ", svg))
    assert markers == len(sim.events)
    for kind, first, last, _ in hazard_windows(sim):
        assert f"{kind} {first}..{last}" in svg
        assert WINDOW_STYLE[kind][0] in svg
    assert "fault/stale" in svg
    assert len(edges) == len(sim.events)
    assert all(a < b for a, b in zip(edges, edges[1:])) and edges[-1] < 1


def test_demo_notebook_makefile_and_binder_link():
    """The demo app: one code cell that makes an Explorer (Voila shows its
    output only), served by `make demo`, opened by the README's link."""
    import ast
    import json
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    book = json.loads((root / "demo" / "explorer.ipynb").read_text())
    code = [c for c in book["cells"] if c["cell_type"] == "code"]
    assert len(code) == 1 and not code[0]["outputs"]
    src = "".join(code[0]["source"])
    tree = ast.parse(src)
    *body, last = tree.body
    env = {}
    exec(compile(ast.Module(body, []), "demo", "exec"), env)
    ex = eval(compile(ast.Expression(last.value), "demo", "eval"), env)
    assert isinstance(ex, Explorer) and "split_blk_unmap" in ex.caption_text
    mk = (root / "Makefile").read_text()
    assert "voila demo/explorer.ipynb" in mk and "\ndemo: setup" in mk
    readme = (root / "README.md").read_text()
    assert ("https://mybinder.org/v2/gh/OWNER/iommu-viz/HEAD?urlpath="
            "voila/render/demo/explorer.ipynb") in readme
