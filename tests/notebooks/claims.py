"""Outcome claims written in the notebooks' markdown, checked against the
model.

A markdown cell that states what a device access may give carries the claim
in a machine-readable HTML comment next to the sentence (invisible when the
notebook is rendered)::

    <!-- claim: scenario=seed-conflict bbml=1 split_nt=True access=2 allowed=translated -->

``scenario`` names an :mod:`iommu_viz.scenarios` run and every other
``key=value`` except the reserved ones is one of its options (values are
Python literals where they parse as such, else strings). ``access`` is the
index into ``run.accesses``; ``allowed`` is the exact set of outcomes the
architecture allows there (comma-separated), ``picked`` optionally the one
the personality picks. :func:`check` re-runs the scenario and lists every
way the claim and the model disagree.
"""

from __future__ import annotations

import ast
import json
import re
import shlex

from iommu_viz import scenarios

CLAIM = re.compile(r"<!--\s*claim:\s*(.*?)\s*-->", re.S)
RESERVED = {"scenario", "access", "allowed", "picked"}
OUTCOMES = {"translated", "stale", "conflict", "fault"}


def _value(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse(body: str) -> dict:
    """The fields of one claim (the text inside ``<!-- claim: ... -->``)."""
    out = {}
    for token in shlex.split(body):
        key, sep, val = token.partition("=")
        if not sep or not key:
            raise ValueError(f"claim field {token!r} is not key=value")
        if key in out:
            raise ValueError(f"claim field {key!r} given twice")
        out[key] = val
    for key in ("scenario", "access", "allowed"):
        if key not in out:
            raise ValueError(f"claim {body!r} has no {key}=")
    out["access"] = int(out["access"])
    for key in ("allowed", "picked"):
        if key in out:
            names = set(out[key].split(","))
            bad = names - OUTCOMES
            if bad:
                raise ValueError(f"claim {key}={out[key]!r}: {sorted(bad)} "
                                 f"not among {sorted(OUTCOMES)}")
            out[key] = frozenset(names)
    if "picked" in out and len(out["picked"]) != 1:
        raise ValueError("picked= names exactly one outcome")
    return out


def options(claim: dict) -> dict:
    return {k: _value(v) for k, v in claim.items() if k not in RESERVED}


def check(claim: dict) -> list[str]:
    """Problems with ``claim`` (empty when the model agrees)."""
    run = scenarios.run(claim["scenario"], **options(claim))
    try:
        a = run.accesses[claim["access"]]
    except IndexError:
        return [f"the run has {len(run.accesses)} accesses, no "
                f"access {claim['access']}"]
    problems = []
    if set(a.allowed) != set(claim["allowed"]):
        problems.append(f"access {claim['access']} ({a.iova:#x}): the "
                        f"model allows {sorted(a.allowed)}, the notebook "
                        f"says {sorted(claim['allowed'])}")
    if "picked" in claim and {a.outcome} != set(claim["picked"]):
        problems.append(f"access {claim['access']}: the model picks "
                        f"{a.outcome!r}, the notebook says "
                        f"{sorted(claim['picked'])}")
    return problems


def claims_in(path) -> list[tuple[int, str]]:
    """``(cell index, claim body)`` for every claim in a notebook file."""
    book = json.loads(path.read_text())
    out = []
    for i, cell in enumerate(book["cells"]):
        if cell["cell_type"] == "markdown":
            out += [(i, m) for m in CLAIM.findall("".join(cell["source"]))]
    return out
