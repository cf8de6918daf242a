"""Click-to-picture times of the Explorer in real Chromium (``make bench``).

Voila serves the demo app (demo/explorer.ipynb) as tests/browser/test_demo.py
does, and headless Chromium (Debian's /usr/bin/chromium) at 1400 x 1000
clicks. A time runs, inside the page, from the click to the first animation
frame after the caption, the tree and the timeline all show the new step
(or the new run, for a toggle); then one more frame, for the paint. Between
clicks the bench waits for the kernel to go idle and then a learner's
pause (NEXT_PAUSE, TOGGLE_PAUSE): the Explorer uses idle time to lay out
the next steps and to run and draw the toggles' other values, as it would
while a learner reads. A toggle whose picture is not ready yet waits for
its tree (a dot layout, 40-100 ms).

Toggles cycle through those enabled at the time (split syncs itself,
unmap, strict/lazy, speculative fill, deferred gather, SMMU, BBML), so
some runs are new and some are revisits, as in a lesson.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BUDGETS = [
    ("browser_next_median_ms", "<=", 50, "browser: next, median ms"),
    ("browser_next_p95_ms", "<=", 250, "browser: next, p95 ms"),
    ("browser_toggle_median_ms", "<=", 100, "browser: toggle, median ms"),
    ("browser_toggle_p95_ms", "<=", 250, "browser: toggle, p95 ms"),
]

#: A learner's pause after a click (s): after *next* a glance; after a
#: toggle, reading the compare strip.
NEXT_PAUSE, TOGGLE_PAUSE = 0.3, 1.0

_TOGGLES = ("split_sync", "strict", "unmap", "speculate", "deferred_gather",
            "personality", "bbml")

#: Click ``name`` (next/prev buttons, or a toggle) and time it to the
#: picture; null when the picture did not change within 20 s.
_CLICK_JS = """async ([settledSrc, what, kind, step]) => {
  const settled = eval(settledSrc);
  const cap = document.querySelector('.iv-explorer .iv-caption');
  const run = cap.dataset.run;
  const box = document.querySelector('.iv-explorer .' + what);
  const t0 = performance.now();
  if (kind === 'button') box.click();
  else if (kind === 'check') box.querySelector('input').click();
  else if (kind === 'buttons')
    box.querySelector('button:not(.mod-active)').click();
  else {
    const sel = box.querySelector('select');
    sel.selectedIndex = (sel.selectedIndex + 1) % sel.options.length;
    sel.dispatchEvent(new Event('change', {bubbles: true}));
  }
  const frame = () => new Promise(r => requestAnimationFrame(r));
  const notRun = kind === 'button' ? null : run;
  while (!settled([notRun, kind === 'button' ? step : null, true])) {
    if (performance.now() - t0 > 20000) return null;
    await frame();
  }
  await frame();
  return performance.now() - t0;
}"""


def _p95(xs):
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def bench_browser(rounds: int = 20) -> dict:
    try:
        sys.path.insert(0, str(ROOT / "tests" / "browser"))
        from test_demo import CHROMIUM, SETTLED_JS, open_demo, voila_server
        from playwright.sync_api import sync_playwright
        from iommu_viz.widgets.toggles import TOGGLES
    except BaseException as e:          # pytest.skip when there is no browser
        return {"browser": f"n/a: {e}"}
    nexts, toggles, lost, log = [], [], 0, []
    with tempfile.TemporaryDirectory() as tmp, \
            voila_server(Path(tmp)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox"])
        try:
            page = open_demo(browser, url)

            def idle(pause):
                page.wait_for_function(SETTLED_JS, arg=[None, None, False],
                                       timeout=120_000)
                time.sleep(pause)

            def step():
                return int(page.evaluate("document.querySelector("
                                         "'.iv-explorer .iv-caption')"
                                         ".dataset.step"))
            for i in range(rounds):
                s, last = step(), page.evaluate(
                    "document.querySelectorAll('.iv-explorer .iv-events "
                    "option').length - 1")
                fwd = (i // 8) % 2 == 0 and s < last or s == 0
                ms = page.evaluate(_CLICK_JS, [
                    SETTLED_JS, "iv-next" if fwd else "iv-prev", "button",
                    s + 1 if fwd else s - 1])
                nexts.append(ms) if ms is not None else None
                idle(NEXT_PAUSE)
            page.locator(".iv-explorer .iv-more-button").click()
            for i in range(rounds):
                idle(TOGGLE_PAUSE)
                for k in range(len(_TOGGLES)):
                    name = _TOGGLES[(i + k) % len(_TOGGLES)]
                    cls = "iv-toggle-" + name.replace("_", "-")
                    if not page.locator(f".iv-explorer .{cls} input, "
                                        f".iv-explorer .{cls} select, "
                                        f".iv-explorer .{cls} button"
                                        ).first.is_disabled():
                        break
                ms = page.evaluate(_CLICK_JS, [SETTLED_JS, cls,
                                               TOGGLES[name].kind, None])
                if ms is None:
                    lost += 1
                else:
                    toggles.append(ms)
                log.append((name, ms))
        finally:
            browser.close()
    out = {"browser_next_n": len(nexts), "browser_toggle_n": len(toggles),
           "browser_toggle_lost": lost,
           "browser_toggle_clicks": [f"{n} {ms:.0f}" for n, ms in log
                                     if ms is not None]}
    for key, xs in (("next", nexts), ("toggle", toggles)):
        if xs:
            out[f"browser_{key}_median_ms"] = statistics.median(xs)
            out[f"browser_{key}_p95_ms"] = _p95(xs)
            out[f"browser_{key}_max_ms"] = max(xs)
    return out


if __name__ == "__main__":
    print(bench_browser(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
