"""`--format html`: one self-contained page (nothing to fetch) holding
every step of the run, small enough to attach to a mail."""

from __future__ import annotations

import json
import re

from iommu_viz import scenarios
from iommu_viz.cli import main
from iommu_viz.render.stepper import stepper_data


def test_seed_page_is_self_contained_and_small(tmp_path, capsys):
    out = tmp_path / "seed.html"
    assert main(["run", "seed", "--format", "html", "-o", str(out)]) == 0
    page = out.read_text()
    assert len(page.encode()) <= 1 << 20
    assert page.startswith("<!DOCTYPE html>")
    # nothing loaded from elsewhere: src/href/url() only point inside the
    # page (#id), no stylesheet links, no imports, no fetches
    assert not re.search(r"\b(src|href)\s*=\s*\\?[\"'](?!#)|url\((?!#)|"
                         r"<link\b|@import|fetch\(|XMLHttpRequest", page, re.I)
    assert "url(#" in page              # (the check above can match)
    data = json.loads(re.search(
        r'<script type="application/json" id="iv-data">(.*?)</script>',
        page, re.S).group(1))
    sim = scenarios.run("seed")
    assert len(data["steps"]) == len(sim.events)
    assert [s["caption"][:8] for s in data["steps"][:2]] == \
        ["Step 0 o", "Step 1 o"]
    # identical pictures are stored once, every step points at one
    assert len(data["trees"]) < len(data["steps"])
    assert {s["tree"] for s in data["steps"]} == set(range(len(data["trees"])))
    # the page carries the run as a scenario file
    assert "page: access 0x40001000" in page


def test_the_start_step_and_the_scenario_command(tmp_path):
    out = tmp_path / "conflict.html"
    assert main(["scenario", "seed-conflict", "--format", "html",
                 "--step", "-1", "-o", str(out)]) == 0
    page = out.read_text()
    n = len(scenarios.run("seed-conflict").events)
    assert f'data-start="{n - 1}"' in page


def test_stepper_data_changes_with_the_tables():
    d = stepper_data(scenarios.run("gigabyte-split"))
    trees = [s["tree"] for s in d["steps"]]
    assert trees[0] != trees[-1]
    x0, x1, top, height = d["plot"]
    assert 0 < x0 < x1 < 1 and 0 <= top < 1 and 0 < height <= 1
