"""Progress reporting for long log replays: a text bar on the terminal, an
ipywidgets bar in Jupyter, or whatever the caller hands in.

:func:`make_progress` turns the ``progress`` argument of
:func:`iommu_viz.ingest.replay.replay` into an object with ``start(phase,
total)``, ``update(done)`` and ``close()``:

* ``False``: no progress;
* ``None`` (the default): a bar only for big inputs, and only in Jupyter or
  when standard error is a terminal;
* ``True``: a bar (widget in Jupyter, text on standard error otherwise);
* a callable: called as ``fn(phase, done, total)`` (``total`` may be
  ``None`` when unknown);
* a tqdm-like object (it has ``update``): reset to each phase's total and
  advanced with ``update(n)``.
"""

from __future__ import annotations

import sys

__all__ = ["make_progress", "TextBar", "WidgetBar", "in_jupyter"]


def in_jupyter() -> bool:
    """True when running under a Jupyter kernel (IPython already loaded and
    its shell is the ZMQ one); never imports IPython itself."""
    ip_mod = sys.modules.get("IPython")
    if ip_mod is None:
        return False
    try:
        shell = ip_mod.get_ipython()
    except Exception:       # pragma: no cover - odd IPython builds
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class TextBar:
    """A one-line ASCII bar redrawn with carriage returns on ``stream``
    (standard error by default), at most 72 columns."""

    WIDTH = 30

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.phase = ""
        self.total = None
        self._last = None

    def start(self, phase, total):
        self.phase, self.total, self._last = phase, total, None
        self.update(0)

    def update(self, done):
        if self.total:
            frac = min(1.0, done / self.total)
            fill = int(frac * self.WIDTH)
            text = (f"{self.phase:<7}[{'#' * fill}{'.' * (self.WIDTH - fill)}]"
                    f" {int(frac * 100):3d}%")
        else:
            text = f"{self.phase:<7}{done:,} lines"
        if text != self._last:
            self.stream.write("\r" + text)
            self.stream.flush()
            self._last = text

    def close(self):
        if self._last is not None:
            self.stream.write("\r" + " " * len(self._last) + "\r")
            self.stream.flush()
        self._last = None


class WidgetBar:
    """An ``ipywidgets.IntProgress`` with a label, shown in the notebook."""

    def __init__(self):
        import ipywidgets as w
        from IPython.display import display
        self._bar = w.IntProgress(min=0, max=1, value=0)
        self._label = w.Label("")
        self._total = None
        display(w.HBox([self._bar, self._label]))

    def start(self, phase, total):
        self._total = total
        self._bar.description = phase
        self._bar.max = max(1, total or 1)
        self._bar.value = 0
        self._bar.bar_style = ""

    def update(self, done):
        if self._total:
            self._bar.value = min(done, self._total)
            self._label.value = f"{100 * self._bar.value // self._total}%"
        else:
            self._label.value = f"{done:,} lines"

    def close(self):
        self._bar.value = self._bar.max
        self._bar.bar_style = "success"
        self._label.value = "done"


class _Callback:
    def __init__(self, fn):
        self.fn = fn
        self.phase = None
        self.total = None

    def start(self, phase, total):
        self.phase, self.total = phase, total
        self.fn(phase, 0, total)

    def update(self, done):
        self.fn(self.phase, done, self.total)

    def close(self):
        if self.total is not None:
            self.fn(self.phase, self.total, self.total)


class _Tqdm:
    def __init__(self, bar):
        self.bar = bar
        self.done = 0

    def start(self, phase, total):
        self.done = 0
        if hasattr(self.bar, "reset"):
            self.bar.reset(total=total)
        if hasattr(self.bar, "set_description"):
            self.bar.set_description(phase)

    def update(self, done):
        if done > self.done:
            self.bar.update(done - self.done)
            self.done = done

    def close(self):
        if hasattr(self.bar, "refresh"):
            self.bar.refresh()


def make_progress(progress, big: bool):
    """The progress object for the ``progress`` argument (see the module
    docstring); ``big`` says whether the input is large enough for an
    automatic bar. Returns ``None`` for no progress."""
    if progress is False:
        return None
    if progress is None or progress is True:
        if progress is None and not big:
            return None
        if in_jupyter():
            try:
                return WidgetBar()
            except Exception:       # pragma: no cover - no front end
                pass
        if progress is True or sys.stderr.isatty():
            return TextBar()
        return None
    if hasattr(progress, "update"):
        return _Tqdm(progress)
    if callable(progress):
        return _Callback(progress)
    raise TypeError(
        f"progress {progress!r} must be None, True, False, a callable "
        "fn(phase, done, total) or a tqdm-like object with update()")
