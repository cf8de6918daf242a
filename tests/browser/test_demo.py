"""A real browser drives the demo app: Voila serves demo/explorer.ipynb
(the Explorer alone, no code) and headless Chromium at 1400 x 1000 checks
that the Explorer fits the window, steps next and previous, and drives
every toggle: a toggle that can matter re-runs the scenario (the caption,
tree and timeline follow and the compare strip names the change); one that
cannot is disabled and its tooltip says why.

Uses the system Chromium (/usr/bin/chromium, which `make test` installs);
never downloads a browser. benchmarks/bench_browser.py reuses
:func:`voila_server`, :func:`open_demo` and :data:`SETTLED_JS`;
the shared pieces are in browser_helpers.py.
"""

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from browser_helpers import (CHROMIUM, free_port,  # noqa: F401 (reused)
                             need_chromium, stop_server)

ROOT = Path(__file__).resolve().parents[2]
DEMO = "demo/explorer.ipynb"
VIEWPORT = {"width": 1400, "height": 1000}

#: True once the caption, the tree and the timeline all show the same run
#: and step (each is a separate widget message) and, unless ``busyOk``,
#: the kernel has gone idle once (the Explorer marks itself iv-ready).
#: ``arg``: [run or null to be different from, step or null, busyOk].
SETTLED_JS = r"""([notRun, step, busyOk]) => {
  const q = s => document.querySelector('.iv-explorer ' + s);
  const cap = q('.iv-caption'), tree = q('.iv-tree-svg'), tl = q('.iv-tl-mark');
  if (!cap || !tree || !tl) return false;
  const run = cap.dataset.run, at = cap.dataset.step;
  if (notRun !== null && run === notRun) return false;
  if (step !== null && at !== String(step)) return false;
  return tree.dataset.key === cap.dataset.tree && tl.dataset.run === run
    && (tl.dataset.step === at || cap.classList.contains('iv-question-cap'))
    && (busyOk || !!document.querySelector('.iv-explorer.iv-ready'));
}"""


@contextlib.contextmanager
def voila_server(tmp: Path):
    """Voila serving the demo notebook on a free port; yields its URL."""
    port = free_port()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTER_CONFIG_DIR=str(tmp / "config"), MPLBACKEND="Agg")
    log = open(tmp / "voila.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "voila", DEMO, "--no-browser",
         f"--port={port}", "--Voila.ip=127.0.0.1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 150     # a busy shared machine
        while True:
            # a GET of the page would run the notebook: wait for the port
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise RuntimeError("Voila did not start:\n"
                                   + (tmp / "voila.log").read_text()[-3000:])
            time.sleep(0.3)
        yield url
    finally:
        stop_server(proc, log)


def open_demo(browser, url):
    """A 1400 x 1000 page with the demo loaded and the Explorer settled."""
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url, timeout=120_000)
    page.wait_for_function(SETTLED_JS, arg=[None, None], timeout=120_000)
    return page


sync_api = need_chromium()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("voila")
    with voila_server(tmp) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox"])
        try:
            pg = open_demo(browser, url)
            try:
                yield pg
            except Exception:
                raise
            finally:
                out = ROOT / "test-output"
                out.mkdir(exist_ok=True)
                pg.screenshot(path=str(out / "demo.png"))
        finally:
            browser.close()


def state(page):
    return page.evaluate("""() => {
      const c = document.querySelector('.iv-explorer .iv-caption');
      return [c.dataset.run, Number(c.dataset.step), c.innerText,
              document.querySelector('.iv-explorer .iv-compare').innerText];
    }""")


def heights(page):
    return page.evaluate("""() => [
      document.querySelector('.iv-explorer').getBoundingClientRect().height,
      document.documentElement.scrollHeight]""")


def test_demo_shows_the_explorer_alone(page):
    assert page.locator(".iv-explorer").count() == 1
    body = page.inner_text("body")
    assert "from iommu_viz" not in body and "Explorer(" not in body
    assert page.locator(".jp-InputArea:visible, .CodeMirror:visible, "
                        ".cm-editor:visible").count() == 0
    run, step, cap, _ = state(page)
    assert "step 11/" in cap and "arm_lpae_split_blk_unmap" in cap
    widget, doc = heights(page)
    assert widget <= 1000 and doc <= 1000, (widget, doc)


def test_next_previous_and_every_toggle(page):
    run, step, _, _ = state(page)
    page.locator(".iv-explorer button.iv-next").click()
    page.wait_for_function(SETTLED_JS, arg=[None, step + 1], timeout=60_000)
    assert "fill new L3 table" in state(page)[2]
    page.locator(".iv-explorer button.iv-prev").click()
    page.wait_for_function(SETTLED_JS, arg=[None, step], timeout=60_000)
    # an event of the list is a step to go to
    page.locator(".iv-explorer .iv-events select").select_option(index=16)
    page.wait_for_function(SETTLED_JS, arg=[None, 16], timeout=60_000)
    assert "device read 0x40001000: stale" in state(page)[2]

    page.locator(".iv-explorer .iv-more-button").click()
    from iommu_viz.widgets.toggles import FRONT, MORE, TOGGLES
    driven, disabled = [], []
    for name in FRONT + MORE:
        t = TOGGLES[name]
        page.wait_for_function(SETTLED_JS, arg=[None, None], timeout=60_000)
        box = page.locator(f".iv-explorer .iv-toggle-{name.replace('_', '-')}")
        # ipywidgets puts the tooltip on the control or on its box
        tip = box.evaluate("""el => (el.title ? el : el.querySelector(
            '[title]') || el).title""")
        assert tip.startswith(t.tip[:30]), (name, tip)
        control = box.locator("input, select, button")
        if control.first.is_disabled():
            assert "Cannot matter here:" in tip, (name, tip)
            disabled.append(name)
            continue
        before = state(page)
        if t.kind == "check":
            control.first.click()
        elif t.kind == "dropdown":
            sel = box.locator("select")
            now = sel.input_value()
            other = [o for o in sel.locator("option").all_inner_texts()
                     if o != sel.locator("option:checked").inner_text()][0]
            assert now is not None
            sel.select_option(label=other)
        else:
            box.locator("button:not(.mod-active)").first.click()
        page.wait_for_function(SETTLED_JS, arg=[before[0], None],
                               timeout=60_000)
        page.wait_for_function(
            "label => document.querySelector('.iv-explorer .iv-compare')"
            ".innerText.startsWith(label)", arg=t.label, timeout=60_000)
        after = state(page)
        assert after[3].startswith(t.label), (name, after[3])
        assert "changed:" in after[3]
        driven.append(name)
    widget, doc = heights(page)           # with "More" open too
    assert widget <= 1000 and doc <= 1000, (widget, doc)
    assert len(driven) >= 5 and len(driven) + len(disabled) == len(TOGGLES)
    print("driven:", driven, "disabled:", disabled)
