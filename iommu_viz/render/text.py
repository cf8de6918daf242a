"""Plain text for e-mail: one step of a run in ASCII, at most 72 columns.

Combines a caption naming the kernel function that acted at the step, the
page-table tree (changes against the step before, TLB marks), the TLB view
and the timeline up to the step. Reads the recorded run only.
"""

from __future__ import annotations

from .common import fit_lines
from .timeline import _check_run, timeline_text
from .tlb import tlb_text
from .tree import tree_text

__all__ = ["run_text", "step_index", "caption"]

WIDTH = 72


def step_index(run, step=None) -> int:
    """``step`` as a non-negative index into the run (None: the last step;
    negative counts from the end, as ``Simulation.state_at`` does)."""
    events, _ = _check_run(run)
    n = len(events)
    if n == 0:
        raise ValueError("the run has no steps yet")
    if step is None:
        return n - 1
    if isinstance(step, bool) or not isinstance(step, int) \
            or not -n <= step < n:
        raise IndexError(f"step {step!r} is outside this run's 0..{n - 1}")
    return step % n


def _config_line(run) -> str:
    cfg = getattr(run, "config", None) or {}
    if not cfg:
        return "iommu-viz run"
    gran = cfg.get("granule")
    g = f" {gran >> 10}K" if isinstance(gran, int) else ""
    return (f"iommu-viz: {cfg.get('fmt', 'lpae')}{g}, kernel "
            f"{cfg.get('kernel', '?')}, "
            f"{'strict' if cfg.get('strict', True) else 'lazy'}, "
            f"BBML{cfg.get('bbml', 0)}, {cfg.get('personality', '?')} SMMU")


def caption(run, step=None) -> str:
    """``Step 17 of 0..25, t = 0.000 ms, device: <func>: <text>``."""
    i = step_index(run, step)
    ev = run.events[i]
    return (f"Step {i} of 0..{len(run.events) - 1}, t = {ev.time_ms:.3f} ms, "
            f"{ev.actor}: {ev.func}: {ev.text}")


def _section(title: str) -> list[str]:
    return ["", f"-- {title} " + "-" * max(3, WIDTH - 4 - len(title))]


def run_text(run, step=None) -> str:
    """One step of ``run`` as plain text: caption, page-table tree, TLB,
    timeline up to the step. ASCII only, no line over 72 columns."""
    i = step_index(run, step)
    st = run.states[i]
    prev = run.states[i - 1].pgtable if i > 0 else None
    out = [_config_line(run), caption(run, i)]
    out += _section("Page table")
    out += tree_text(st.pgtable, prev=prev, tlb=st.tlb,
                     width=WIDTH).rstrip("\n").split("\n")
    out += _section("TLB")
    out += tlb_text(st, width=WIDTH).rstrip("\n").split("\n")
    out += _section(f"Timeline up to step {i}")
    out += timeline_text(run, width=WIDTH, upto=i).rstrip("\n").split("\n")
    return "\n".join(fit_lines(out, WIDTH)) + "\n"
