"""One scenario over many configurations: the outcomes the architecture
allows for each labelled access, as herd7 tabulates a litmus test.

Example::

    >>> from iommu_viz import scenarios
    >>> m = scenarios.matrix(scenarios.named("seed"),
    ...                      ["kernel=v4.20,v5.4", "fast=yes"])
    >>> m.allowed["page"]
    {'kernel=v4.20 fast=yes': ['fault'], 'kernel=v5.4 fast=yes': ['fault', 'stale']}
    >>> print(m)                                # doctest: +NORMALIZE_WHITESPACE
    Allowed outcomes of seed.scn's labelled accesses in 2 configurations
    T translated, F fault, S stale, C conflict, - line not run
    <BLANKLINE>
    kernel           v4.20 v5.4
    fast             yes   yes
    ---------------  ----- ----
    before           T     T
    page             F     F/S
    neighbour        T     T
    synced           F     F
    page_later       F     F
    neighbour_later  T     T
"""

from __future__ import annotations

import itertools
import os
import textwrap
from dataclasses import dataclass, replace

from .format import ALIASES, ScenarioError, labelled_accesses

__all__ = ["Matrix", "matrix", "parse_axes", "LETTERS"]

#: Outcome -> its letter in a matrix cell.
LETTERS = {"translated": "T", "fault": "F", "stale": "S", "conflict": "C"}
_WIDTH = 72
_MAX_VALUE = 12


def parse_axes(specs, scenario, source="--matrix") -> list:
    """``["kernel=v4.20,v5.4", "bbml=0,2"]`` -> ``[(name, [(text, value),
    ...]), ...]``; names are Simulation options (or aliases) or the
    scenario's params, values read as a ``config`` line reads them
    (:meth:`Scenario.read_option`). ``source`` names the specs' origin
    in errors."""
    axes = []
    seen = set()
    for spec in specs:
        key, eq, vals = spec.partition("=")
        if not eq or not vals:
            raise ScenarioError(source, 0, "bad matrix axis" if source ==
                                "--matrix" else "bad setting",
                                f"{spec!r}: write key=value"
                                + (",value..." if source == "--matrix"
                                   else ""))
        name = ALIASES.get(key, key)
        if name in seen:
            raise ScenarioError(source, 0, "bad matrix axis",
                                f"{key} is given twice")
        seen.add(name)
        texts = vals.split(",") if source == "--matrix" else [vals]
        axes.append((key, [(t, scenario.read_option(key, t, source)[1])
                           for t in texts]))
    return axes


@dataclass
class Matrix:
    """``allowed[label][configuration]``: the sorted outcome names the
    architecture allows for that access in that configuration (None when
    a guard switched the line off). ``axes`` as :func:`parse_axes` gives
    them; ``configurations`` the column names in order."""

    source: str
    axes: list
    configurations: list
    labels: list
    allowed: dict

    def to_json(self) -> dict:
        """``{label: {configuration: [allowed outcomes, sorted]}}``."""
        return {lb: dict(self.allowed[lb]) for lb in self.labels}

    def text(self, width: int = _WIDTH) -> str:
        """Tables at most ``width`` columns wide: a row per labelled
        access, a column per configuration, wrapped into several tables
        when the columns do not fit."""
        keys = [k for k, _ in self.axes]
        head = min(16, max([len(k) for k in keys] + [len(lb) for lb in
                                                    self.labels] + [4]))
        cols = []
        for i, conf in enumerate(self.configurations):
            values = [_cut(t) for t in _combo(self.axes, i)]
            cells = [_cell(self.allowed[lb].get(conf)) for lb in self.labels]
            w = max(len(s) for s in values + cells + ["-"])
            cols.append((values, cells, w))
        n = len(self.configurations)
        out = textwrap.wrap(
            f"Allowed outcomes of {os.path.basename(self.source)}'s "
            f"labelled accesses in {n} configuration{'s' if n != 1 else ''}",
            width) + ["T translated, F fault, S stale, C conflict, - line "
                      "not run"]
        start = 0
        while start < len(cols):
            used = head
            end = start
            while end < len(cols) and (end == start or
                                       used + 2 + cols[end][2] <= width):
                used += (2 if end == start else 1) + cols[end][2]
                end += 1
            part = cols[start:end]
            out.append("")
            for r, k in enumerate(keys):
                out.append(_line(_cut(k, head), head,
                                 [(c[0][r], c[2]) for c in part]))
            out.append(_line("-" * head, head, [("-" * c[2], c[2])
                                                for c in part]))
            for r, lb in enumerate(self.labels):
                out.append(_line(_cut(lb, head), head,
                                 [(c[1][r], c[2]) for c in part]))
            start = end
        return "\n".join(out) + "\n"

    def __str__(self):
        return self.text()


def _combo(axes, i):
    """The value texts of configuration ``i`` (first axis slowest)."""
    out = []
    for _, values in reversed(axes):
        out.append(values[i % len(values)][0])
        i //= len(values)
    return out[::-1]


def _cut(text, n=_MAX_VALUE):
    return text if len(text) <= n else text[:n - 1] + "~"


def _cell(allowed):
    if allowed is None:
        return "-"
    return "/".join(LETTERS.get(o, o[:1].upper()) for o in allowed)


def _line(first, head, cells):
    s = f"{first:<{head}}  " + " ".join(f"{c:<{w}}" for c, w in cells)
    return s.rstrip()


def matrix(scenario, axes) -> Matrix:
    """Run ``scenario`` in every combination of ``axes`` (``key=v1,v2``
    strings or :func:`parse_axes` output) and collect the allowed
    outcomes of its labelled accesses. With no label in the file, every
    access is a row named after its line (``line7``)."""
    if axes and isinstance(axes[0], str):
        axes = parse_axes(axes, scenario)
    sc = scenario
    if not sc.labels:
        sc = replace(sc, ops=[replace(op, label=f"line{op.line}")
                              if op.op == "access" else op for op in sc.ops])
    labels = sc.labels
    confs = []
    allowed = {lb: {} for lb in labels}
    for combo in itertools.product(*[values for _, values in axes]):
        name = " ".join(f"{k}={t}" for (k, _), (t, _) in zip(axes, combo))
        confs.append(name)
        over = {k: v for (k, _), (_, v) in zip(axes, combo)}
        try:
            sim = sc.run(**over)
        except ScenarioError as e:
            raise ScenarioError(e.source, e.line, e.rule,
                                f"{e.detail} (configuration {name})") \
                from None
        got = {lb: sorted(acc.allowed)
               for lb, acc in labelled_accesses(sim).items()}
        for lb in labels:
            allowed[lb][name] = got.get(lb)
    return Matrix(sc.source, axes, confs, labels, allowed)
