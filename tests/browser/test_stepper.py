"""The HTML stepper in a real browser: `iommu-viz run` writes the seed
scenario's page, headless Chromium opens it from a file:// URL with every
network request refused, and the buttons, slider and arrow keys change
the step, the tree, the TLB view and the timeline cursor.

Uses the system Chromium (/usr/bin/chromium, which `make test` installs);
never downloads a browser.
"""

from pathlib import Path

import pytest

from browser_helpers import CHROMIUM, need_chromium

from iommu_viz.cli import main


sync_api = need_chromium()

#: the issue's example (the seed thread as a scenario file)
SEED = (Path(__file__).resolve().parents[1] / "scenarios"
        / "issue-example.scn").read_text()


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("stepper")
    (d / "seed.scn").write_text(SEED)
    out = d / "seed.html"
    assert main(["run", str(d / "seed.scn"), "--format", "html",
                 "-o", str(out)]) == 0
    return out


def test_stepper_steps_in_chromium(page_file):
    requests = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.route("**/*", lambda route: route.continue_()
                       if route.request.url.startswith("file:")
                       else route.abort())
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri())
            body = page.locator("body")
            assert body.get_attribute("data-step") == "0"
            assert page.locator("#iv-prev").is_disabled()
            tree0 = page.inner_html("#iv-tree")
            cap0 = page.inner_text("#iv-caption")
            cursor0 = page.eval_on_selector("#iv-cursor",
                                            "e => e.style.left")
            assert "<svg" in tree0 and cap0.startswith("Step 0 of")

            page.click("#iv-next")
            assert body.get_attribute("data-step") == "1"
            assert page.inner_text("#iv-caption").startswith("Step 1 of")
            assert page.eval_on_selector("#iv-cursor",
                                         "e => e.style.left") != cursor0
            # the map call fills the tables: the tree changes within a
            # few steps of clicking next
            for _ in range(6):
                if page.inner_html("#iv-tree") != tree0:
                    break
                page.click("#iv-next")
            assert page.inner_html("#iv-tree") != tree0

            page.click("#iv-last")
            last = int(body.get_attribute("data-step"))
            assert last > 5 and page.locator("#iv-next").is_disabled()
            assert "fault" in page.inner_text("#iv-caption")
            page.keyboard.press("ArrowLeft")
            assert body.get_attribute("data-step") == str(last - 1)
            page.keyboard.press("Home")
            assert body.get_attribute("data-step") == "0"
            assert page.inner_html("#iv-tree") == tree0
            page.fill("#iv-slider", "3")
            assert body.get_attribute("data-step") == "3"
            assert errors == []
        finally:
            browser.close()
    # nothing but the file itself was loaded
    assert requests == [page_file.as_uri()]
